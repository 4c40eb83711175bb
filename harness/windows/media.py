"""The install-answer medium: an ISO with autounattend.xml at its root.

Windows Setup looks for autounattend.xml at the root of removable media (a CD-ROM
counts), so the medium carries the rendered answer file, the first-logon setup
scripts (vm-templates/windows/setup/*.ps1), the image's driver (package.py: the sample
sensor's signed .sys + .inf and the test certificate, or a profile's vendor driver under
harness/driver/ with its certificate under harness/certificates/) with its rendered
install-driver.ps1, the SSH key for administrators_authorized_keys and harness/image.json
(edition, sensor build, the driver's service and content directory). Made with pycdlib: ISO 9660 level 3
plus Joliet (the long names Windows reads), volume label AUTOUNATTEND, built in
memory and written with mode 0600 (the answer file holds the administrator's
password).

    plan = AnswerPlan(edition="win11", image_index=6, sensor_build="vulnerable", ...)
    xml = render_autounattend(plan)
    build_answer_iso(out / "answer.iso", xml, answer_files(plan, sensor_dir, cert, pubkey))
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, InfraError
from ..vm.templates import TEMPLATES, render
from .domain import EDITIONS
from .package import DriverPackage, image_config, package_files, sample_package

AUTOUNATTEND_TEMPLATE = "windows/autounattend.xml.j2"
SETUP_DIR = TEMPLATES / "windows" / "setup"
SETUP_SCRIPTS = ("lib.ps1", "setup.ps1", "boot-marker.ps1")
VOLUME_LABEL = "AUTOUNATTEND"
MEDIUM_DIR = "harness"  # every harness file under \harness\ on the medium
ADMIN_USER = "harness"

# virtio-win ISO folders per edition (viostor\w11\amd64, ...: the layout of
# Fedora's virtio-win ISO, as rgl/windows-vagrant uses it).
VIRTIO_OS_DIR = {"win10": "w10", "win11": "w11", "server2022": "2k22"}
VIRTIO_DRIVERS = ("viostor", "vioscsi", "NetKVM")
# The virtio-win ISO is the second CD-ROM; in WinPE it is usually E: (D: = the
# install ISO), but the letter depends on enumeration: every likely one is listed.
VIRTIO_DRIVE_LETTERS = ("D", "E", "F", "G")

# FirstLogonCommands: find the medium by its setup script, run it.
SETUP_COMMAND = (
    'powershell.exe -NoProfile -ExecutionPolicy Bypass -Command "'
    "foreach ($d in [IO.DriveInfo]::GetDrives()) { "
    "$s = Join-Path $d.Name 'harness\\setup.ps1'; "
    "if (Test-Path -LiteralPath $s) { & $s -Medium $d.Name; exit $LASTEXITCODE } }; "
    "exit 3\""
)


@dataclass(frozen=True)
class AnswerPlan:
    edition: str
    image_index: int
    sensor_build: str
    admin_password: str
    product_key: str | None = None
    locale: str = "en-US"
    input_locale: str = "0409:00000409"
    computer_name: str = "HARNESS-GOLD"
    efi_size_mib: int = 260  # Microsoft's minimum ESP on 4Kn drives; 100 MiB otherwise


def driver_paths(edition: str) -> list[str]:
    os_dir = VIRTIO_OS_DIR[edition]
    return [f"{letter}:\\{driver}\\{os_dir}\\amd64" for letter in VIRTIO_DRIVE_LETTERS
            for driver in VIRTIO_DRIVERS]


def autounattend_values(plan: AnswerPlan) -> dict[str, object]:
    if plan.edition not in EDITIONS:
        raise ConfigError(f"{AUTOUNATTEND_TEMPLATE}: edition: {plan.edition!r} is not one of "
                          f"{', '.join(EDITIONS)}")
    if isinstance(plan.image_index, bool) or not isinstance(plan.image_index, int) or plan.image_index < 1:
        raise ConfigError(f"{AUTOUNATTEND_TEMPLATE}: image_index: {plan.image_index!r} must be a whole "
                          "number >= 1 (dism /Get-ImageInfo /ImageFile:<iso>\\sources\\install.wim lists them)")
    if len(plan.computer_name) > 15:
        raise ConfigError(f"{AUTOUNATTEND_TEMPLATE}: computer_name: {plan.computer_name!r} is longer than 15")
    return dict(edition=plan.edition, image_index=plan.image_index, admin_user=ADMIN_USER,
                admin_password=plan.admin_password, product_key=plan.product_key or "",
                locale=plan.locale, input_locale=plan.input_locale, computer_name=plan.computer_name,
                efi_size_mib=plan.efi_size_mib, driver_paths=driver_paths(plan.edition),
                setup_command=SETUP_COMMAND)


def render_autounattend(plan: AnswerPlan, **overrides: object) -> str:
    """The answer file (StrictUndefined: a missing value is a ConfigError naming it)."""
    values = autounattend_values(plan)
    values.update(overrides)
    return render(AUTOUNATTEND_TEMPLATE, **values)


def answer_files(plan: AnswerPlan, sensor_sys: Path | None, sensor_inf: Path | None, certificate: Path | None,
                 authorized_key: str, package: DriverPackage | None = None) -> dict[str, bytes]:
    """Medium path -> bytes of every file under \\harness\\ (not the answer file itself).
    The driver is `package` (a vendor's, package.vendor_package) or, when None, the sample
    sensor made of `sensor_sys`, `sensor_inf` and `certificate`: never both."""
    if package is None:
        if sensor_sys is None or sensor_inf is None or certificate is None:
            raise ConfigError("answer_files: the sample sensor needs its .sys, .inf and certificate "
                              "(make -C \"$(python3 -m harness.paths)\" windows sign builds them)")
        package = sample_package(sensor_sys, sensor_inf, certificate)
    files: dict[str, bytes] = {}
    for name in SETUP_SCRIPTS:
        path = SETUP_DIR / name
        if not path.is_file():
            raise ConfigError(f"{path}: setup script missing from the repository")
        # CRLF: Windows PowerShell 5.1 reads either, Notepad and type prefer CRLF.
        files[f"{MEDIUM_DIR}/{name}"] = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    files.update(package_files(package))
    files[f"{MEDIUM_DIR}/administrators_authorized_keys"] = (authorized_key.strip() + "\r\n").encode()
    files[f"{MEDIUM_DIR}/image.json"] = json.dumps(
        {"edition": plan.edition, "sensor_build": plan.sensor_build if not package.vendor else "vendor",
         "admin_user": ADMIN_USER, "driver": image_config(package)}).encode()
    return files


def _iso9660_name(name: str, is_dir: bool) -> str:
    """An ISO 9660 level-3 identifier for a Joliet name (the Joliet one is what Windows shows)."""
    stem, dot, ext = name.upper().partition(".")
    clean = lambda s: "".join(c if c.isalnum() or c == "_" else "_" for c in s)  # noqa: E731
    if is_dir:
        return clean(name.upper())[:31]
    return f"{clean(stem)[:30]}.{clean(ext)[:30]};1" if dot else f"{clean(stem)[:30]}.;1"


def build_answer_iso(target: Path, autounattend: str, files: Mapping[str, bytes],
                     label: str = VOLUME_LABEL) -> Path:
    """Write the medium: autounattend.xml at the root, `files` by path; mode 0600."""
    try:
        import pycdlib
    except ImportError:
        raise InfraError("pycdlib is not installed (needed for the install-answer medium): "
                         "pip install pycdlib (or pip install -e .)") from None
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, vol_ident=label)
    entries = {"autounattend.xml": autounattend.encode("utf-8"), **files}
    made: set[str] = set()
    iso_names: dict[str, str] = {}  # joliet dir -> iso dir
    for path in sorted(entries):
        parts = PurePosixPath(path).parts
        for depth in range(1, len(parts)):
            jdir = "/" + "/".join(parts[:depth])
            if jdir not in made:
                parent_iso = iso_names.get("/" + "/".join(parts[:depth - 1]), "") if depth > 1 else ""
                iso_dir = f"{parent_iso}/{_iso9660_name(parts[depth - 1], True)}"
                iso.add_directory(iso_dir, joliet_path=jdir)
                made.add(jdir)
                iso_names[jdir] = iso_dir
        parent_iso = iso_names.get("/" + "/".join(parts[:-1]), "") if len(parts) > 1 else ""
        data = entries[path]
        iso.add_fp(io.BytesIO(data), len(data), f"{parent_iso}/{_iso9660_name(parts[-1], False)}",
                   joliet_path="/" + path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            iso.write_fp(out)
    finally:
        iso.close()
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    return target


def read_answer_iso(path: Path) -> dict[str, bytes]:
    """Joliet path (without the leading /) -> bytes of every file on the medium (for tests)."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    out: dict[str, bytes] = {}
    try:
        for root, _dirs, names in iso.walk(joliet_path="/"):
            for name in names:
                full = (root.rstrip("/") + "/" + name)
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, joliet_path=full)
                out[full.lstrip("/")] = buf.getvalue()
    finally:
        iso.close()
    return out


def volume_label(path: Path) -> str:
    with open(path, "rb") as handle:
        handle.seek(0x8000 + 40)
        return handle.read(32).decode("ascii", "replace").strip()
