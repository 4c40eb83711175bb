"""drivers/windows/harnessflt.inf against the rules InfVerif applies, and the guest's setup
script installing the driver through it.

Checked here (InfVerif error numbers from Microsoft Learn, "INF Validation Errors and
Warnings"; the primitive-driver rules from "Creating a new primitive driver"; the minifilter
sections from "Creating an INF file for a minifilter driver"):

* syntax: every line belongs to a section, no section twice, every `%token%` defined in
  [Strings] (1235), every referenced section exists (1203), no section left unreferenced (2083);
* [Version] complete: Signature, Class and ClassGuid (the FSFilter Activity Monitor class),
  a Provider that is not Microsoft (1204), DriverVer as mm/dd/yyyy,w.x.y.z, a CatalogFile
  (1233: needed for a signed package), PnpLockdown = 1;
* primitive driver: no [Manufacturer] (1212, 1297), DefaultInstall sections only
  architecture-decorated, each with its .Services section (1296), no DefaultUninstall
  (unless LegacyUninstall=1);
* files: every copied file in [SourceDisksFiles] (1230) on a disk of [SourceDisksNames];
  DIRID 13 (driver store) for every destination of a PnpLockdown package; the service binary
  is a file the package copies, under %13%, not renamed (1100);
* registry: HKR only (1221, 1304), never a REG_MULTI_SZ append (1305);
* minifilter: ServiceType 2, boot start, ErrorControl 1, Dependencies FltMgr, LoadOrderGroup
  "FSFilter Activity Monitor" with an altitude in its range (360000-389999), a DefaultInstance
  that names a defined instance under Parameters\\Instances (Windows 11 24H2+) and Instances.

Not checked here (no Windows, no WDK): InfVerif itself and its mode switches (/w /k /u /h);
the catalog (nothing on Linux writes one: setup.ps1 makes it on the guest with New-FileCatalog
and signs it with a certificate made there, so its hashes and signature are first seen by
pnputil); the 133x functional conflicts, which need
the other INFs of a machine; DCH rules outside the INF; what DiInstallDriver does at run time.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.windows.inf import inf_fields as _fields, strip_comment as _strip_comment, unquote as _unquote

from .conftest import REPO

INF = REPO / "drivers" / "windows" / "harnessflt.inf"
SETUP = REPO / "vm-templates" / "windows" / "setup" / "setup.ps1"
ACTIVITY_MONITOR_GUID = "{b86dff51-a31e-4bac-b3cf-e8cfe75c9fc2}"
ALTITUDES = (360000, 389999)  # FSFilter Activity Monitor


class Inf:
    """A small INF reader: sections of (key, value) lines, comments and quotes as SetupAPI reads them."""

    def __init__(self, text: str) -> None:
        self.sections: dict[str, list[tuple[str | None, str]]] = {}
        self.order: list[str] = []
        current: str | None = None
        for number, raw in enumerate(text.splitlines(), 1):
            line = _strip_comment(raw).strip()
            if not line:
                continue
            if line.startswith("["):
                assert line.endswith("]"), f"line {number}: unclosed section header {line!r}"
                current = line[1:-1].strip()
                assert current.lower() not in (s.lower() for s in self.sections), f"[{current}] twice"
                self.sections[current] = []
                self.order.append(current)
                continue
            assert current is not None, f"line {number}: {line!r} outside any section"
            key, sep, value = line.partition("=")
            self.sections[current].append((key.strip(), value.strip()) if sep else (None, line))

    def section(self, name: str) -> list[tuple[str | None, str]]:
        found = next((s for s in self.sections if s.lower() == name.lower()), None)
        assert found is not None, f"[{name}] is missing"
        return self.sections[found]

    def has(self, name: str) -> bool:
        return any(s.lower() == name.lower() for s in self.sections)

    def values(self, name: str) -> dict[str, str]:
        return {k.lower(): v for k, v in self.section(name) if k is not None}

    def strings(self) -> dict[str, str]:
        return {k.lower(): _unquote(v) for k, v in self.values("Strings").items()}

    def expand(self, value: str) -> str:
        strings = self.strings()
        return re.sub(r"%([^%]+)%", lambda m: strings.get(m[1].lower(), m[0]) if not m[1].isdigit() else m[0],
                      value)




def _inf() -> Inf:
    raw = INF.read_bytes()
    assert raw.isascii(), f"{INF}: not ASCII (an INF is ASCII or UTF-16 LE with a BOM)"
    return Inf(raw.decode("ascii"))


def test_the_inf_parses_and_every_token_and_section_it_names_exists() -> None:
    inf = _inf()
    text = INF.read_text()
    strings = inf.strings()
    for token in re.findall(r"%([^%\s]+)%", _strip_all_comments(text)):
        assert token.isdigit() or token.lower() in strings, f"%{token}% not in [Strings] (InfVerif 1235)"
    referenced = {"version", "strings", "sourcedisksnames", "sourcedisksfiles", "destinationdirs"}
    for name in inf.sections:
        if name.lower().startswith("defaultinstall"):
            referenced.add(name.lower())
            for key, value in inf.section(name):
                if key and key.lower() in ("copyfiles", "addreg"):
                    for target in _fields(value):
                        assert inf.has(target), f"[{name}] {key} = {target}: no such section (1203)"
                        referenced.add(target.lower())
                if key and key.lower() == "addservice":
                    install = _fields(value)[2]
                    assert inf.has(install), f"AddService names [{install}], which is missing (1203)"
                    referenced.add(install.lower())
                    for k, v in inf.values(install).items():
                        if k == "addreg":
                            referenced.update(t.lower() for t in _fields(v))
    unreferenced = [s for s in inf.sections if s.lower() not in referenced]
    assert not unreferenced, f"sections nothing uses (2083): {unreferenced}"


def _strip_all_comments(text: str) -> str:
    return "\n".join(_strip_comment(line) for line in text.splitlines())


def test_the_version_section_is_complete_for_a_signed_primitive_package() -> None:
    inf = _inf()
    version = inf.values("Version")
    assert _unquote(version["signature"]).upper() == "$WINDOWS NT$"
    assert _unquote(version["class"]) == "ActivityMonitor"
    assert version["classguid"].lower() == ACTIVITY_MONITOR_GUID
    provider = inf.expand(version["provider"])
    assert provider and "microsoft" not in provider.lower(), "Provider cannot be Microsoft (1204)"
    assert re.fullmatch(r"(0?[1-9]|1[0-2])/(0?[1-9]|[12]\d|3[01])/\d{4},\d+\.\d+\.\d+\.\d+", version["driverver"])
    assert version["catalogfile"] == "harnessflt.cat", "a signed package needs CatalogFile (1233)"
    assert version["pnplockdown"] == "1"


def test_it_is_a_primitive_driver_with_decorated_default_install_and_services() -> None:
    inf = _inf()
    names = [s.lower() for s in inf.sections]
    assert "manufacturer" not in names, "a primitive driver has no [Manufacturer] (1212, 1297)"
    installs = [s for s in inf.sections if s.lower().startswith("defaultinstall") and
                not s.lower().endswith(".services")]
    assert installs == ["DefaultInstall.NTamd64"], "DefaultInstall must be architecture-decorated, amd64 here"
    assert inf.has("DefaultInstall.NTamd64.Services"), "each DefaultInstall needs its .Services (1296)"
    for name in inf.sections:
        if name.lower().startswith("defaultuninstall"):
            assert inf.values(name).get("legacyuninstall") == "1", f"[{name}] is prohibited (1903+)"


def test_files_go_to_the_driver_store_and_the_service_binary_is_the_copied_file() -> None:
    inf = _inf()
    dirs = inf.values("DestinationDirs")
    assert dirs, "[DestinationDirs] is empty"
    for section, value in dirs.items():
        assert _fields(value)[0] == "13", f"{section} = {value}: a PnpLockdown package copies to DIRID 13"
    disks = {k for k, _ in inf.section("SourceDisksNames") if k}
    sources = inf.values("SourceDisksFiles")
    copied = []
    for key, value in inf.section("DefaultInstall.NTamd64"):
        if key and key.lower() == "copyfiles":
            for section in _fields(value):
                assert section.lower() in dirs, f"[{section}] has no DestinationDirs entry"
                copied += [v if k is None else k for k, v in inf.section(section)]
    assert copied == ["harnessflt.sys"]
    for name in copied:
        assert name.lower() in sources, f"{name} missing from [SourceDisksFiles] (1230)"
        assert _fields(sources[name.lower()])[0] in disks, f"{name}: its disk is not in [SourceDisksNames]"
    service = inf.values("HarnessFlt.Service")
    assert service["servicebinary"].lower() == "%13%\\harnessflt.sys", "the binary the package copies, not renamed (1100)"


def test_the_service_is_a_boot_start_minifilter_with_its_instance_and_altitude() -> None:
    inf = _inf()
    service = inf.values("HarnessFlt.Service")
    assert service["servicetype"] == "2" and service["starttype"] == "0" and service["errorcontrol"] == "1"
    assert _unquote(service["dependencies"]) == "FltMgr"
    assert _unquote(service["loadordergroup"]) == "FSFilter Activity Monitor"
    assert _fields(inf.values("DefaultInstall.NTamd64.Services")["addservice"])[0] == "%ServiceName%"
    assert inf.strings()["servicename"] == "harnessflt"
    # "Instances\"%Instance1.Name% is a quoted part and a token, joined: the quotes only group
    rows = [[inf.expand(f).replace('"', "") for f in _fields(v if k is None else f"{k}={v}")]
            for k, v in inf.section(service["addreg"])]
    for row in rows:
        assert row[0] == "HKR", f"{row}: only HKR (1221, 1304)"
        assert not (len(row) > 3 and row[3].lower().startswith("0x0001000") and row[3][-1] == "8"), \
            f"{row}: a REG_MULTI_SZ append (1305)"
    for base in ("Parameters\\Instances", "Instances"):
        default = next(r[4] for r in rows if r[1] == base and r[2] == "DefaultInstance")
        altitude = next(r[4] for r in rows if r[1] == f"{base}\\{default}" and r[2] == "Altitude")
        assert ALTITUDES[0] <= int(altitude) <= ALTITUDES[1], f"{base}: altitude {altitude} out of range"
        assert any(r[1] == f"{base}\\{default}" and r[2] == "Flags" for r in rows)


def test_setup_installs_the_driver_through_its_inf_with_a_signed_catalog(tmp_path: Path) -> None:
    """setup.ps1's step 'driver' runs install-driver.ps1, rendered for the sample from the same
    template a vendor driver gets (harness/windows/package.py; tests/test_windows_vendor_driver.py)."""
    from harness.windows.package import render_install_script, sample_package

    setup = SETUP.read_text()
    step = setup[setup.index("Invoke-Step 'driver'"):setup.index("Invoke-Step 'boot-task'")]
    assert "install-driver.ps1" in step
    cer = tmp_path / "harness-test-signing.cer"
    cer.write_bytes(b"stub")
    sensor = render_install_script(sample_package(tmp_path / "harnessflt.sys", INF, cer))
    assert re.search(r"& pnputil\.exe /add-driver \(Join-Path \$package \$Inf\) /install", sensor)
    assert "$Inf = 'harnessflt.inf'" in sensor and "$Service = 'harnessflt'" in sensor
    assert "sc.exe" not in sensor and "reg.exe" not in sensor, "the INF writes the service, not sc.exe/reg.exe"
    assert "New-FileCatalog" in sensor and "-CatalogVersion 2.0" in sensor
    assert "Set-AuthenticodeSignature" in sensor and "New-SelfSignedCertificate -Type CodeSigningCert" in sensor
    assert "'TrustedPublisher'" in sensor and "'Root'" in sensor  # the catalog's signer is trusted here
    assert "$Catalog = 'harnessflt.cat'" in sensor and "HarnessSensor" in sensor
    assert "$ExpectedStart = 0" in sensor  # boot start, as the INF says
    # the certificate is trusted before the catalog is signed and the package added
    assert setup.index("Invoke-Step 'certificate'") < setup.index("Invoke-Step 'driver'")
    # pnputil's "reboot required" (3010) is success for a boot-start driver
    assert "3010" in sensor
    # the SAC step stays
    assert "Invoke-Step 'sac'" in setup and "Windows.Desktop.EMS-SAC.Tools~~~~0.0.1.0" in setup
