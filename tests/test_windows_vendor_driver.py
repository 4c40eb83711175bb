"""A vendor's own Windows driver through the Windows path (docs/windows-vendor-driver.md).

No Windows ISO and no PowerShell here (Debian 12 and PyPI ship no pwsh), so what runs is
everything up to the guest: the profile's driver: block (a vendor INF written here for the
service AcmeGuard, the signed sample .sys renamed acmeguard.sys as its binary, the harness's
test certificate as its cert:), the setup medium read back (its file list, image.json, the
rendered install-driver.ps1), the image stamp (a new .sys makes another key; an up-to-date
image is left alone, a stale one is built again), the family's markers on the lines the
boot-marker script prints (their templates are taken from lib.ps1 and filled in here, as
PowerShell would), the content directory in offline, SFTP and recovery paths, and the
one-line errors (exit 2). Not run: the PowerShell itself (pnputil, sc.exe, fltmc, the
registry walk) on a Windows VM.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from harness.config import select_profile
from harness.errors import ConfigError
from harness.triage import triage_text
from harness.windows import image as image_mod
from harness.windows.backend import WindowsBackend
from harness.windows.family import WindowsGuestFamily
from harness.windows.golden import load_golden
from harness.windows.image import ImageRequest, build_windows_image
from harness.windows.media import AnswerPlan, answer_files, build_answer_iso, read_answer_iso
from harness.windows.package import package_stamp, render_install_script, vendor_package
from harness.windows.powershell import content_path
from harness.windows.recovery_plan import safe_mode_files
from harness.windows.winpe import render_recover_cmd

from .conftest import REPO, require_tool
from .test_windows_image import _strip_strings_and_comments

BUILD = REPO / "drivers" / "build" / "windows"
LIB = REPO / "vm-templates" / "windows" / "setup" / "lib.ps1"
BOOT = REPO / "vm-templates" / "windows" / "setup" / "boot-marker.ps1"
CONTENT_DIR = r"C:\ProgramData\Acme\Rules"
READY = r"HARNESS-DRIVER-VALUE AcmeGuard/Parameters/State Status=armed\b"
REJECTED = r"HARNESS-DRIVER-VALUE AcmeGuard/Parameters/State Rejected\[\d+\]=(?P<file>[^:]+): (?P<reason>.*)"

ACME_INF = """\
;; acme.inf: a vendor's boot-start minifilter (written by the test)
[Version]
Signature   = "$WINDOWS NT$"
Class       = "ActivityMonitor"
ClassGuid   = {b86dff51-a31e-4bac-b3cf-e8cfe75c9fc2}
Provider    = %Acme%
DriverVer   = 12/03/2026,2.4.0.1
CatalogFile = acmeguard.cat
PnpLockdown = 1

[DestinationDirs]
Acme.Files = 13

[DefaultInstall.NTamd64]
CopyFiles = Acme.Files

[DefaultInstall.NTamd64.Services]
AddService = %ServiceName%,,Acme.Service

[Acme.Service]
DisplayName   = %ServiceName%
ServiceBinary = %13%\\acmeguard.sys
Dependencies  = "FltMgr"
ServiceType   = 2
StartType     = 0
ErrorControl  = 1
LoadOrderGroup = "FSFilter Activity Monitor"

[Acme.Files]
acmeguard.sys

[SourceDisksNames]
1 = %Disk%

[SourceDisksFiles]
acmeguard.sys = 1

[Strings]
Acme        = "Acme Corp"
ServiceName = "AcmeGuard"
Disk        = "Acme Guard Disk"
"""


def _signed_sys() -> Path:
    for build in ("hardened", "vulnerable"):
        path = BUILD / build / "signed" / "harnessflt.sys"
        if path.is_file():
            return path
    require_tool("x86_64-w64-mingw32-gcc", "install mingw-w64 (make setup)")
    require_tool("osslsigncode", "install osslsigncode (make setup)")
    return image_mod.sensor_files("vulnerable", lambda _m: None)[0]


@pytest.fixture
def vendor(tmp_path: Path) -> Path:
    """A vendor project: dist/acme.inf, dist/acmeguard.sys (the signed sample, renamed),
    dist/acme-test.cer, and harness.yaml with the acme-win profile. Returns the config."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "acme.inf").write_text(ACME_INF)
    shutil.copyfile(_signed_sys(), dist / "acmeguard.sys")
    cert = BUILD / "testcert" / "harness-test-signing.cer"
    if not cert.is_file():
        image_mod.sensor_files("vulnerable", lambda _m: None)
    shutil.copyfile(cert, dist / "acme-test.cer")
    config = tmp_path / "harness.yaml"
    _write_config(config)
    return config


def _write_config(config: Path, **over: str) -> None:
    driver = {"inf": "dist/acme.inf", "sys": "dist/acmeguard.sys", "service": "AcmeGuard",
              "content_dir": CONTENT_DIR, "ready": READY, "rejected": REJECTED, "cert": "dist/acme-test.cer"}
    driver.update(over)
    driver = {k: v for k, v in driver.items() if v}
    lines = ["profiles:", "  acme-win:", "    family: windows", "    edition: win10",
             "    image: images/windows-win10-acmeguard.qcow2", "    driver:"]
    lines += [f"      {key}: '{value}'" for key, value in driver.items()]
    config.write_text("\n".join(lines) + "\n")


def _plan() -> AnswerPlan:
    return AnswerPlan(edition="win10", image_index=1, sensor_build="vulnerable", admin_password="Hx9-x")


# ------------------------------------------------------------------ the setup medium


def test_the_setup_medium_carries_the_vendor_driver_and_not_the_sample(vendor: Path, tmp_path: Path) -> None:
    profile = select_profile(vendor, "acme-win")
    package = vendor_package(profile.driver, profile.name)
    iso = build_answer_iso(tmp_path / "answer.iso", "<unattend/>",
                           answer_files(_plan(), None, None, None, "ssh-ed25519 AAAA k", package=package))
    files = read_answer_iso(iso)
    assert sorted(files) == [
        "autounattend.xml", "harness/administrators_authorized_keys", "harness/boot-marker.ps1",
        "harness/certificates/acme-test.cer", "harness/driver/acme.inf", "harness/driver/acmeguard.sys",
        "harness/image.json", "harness/install-driver.ps1", "harness/lib.ps1", "harness/setup.ps1"]
    dist = vendor.parent / "dist"
    assert files["harness/driver/acmeguard.sys"] == (dist / "acmeguard.sys").read_bytes()
    assert files["harness/driver/acme.inf"] == (dist / "acme.inf").read_bytes()
    assert json.loads(files["harness/image.json"])["driver"] == {
        "kind": "vendor", "service": "AcmeGuard", "content_dir": CONTENT_DIR, "inf": "acme.inf",
        "sys": "acmeguard.sys", "certificate": "certificates\\acme-test.cer"}
    script = files["harness/install-driver.ps1"].decode("utf-8")
    assert "\r\n" in script and "\n" not in script.replace("\r\n", "")
    for line in ("$Service = 'AcmeGuard'", "$Inf = 'acme.inf'", "$Sys = 'acmeguard.sys'", "$Catalog = 'acmeguard.cat'",
                 "$Source = 'C:\\harness\\driver'", f"$ContentDir = '{CONTENT_DIR}'", "$ExpectedStart = 0",
                 "& pnputil.exe /add-driver (Join-Path $package $Inf) /install",
                 'Get-ItemProperty -LiteralPath "HKLM:\\SYSTEM\\CurrentControlSet\\Services\\$Service"',
                 "New-Item -ItemType Directory -Path $ContentDir -Force",
                 "New-FileCatalog -Path $package"):  # no .cat shipped: made and signed on the VM
        assert line in script, line
    assert "harnessflt" not in script and "HarnessSensor" not in script
    _balanced(script)


def test_a_shipped_catalog_goes_with_the_package_and_none_is_made(vendor: Path, tmp_path: Path) -> None:
    (vendor.parent / "dist" / "acmeguard.cat").write_bytes(b"0\x82catalog")
    profile = select_profile(vendor, "acme-win")
    package = vendor_package(profile.driver, profile.name)
    files = answer_files(_plan(), None, None, None, "k", package=package)
    assert files["harness/driver/acmeguard.cat"] == b"0\x82catalog"
    script = files["harness/install-driver.ps1"].decode()
    assert "Copy-Item -LiteralPath (Join-Path $Source $Catalog) -Destination $catalogPath" in script
    assert "New-FileCatalog -Path" not in script and "New-SelfSignedCertificate -Type" not in script
    _balanced(script)


def _balanced(script: str) -> None:
    code = _strip_strings_and_comments(script.replace("\r\n", "\n"))
    stack: list[str] = []
    for ch in code:
        if ch in "({[":
            stack.append(ch)
        elif ch in ")}]":
            assert stack and stack.pop() == {")": "(", "}": "{", "]": "["}[ch], "unbalanced"
    assert not stack


def test_setup_trusts_the_vendor_certificate_and_runs_the_rendered_install() -> None:
    setup = (REPO / "vm-templates" / "windows" / "setup" / "setup.ps1").read_text()
    cert_step = setup[setup.index("Invoke-Step 'certificate'"):setup.index("# CrashControl")]
    assert "(Get-ImageDriver).Certificate" in cert_step and "Cert:\\LocalMachine\\TrustedPublisher" in cert_step
    assert "& (Join-Path $HarnessDir 'install-driver.ps1')" in setup
    lib = LIB.read_text()
    assert "$driver = (Get-Content -LiteralPath $path -Raw | ConvertFrom-Json).driver" in lib


# ------------------------------------------------------------------ the stamp


def test_the_stamp_key_follows_the_vendor_files(vendor: Path) -> None:
    profile = select_profile(vendor, "acme-win")
    first = package_stamp(vendor_package(profile.driver, profile.name))
    assert first == package_stamp(vendor_package(profile.driver, profile.name))  # the same files: the same key
    sys_file = vendor.parent / "dist" / "acmeguard.sys"
    sys_file.write_bytes(sys_file.read_bytes() + b"\0" * 16)  # a new build of the .sys
    second = package_stamp(vendor_package(profile.driver, profile.name))
    assert second["key"] != first["key"]
    assert second["files"]["sys"]["sha256"] != first["files"]["sys"]["sha256"]  # type: ignore[index]
    assert second["files"]["inf"] == first["files"]["inf"]  # type: ignore[index]


def _golden(vendor: Path, stamp: dict[str, object]) -> Path:
    """A stand-in golden image of the profile (read-only, with its manifest)."""
    image = vendor.parent / "images" / "windows-win10-acmeguard.qcow2"
    image.parent.mkdir(exist_ok=True)
    image.write_bytes(b"QFI\xfb" + b"\0" * 508)
    image.chmod(0o444)
    manifest = image.with_name(image.name + ".golden.json")
    manifest.write_text(json.dumps({"image": str(image), "bytes": 512, "edition": "win10", "image_index": 1,
                                    "sha256": "0" * 64,
                                    "sensor": {"build": "vendor"}, "driver": stamp, "install_seconds": 1.0,
                                    "markers": ["HARNESS-IMAGE-READY"]}))
    return image


def test_an_up_to_date_image_is_kept_and_a_new_sys_rebuilds_it(vendor: Path, tmp_path: Path) -> None:
    profile = select_profile(vendor, "acme-win")
    assert profile.driver is not None
    image = _golden(vendor, package_stamp(vendor_package(profile.driver, profile.name)))
    req = ImageRequest(iso=tmp_path / "none.iso", virtio_win=tmp_path / "none.iso", edition="win10",
                       out=image.parent, driver=profile.driver, profile=profile.name)
    lines: list[str] = []
    kept = build_windows_image(req, progress=lines.append, installer=_no_installer)
    assert kept.image == image and "is up to date" in lines[-1]

    sys_file = vendor.parent / "dist" / "acmeguard.sys"
    new_sys = sys_file.read_bytes() + b"NEW BUILD"
    sys_file.write_bytes(new_sys)
    require_tool("qemu-img", "install qemu-utils")
    isos = [build_answer_iso(tmp_path / f"{n}.iso", "<x/>", {"README.TXT": b"x"}) for n in ("win", "virtio")]
    req = ImageRequest(iso=isos[0], virtio_win=isos[1], edition="win10", out=image.parent, disk_gib=1,
                       driver=profile.driver, profile=profile.name)
    lines.clear()
    try:
        build_windows_image(req, progress=lines.append, installer=_no_installer)
    except ConfigError as exc:
        if "OVMF" in str(exc) or "ovmf" in str(exc):
            pytest.skip(str(exc))
        raise
    except _InstallerReached:
        pass
    assert any("is stale" in line for line in lines), lines  # no "exists already: pass --force"
    medium = read_answer_iso(image.parent / "windows-win10-acmeguard.answer.iso")
    assert medium["harness/driver/acmeguard.sys"] == new_sys  # the rebuild installs the new .sys


class _InstallerReached(Exception):
    pass


def _no_installer(*_args: object) -> object:
    raise _InstallerReached()


def test_a_machine_refuses_a_stale_image_naming_the_changed_file(vendor: Path) -> None:
    profile = select_profile(vendor, "acme-win")
    assert profile.driver is not None
    image = _golden(vendor, package_stamp(vendor_package(profile.driver, profile.name)))
    golden = load_golden(image, "win10")
    from harness.windows.family import check_image_driver

    check_image_driver(golden, package_stamp(vendor_package(profile.driver, profile.name)), profile.name)
    sys_file = vendor.parent / "dist" / "acmeguard.sys"
    sys_file.write_bytes(sys_file.read_bytes() + b"x")
    with pytest.raises(ConfigError, match=r"stale for profile acme-win: sys acmeguard.sys changed.*--profile acme-win"):
        check_image_driver(golden, package_stamp(vendor_package(profile.driver, profile.name)), profile.name)
    with pytest.raises(ConfigError, match="image has the vendor driver AcmeGuard, and profile plain has no driver"):
        WindowsGuestFamily().prepare(select_profile(_plain(vendor, image), "plain"), None, lambda _m: None)


def _plain(vendor: Path, image: Path) -> Path:
    config = vendor.parent / "plain.yaml"
    config.write_text(f"profiles:\n  plain:\n    family: windows\n    edition: win10\n    image: {image}\n")
    return config


# ------------------------------------------------------------------ health: the marker lines


def _templates(text: str) -> dict[str, str]:
    """The double-quoted strings of lib.ps1/boot-marker.ps1 that make each vendor line, by marker."""
    out: dict[str, str] = {}
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for literal in re.findall(r'"(HARNESS-(?:DRIVER|SENSOR-SKIPPED|BOOT-ERROR)[^"]*)"', code):
        key = literal.split(" ", 1)[0] + (" multi" if "[$($i)]" in literal else "")
        key += " listed=no" if "listed=no" in literal else ""
        out.setdefault(key, literal)
    return out


def _fill(template: str, values: dict[str, str]) -> str:
    """What PowerShell makes of the string: $(expr) and $name replaced by their values."""
    line = re.sub(r"\$\(((?:[^()]|\([^()]*\))*)\)", lambda m: values[m[1]], template)
    return re.sub(r"\$([A-Za-z]\w*)", lambda m: values[m[1]], line)


def _lines_the_guest_prints(values: list[tuple[str, str, str | list[str]]], state: str = "RUNNING") -> list[str]:
    """A vendor driver's boot lines, made from the script's own templates."""
    t = _templates(LIB.read_text())
    common = {"Service": "AcmeGuard", "$state.State": state, "$state.Start": "boot", "$state.Win32Exit": "0",
              "$state.ServiceExit": "0", "$state.Filter.Instances": "2", "$state.Filter.Altitude": "385201",
              "Event": "boot", "files": "3", "$values.Count": str(len(values))}
    lines = [_fill(t["HARNESS-DRIVER-STATE"], common), _fill(t["HARNESS-DRIVER-FILTER"], common)]
    for path, name, value in values:
        if isinstance(value, list):
            for i, text in enumerate(value):
                lines.append(_fill(t["HARNESS-DRIVER-VALUE multi"], {
                    "$item.Path": path, "$label": name, "$i": str(i), "Format-DriverValue $strings[$i]": text}))
        else:
            lines.append(_fill(t["HARNESS-DRIVER-VALUE"], {"$item.Path": path, "$label": name,
                                                           "Format-DriverValue $value": value}))
    lines.append(_fill(t["HARNESS-DRIVER-DONE"], common))
    return lines


def test_the_ready_and_rejected_regexes_judge_the_lines_the_boot_marker_prints(vendor: Path) -> None:
    driver = select_profile(vendor, "acme-win").driver
    image_path = r"\SystemRoot\System32\DriverStore\FileRepository\acme.inf_amd64\acmeguard.sys"
    installed: list[tuple[str, str, str | list[str]]] = [
        ("AcmeGuard", "ImagePath", image_path), ("AcmeGuard", "Start", "0"),
        ("AcmeGuard/Parameters/Instances", "DefaultInstance", "AcmeGuard Instance")]
    good = _lines_the_guest_prints(installed + [("AcmeGuard/Parameters/State", "Loaded", ["rules-1.bin", "rules-2.bin"]),
                                                ("AcmeGuard/Parameters/State", "Status", "armed")])
    assert good[0] == ("HARNESS-DRIVER-STATE service=AcmeGuard state=RUNNING start=boot win32_exit=0 service_exit=0 "
                       "source=sc")
    assert good[1] == "HARNESS-DRIVER-FILTER service=AcmeGuard listed=yes instances=2 altitude=385201 source=fltmc"
    assert "HARNESS-DRIVER-VALUE AcmeGuard/Parameters/State Loaded[1]=rules-2.bin" in good
    assert good[-1] == "HARNESS-DRIVER-DONE service=AcmeGuard state=RUNNING values=5 files=3 event=boot"
    assert all("HARNESS-" in line for line in good)  # the host reads only those from COM2 (markers_only)
    complete = ["HARNESS-BOOT-COMPLETE"]
    verdict = triage_text("\n".join(good + complete), family="windows", driver=driver)
    assert verdict.verdict == "healthy", verdict.reason

    refused = _lines_the_guest_prints(installed + [
        ("AcmeGuard/Parameters/State", "Rejected", ["rules-3.bin: bad magic 0x0"]),
        ("AcmeGuard/Parameters/State", "Status", "armed")])
    verdict = triage_text("\n".join(refused + complete), family="windows", driver=driver)
    assert verdict.verdict == "content-rejected" and "rules-3.bin (bad magic 0x0)" in verdict.reason

    # the driver never said armed: no ready line, so never healthy
    silent = _lines_the_guest_prints(installed + [("AcmeGuard/Parameters/State", "Status", "waiting")])
    assert triage_text("\n".join(silent + complete), family="windows", driver=driver).verdict == "hang"
    # the sample's lines mean nothing for a vendor driver
    sample = ["HARNESS-SENSOR-LOADED build=vulnerable files=1 loaded=1 rejected=0 instances=1 generation=1 "
              "status=ok source=driver", "HARNESS-BOOT-COMPLETE"]
    assert triage_text("\n".join(sample), family="windows", driver=driver).verdict == "hang"
    assert triage_text("\n".join(sample), family="windows").verdict == "healthy"  # the sample's family


def test_a_driver_that_did_not_start_is_a_boot_error_and_safe_mode_a_skip(vendor: Path) -> None:
    driver = select_profile(vendor, "acme-win").driver
    boot = _templates(BOOT.read_text())
    values = {"$driver.Service": "AcmeGuard", "$result.State.State": "STOPPED", "$result.State.Win32Exit": "577"}
    error = _fill(boot["HARNESS-BOOT-ERROR"], values)
    assert error.startswith("HARNESS-BOOT-ERROR driver: AcmeGuard is not running (state=STOPPED win32_exit=577;")
    lines = _lines_the_guest_prints([("AcmeGuard", "Start", "0")], state="STOPPED") + [error, "HARNESS-BOOT-COMPLETE"]
    verdict = triage_text("\n".join(lines), family="windows", driver=driver)
    assert verdict.verdict == "hang" and "AcmeGuard is not running" in verdict.reason
    skipped = _fill(boot["HARNESS-SENSOR-SKIPPED"], values)
    assert skipped == "HARNESS-SENSOR-SKIPPED service=AcmeGuard state=STOPPED source=sc"
    verdict = triage_text("\n".join([skipped, "HARNESS-BOOT-COMPLETE"]), family="windows", driver=driver)
    assert verdict.verdict == "healthy" and "skipped (safe mode)" in verdict.reason


def test_the_backend_uses_the_vendor_markers_and_content_directory(vendor: Path) -> None:
    profile = select_profile(vendor, "acme-win")
    image = _golden(vendor, package_stamp(vendor_package(profile.driver, profile.name)))  # type: ignore[arg-type]
    backend = WindowsBackend(load_golden(image), profile.driver)
    assert backend.content_dir == CONTENT_DIR
    assert backend.family.markers.sensor_loaded.pattern == READY
    assert backend.family.markers.file_rejected.search(
        "HARNESS-DRIVER-VALUE AcmeGuard/Parameters/State Rejected[0]=a.bin: short")["name"] == "a.bin"
    assert content_path("rules-9.bin", CONTENT_DIR) == "/C:/ProgramData/Acme/Rules/rules-9.bin"
    sample = WindowsBackend(load_golden(image))
    assert sample.content_dir == r"C:\Windows\System32\drivers\HarnessSensor"


def test_recovery_scripts_get_the_vendor_content_directory() -> None:
    recover = render_recover_cmd("remove-bad-content.cmd", "cmd", content_dir=CONTENT_DIR)
    assert 'if exist "%%D:\\ProgramData\\Acme\\Rules\\" set "WINVOL=%%D:"' in recover
    assert 'set "HARNESS_CONTENT_DIR=%WINVOL%\\ProgramData\\Acme\\Rules"' in recover
    assert "HarnessSensor" not in recover
    files = safe_mode_files(None, [], content_dir=CONTENT_DIR)
    assert f"$env:HARNESS_CONTENT_DIR = '{CONTENT_DIR}'" in files["safe-mode.ps1"].decode()
    assert "Join-Path $env:SystemRoot 'System32\\drivers\\HarnessSensor'" not in files["safe-mode.ps1"].decode()


def test_the_vendor_install_script_is_rendered_with_literals_only(vendor: Path) -> None:
    """Values reach the script as single-quoted literals: a quote in a path cannot end one."""
    profile = select_profile(vendor, "acme-win")
    package = vendor_package(profile.driver, profile.name)  # type: ignore[arg-type]
    script = render_install_script(package)
    assert re.findall(r"^\$(\w+) = (.*)$", script, re.M)[:7] == [
        ("Service", "'AcmeGuard'"), ("Inf", "'acme.inf'"), ("Sys", "'acmeguard.sys'"), ("Catalog", "'acmeguard.cat'"),
        ("Source", "'C:\\harness\\driver'"), ("ContentDir", f"'{CONTENT_DIR}'"), ("ExpectedStart", "0")]


# ------------------------------------------------------------------ errors: one line, exit 2


def _image_build(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from harness import cli

    code = cli.main(["image", "build", "windows", "--iso", str(config.parent / "no.iso"), "--virtio-win",
                     str(config.parent / "no.iso"), "--out", str(config.parent / "out"), "--config", str(config),
                     "--profile", "acme-win"])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("change, words", [
    ({"inf": "dist/missing.inf"}, r"profiles\.acme-win\.driver\.inf: .*missing\.inf is not a file: build the driver"),
    ({"sys": "dist/missing.sys"}, r"profiles\.acme-win\.driver\.sys: .*missing\.sys is not a file"),
    ({"inf": ""}, r"profiles\.acme-win\.driver\.inf: missing; a windows driver needs inf, sys"),
    ({"service": "AcmeGuardSvc"}, r"profile acme-win: driver\.service: 'AcmeGuardSvc' is not a service acme\.inf "
                                  r"installs \(AddService in \[DefaultInstall\.NTamd64\.Services\]: AcmeGuard\): "
                                  r"set service: AcmeGuard, or fix the INF"),
    ({"service": "Acme Guard"}, r"profiles\.acme-win\.driver\.service: 'Acme Guard' is not a service name"),
    ({"content_dir": "D:\\Rules"}, r"profiles\.acme-win\.driver\.content_dir: 'D:\\\\Rules': give a directory on C:"),
    ({"cert": "dist/acme.inf"}, r"profiles\.acme-win\.driver\.cert: .*acme\.inf is not an X\.509 certificate"),
    ({"sys": "dist/acme.inf"}, r"profiles\.acme-win\.driver\.sys: .*acme\.inf is not a \.sys file"),
], ids=["missing-inf", "missing-sys", "no-inf-key", "other-service", "bad-service-name", "not-on-c", "cert-not-x509",
        "sys-not-sys"])
def test_bad_driver_blocks_are_one_line_naming_profile_key_and_fix(
        vendor: Path, capsys: pytest.CaptureFixture[str], change: dict[str, str], words: str) -> None:
    _write_config(vendor, **change)
    code, err = _image_build(vendor, capsys)
    assert code == 2 and "\n" not in err and "Traceback" not in err, err
    assert re.search(words, err), err


@pytest.mark.parametrize("inf, words", [
    (ACME_INF.replace("[DefaultInstall.NTamd64.Services]\nAddService = %ServiceName%,,Acme.Service\n", ""),
     r"driver\.inf: .*acme\.inf is not a driver INF pnputil can install: .*has no AddService line: it installs no "
     r"driver"),
    (ACME_INF.replace("[DefaultInstall.NTamd64]", "[Manufacturer]\n%Acme% = Acme,NTamd64\n\n[Acme.NTamd64]")
     .replace("[DefaultInstall.NTamd64.Services]", "[Acme_Install.Services]"),
     r"not a driver INF pnputil can install: a PnP INF \(\[Manufacturer\], no \[DefaultInstall\.NTamd64\]\)"),
    (ACME_INF.replace("ServiceType   = 2", "ServiceType   = 16"),
     r"no service of ServiceType 1 or 2 \(a kernel or file system driver\): AcmeGuard: ServiceType 16"),
    (ACME_INF.replace("%13%\\acmeguard.sys", "%13%\\acme_v2.sys"),
     r"driver\.sys: acme\.inf installs acme_v2\.sys as AcmeGuard's binary, sys: names acmeguard\.sys: point sys: at"),
    (ACME_INF.replace("CatalogFile = acmeguard.cat\n", ""),
     r"driver\.inf: \[Version\] of .*acme\.inf names no CatalogFile: .*add CatalogFile = acmeguard\.cat"),
    ("not an inf at all\n", r"not a driver INF pnputil can install: no \[Version\] Signature"),
    (ACME_INF.replace("[Acme.Files]\nacmeguard.sys\n", "[Acme.Files]\nacmeguard.sys\nacmehelper.dll\n"),
     r"driver\.inf: \[DefaultInstall\.NTamd64\] of .*acme\.inf also copies acmehelper\.dll, which the driver block"),
], ids=["no-addservice", "pnp-inf", "not-a-driver-service", "other-binary", "no-catalog", "not-an-inf", "more-files"])
def test_an_inf_that_cannot_install_the_service_is_one_line(
        vendor: Path, capsys: pytest.CaptureFixture[str], inf: str, words: str) -> None:
    (vendor.parent / "dist" / "acme.inf").write_text(inf)
    code, err = _image_build(vendor, capsys)
    assert code == 2 and "\n" not in err and err.startswith("harness: error: profile acme-win: driver."), err
    assert re.search(words, err), err


def test_a_sys_that_is_not_a_native_amd64_image_is_one_line(vendor: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (vendor.parent / "dist" / "acmeguard.sys").write_bytes(b"MZ" + b"\0" * 200)
    code, err = _image_build(vendor, capsys)
    assert code == 2 and "\n" not in err
    assert re.search(r"profile acme-win: driver\.sys: .*acmeguard\.sys is not a PE image .*give the driver's \.sys",
                     err)


def test_a_private_key_is_refused_as_the_certificate(vendor: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = BUILD / "testcert" / "harness-test-signing.key"
    if not key.is_file():
        pytest.skip("no test key built")
    shutil.copyfile(key, vendor.parent / "dist" / "acme-test.key")
    _write_config(vendor, cert="dist/acme-test.key")
    code, err = _image_build(vendor, capsys)
    assert code == 2 and "holds a private key: give the public certificate only" in err and "\n" not in err


def test_the_sample_inf_passes_the_same_checks_as_a_vendor_inf(tmp_path: Path) -> None:
    """drivers/windows/harnessflt.inf (the one the sample image installs) read by inf.py as
    a vendor's would be: the service, its binary, the catalog and the boot start."""
    dist = tmp_path / "dist"
    dist.mkdir()
    shutil.copyfile(REPO / "drivers" / "windows" / "harnessflt.inf", dist / "harnessflt.inf")
    shutil.copyfile(_signed_sys(), dist / "harnessflt.sys")
    config = tmp_path / "h.yaml"
    config.write_text("profiles:\n  flt:\n    family: windows\n    image: x.qcow2\n    driver:\n"
                      "      inf: dist/harnessflt.inf\n      sys: dist/harnessflt.sys\n      service: HARNESSFLT\n"
                      "      content_dir: 'C:\\Windows\\System32\\drivers\\HarnessSensor'\n"
                      "      ready: 'HARNESS-DRIVER-VALUE harnessflt/Parameters/State Finished=1'\n")
    profile = select_profile(config, "flt")
    package = vendor_package(profile.driver, profile.name)  # type: ignore[arg-type]
    assert (package.service, package.catalog_name, package.start_type, package.catalog) == \
        ("harnessflt", "harnessflt.cat", 0, None)  # the INF's spelling of the service wins


def test_doctor_checks_the_vendor_package_against_the_image(vendor: Path) -> None:
    from harness.doctor import run_checks

    profile = select_profile(vendor, "acme-win")
    assert profile.driver is not None
    _golden(vendor, package_stamp(vendor_package(profile.driver, profile.name)))
    check = next(c for c in run_checks(profile) if c.name == "vendor driver")
    assert check.ok, check
    sys_file = vendor.parent / "dist" / "acmeguard.sys"
    sys_file.write_bytes(sys_file.read_bytes() + b"x")
    check = next(c for c in run_checks(profile) if c.name == "vendor driver")
    assert not check.ok and "sys acmeguard.sys changed" in check.detail, check
