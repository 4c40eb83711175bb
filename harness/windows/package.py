r"""The driver a Windows golden image installs: the sample sensor or a profile's vendor driver,
as one kind of thing (a driver package), from the checks to the setup medium and the stamp.

    package = vendor_package(profile.driver, profile.name)   # ConfigError naming the profile and key
    package = sample_package(sys_file, inf_file, cert)       # harnessflt, as `make -C drivers windows sign` built it
    files = package_files(package)                           # medium path -> bytes (answer medium, media.py)
    stamp = package_stamp(package)                           # <image>.golden.json "driver" (image_stamp.py)

A vendor package is installed by its own INF (`pnputil /add-driver <inf> /install`, the
rendered vm-templates/windows/setup/install-driver.ps1.j2), with the service name of the
profile's `service`; the sample is not installed then. Its files travel under
\harness\driver\ on the medium (the catalog too, when the vendor ships the .cat the INF
names next to the INF; else setup makes and signs one on the VM, as for the sample), its
test certificate (`cert:`) under \harness\certificates\. What is checked before anything is
built (each a ConfigError: `profile <name>: driver.<key>: <what>: <fix>`, exit 2): the INF is
a driver INF pnputil can install, it installs the service `service`, the binary it installs is
the `sys:` file (by name), that file is a native amd64 PE, and the catalog, if shipped, is
where the INF says.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from ..driver import DriverSpec
from ..errors import ConfigError
from ..vm.templates import render
from .inf import SERVICE_TYPES, inf_facts, not_installable
from .powershell import ps_quote

INSTALL_TEMPLATE = "windows/setup/install-driver.ps1.j2"
INSTALL_SCRIPT = "install-driver.ps1"  # \harness\install-driver.ps1 on the medium
MEDIUM_DIR = "harness"
SAMPLE_SERVICE = "harnessflt"
SAMPLE_CONTENT_DIR = r"C:\Windows\System32\drivers\HarnessSensor"
SAMPLE_CERT = "harness-test-signing.cer"
VENDOR_DIR = "driver"  # \harness\driver\ : the vendor's INF, SYS and catalog
CERT_DIR = "certificates"
JOLIET_MAX = 64  # the longest file name the answer medium's Joliet tree holds
IMAGE_FILE_MACHINE_AMD64 = 0x8664
IMAGE_SUBSYSTEM_NATIVE = 1


@dataclass(frozen=True)
class DriverPackage:
    service: str
    inf: Path
    sys: Path
    catalog_name: str  # the INF's CatalogFile: made on the VM when `catalog` is None
    content_dir: str  # absolute, C:\...
    catalog: Path | None = None  # the vendor's own .cat beside the INF
    cert: Path | None = None  # a test certificate to trust (Root and TrustedPublisher)
    start_type: int | None = None  # the INF's StartType, checked after the install
    vendor: bool = True

    @property
    def medium_dir(self) -> str:
        """Where the package's files are under \\harness\\ on the medium ("" = \\harness itself)."""
        return VENDOR_DIR if self.vendor else ""

    def medium_path(self, name: str, sub: str | None = None) -> str:
        folder = self.medium_dir if sub is None else sub
        return f"{MEDIUM_DIR}/{folder}/{name}" if folder else f"{MEDIUM_DIR}/{name}"


def _where(profile: str, key: str) -> str:
    return f"profile {profile}: driver.{key}"


def check_native_pe(path: Path, where: str) -> None:
    """A native (kernel-mode) amd64 PE32+ image, or a ConfigError naming `where` and the fix."""
    fix = "give the driver's .sys built for x64 (a kernel-mode driver: /SUBSYSTEM:NATIVE)"
    try:
        head = path.read_bytes()[:4096]
    except OSError as exc:
        raise ConfigError(f"{where}: {path}: cannot read: {exc.strerror}") from None
    if head[:2] != b"MZ" or len(head) < 64:
        raise ConfigError(f"{where}: {path} is not a PE image (no MZ header): {fix}")
    offset = struct.unpack_from("<I", head, 0x3C)[0]
    if offset + 24 + 70 > len(head) or head[offset:offset + 4] != b"PE\0\0":
        raise ConfigError(f"{where}: {path} is not a PE image (no PE signature): {fix}")
    machine = struct.unpack_from("<H", head, offset + 4)[0]
    magic, = struct.unpack_from("<H", head, offset + 24)
    subsystem, = struct.unpack_from("<H", head, offset + 24 + 68)
    if machine != IMAGE_FILE_MACHINE_AMD64 or magic != 0x20B:
        raise ConfigError(f"{where}: {path} is not an amd64 PE32+ image (machine 0x{machine:04x}): {fix}")
    if subsystem != IMAGE_SUBSYSTEM_NATIVE:
        raise ConfigError(f"{where}: {path} is not a kernel-mode image (subsystem {subsystem}, not 1 NATIVE): {fix}")


def vendor_package(driver: DriverSpec, profile: str) -> DriverPackage:
    """The profile's vendor driver as a package, checked (see the module docstring)."""
    if not driver.inf or not driver.sys or not driver.service:
        missing = next(k for k in ("inf", "sys", "service") if not getattr(driver, k))
        raise ConfigError(f"{_where(profile, missing)}: missing: a Windows driver is installed by its INF; "
                          "give inf, sys and service")
    inf, sys_file = Path(driver.inf), Path(driver.sys)
    for key, path in (("inf", inf), ("sys", sys_file)):
        if not path.is_file():
            raise ConfigError(f"{_where(profile, key)}: {path} is not a file: build the driver first, or fix the path")
    facts = inf_facts(inf)
    why = not_installable(facts)
    if why:
        raise ConfigError(f"{_where(profile, 'inf')}: {inf} is not a driver INF pnputil can install: {why}")
    names = [s.name for s in facts.services]
    service = next((s for s in facts.services if s.name.lower() == driver.service.lower()), None)
    if service is None:
        raise ConfigError(f"{_where(profile, 'service')}: {driver.service!r} is not a service {inf.name} installs "
                          f"(AddService in [{facts.install_section}.Services]: {', '.join(names)}): set "
                          f"service: {names[0]}, or fix the INF")
    if service.service_type not in SERVICE_TYPES:
        raise ConfigError(f"{_where(profile, 'service')}: {service.name} has ServiceType {service.service_type} in "
                          f"[{service.section}] of {inf}: not a driver; the driver's service has ServiceType 1 or 2")
    if not service.binary:
        raise ConfigError(f"{_where(profile, 'inf')}: [{service.section}] of {inf} has no ServiceBinary: "
                          f"add ServiceBinary = %13%\\{sys_file.name}")
    if service.binary.lower() != sys_file.name.lower():
        raise ConfigError(f"{_where(profile, 'sys')}: {inf.name} installs {service.binary} as {service.name}'s "
                          f"binary, sys: names {sys_file.name}: point sys: at {service.binary} (or rename it)")
    if facts.copied and sys_file.name.lower() not in (c.lower() for c in facts.copied):
        raise ConfigError(f"{_where(profile, 'inf')}: [{facts.install_section}] of {inf} copies "
                          f"{', '.join(facts.copied)}, not {sys_file.name}: add it to its CopyFiles section")
    others = [c for c in facts.copied if c.lower() != sys_file.name.lower()]
    if others:  # the package folder holds the INF, the .sys and the catalog only
        raise ConfigError(f"{_where(profile, 'inf')}: [{facts.install_section}] of {inf} also copies "
                          f"{', '.join(others)}, which the driver block does not ship: a package of one .sys "
                          "is what the recipe installs; remove them from its CopyFiles")
    if not facts.catalog:
        raise ConfigError(f"{_where(profile, 'inf')}: [Version] of {inf} names no CatalogFile: pnputil adds only a "
                          f"signed package; add CatalogFile = {sys_file.stem}.cat (setup makes and signs it "
                          "when you ship none)")
    check_native_pe(sys_file, _where(profile, "sys"))
    for name in (inf.name, sys_file.name, facts.catalog, *([Path(driver.cert).name] if driver.cert else [])):
        if len(name) > JOLIET_MAX:
            raise ConfigError(f"{_where(profile, 'inf')}: {name!r} is longer than {JOLIET_MAX} characters, the "
                              "longest name the setup medium holds: shorten it")
    shipped = inf.with_name(facts.catalog)
    return DriverPackage(service=service.name, inf=inf, sys=sys_file, catalog_name=facts.catalog,
                         content_dir=driver.content_dir, catalog=shipped if shipped.is_file() else None,
                         cert=Path(driver.cert) if driver.cert else None, start_type=service.start_type)


def sample_package(sys_file: Path, inf_file: Path, cert: Path) -> DriverPackage:
    """The sample sensor (harnessflt), from the files `make -C drivers windows sign` built."""
    return DriverPackage(service=SAMPLE_SERVICE, inf=inf_file, sys=sys_file, catalog_name="harnessflt.cat",
                         content_dir=SAMPLE_CONTENT_DIR, cert=cert, start_type=0, vendor=False)


def install_values(package: DriverPackage) -> dict[str, object]:
    """The install script's values, each a PowerShell single-quoted literal (ps_quote)."""
    package_dir = "C:\\harness" + (f"\\{package.medium_dir}" if package.medium_dir else "")
    return {
        "service": ps_quote(package.service), "inf": ps_quote(package.inf.name), "sys": ps_quote(package.sys.name),
        "catalog": ps_quote(package.catalog_name), "catalog_given": package.catalog is not None,
        "source": ps_quote(package_dir), "content_dir": ps_quote(package.content_dir),
        "start_type": -1 if package.start_type is None else package.start_type,
        "kind": "vendor" if package.vendor else "sample",
    }


def render_install_script(package: DriverPackage) -> str:
    return render(INSTALL_TEMPLATE, **install_values(package))


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def package_files(package: DriverPackage) -> dict[str, bytes]:
    """Medium path -> bytes: the package's files, its certificate and the install script."""
    files: dict[str, bytes] = {}
    sources = [(package.sys, package.medium_path(package.sys.name)),
               (package.inf, package.medium_path(package.inf.name))]
    if package.catalog is not None:
        sources.append((package.catalog, package.medium_path(package.catalog.name)))
    if package.cert is not None:
        sources.append((package.cert, package.medium_path(
            package.cert.name if package.vendor else SAMPLE_CERT, CERT_DIR if package.vendor else None)))
    for src, target in sources:
        if not src.is_file():
            raise ConfigError(f"{src}: not found (make -C \"$(python3 -m harness.paths)\" windows sign builds the "
                              "sample; a vendor driver's files are named in its profile)")
        files[target] = src.read_bytes()
    files[f"{MEDIUM_DIR}/{INSTALL_SCRIPT}"] = _crlf(render_install_script(package).encode("utf-8"))
    return files


def image_config(package: DriverPackage) -> dict[str, object]:
    """The "driver" block of \\harness\\image.json: what setup.ps1 and boot-marker.ps1 read."""
    certificate = ""
    if package.cert is not None:
        certificate = f"{CERT_DIR}\\{package.cert.name}" if package.vendor else SAMPLE_CERT
    return {"kind": "vendor" if package.vendor else "sample", "service": package.service,
            "content_dir": package.content_dir, "inf": package.inf.name, "sys": package.sys.name,
            "certificate": certificate}


def _digest(path: Path) -> dict[str, object]:
    data = path.read_bytes()
    return {"name": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def package_stamp(package: DriverPackage) -> dict[str, object]:
    """What the golden image's manifest records of its driver, with `key`: a sha256 over the
    service, the content directory, every file's contents and the rendered install script, so
    that a new .sys (or INF, catalog, certificate) makes another key and the image stale."""
    files = {"inf": _digest(package.inf), "sys": _digest(package.sys)}
    if package.catalog is not None:
        files["catalog"] = _digest(package.catalog)
    if package.cert is not None:
        files["cert"] = _digest(package.cert)
    script = hashlib.sha256(render_install_script(package).encode("utf-8")).hexdigest()
    body = {"kind": "vendor" if package.vendor else "sample", "service": package.service,
            "content_dir": package.content_dir, "files": files, "install_script_sha256": script}
    key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return {**body, "key": key}


def volume_relative(content_dir: str) -> str:
    r"""C:\ProgramData\Acme\Rules -> \ProgramData\Acme\Rules (the path on whatever letter WinPE gives C:)."""
    path = PureWindowsPath(content_dir)
    return "\\" + "\\".join(path.parts[1:])
