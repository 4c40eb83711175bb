"""The Windows golden-image recipe: ISO in, read-only golden qcow2 out.

    golden = build_windows_image(ImageRequest(iso=..., virtio_win=..., edition="win11", out=out))

1. check the inputs (each problem is one ConfigError/InputFileError naming the file
   and the fix: the CLI prints it and exits 2);
2. render autounattend.xml and build the install-answer medium (media.py) with the
   setup scripts, the driver (package.py: the signed sample sensor and the test
   certificate, or the request's vendor driver, checked first: its INF, service, .sys)
   and a fresh SSH key; a vendor image already built with the same driver files is
   up to date and returned as it is, one built with other files is stale and rebuilt;
3. create a blank qcow2 disk (<image>.building.qcow2);
4. start the *installer domain* with the media attached, installer first in the boot
   order (for Windows: vm-templates/windows/domain.xml.j2 via windows_domain_values();
   tests pass a Linux reference-guest stand-in through `installer=`);
5. show progress (elapsed, domain state, last COM2 marker) until COM2 shows
   HARNESS-IMAGE-READY and the domain has shut itself off (or HARNESS-SETUP-ERROR,
   the domain stopping early, or the timeout: the build fails, the domain is destroyed);
6. stamp the image golden: renamed to <image>.qcow2, chmod 0444, sha256 and the inputs
   in <image>.golden.json (0444), the UEFI variable store beside it.

Steps 1 to 3 are here; the request and result types are in image_request.py, the installer
domain (4, 5) in image_installer.py, the stamping (6) in image_stamp.py.  Every name those
define that callers used from here is re-exported.
"""

from __future__ import annotations

import os
import secrets
import string
import subprocess
from pathlib import Path

from ..errors import ConfigError, InfraError, InputFileError
from ..paths import DRIVERS_BUILD, driver_tree
from .domain import EDITIONS, find_ovmf
from .image_installer import (
    BOOT_KEY,
    DEFAULT_PRESS_KEYS_S,
    ERROR_MARKER,
    MARKER_RE,
    READY_MARKER,
    run_installer,
    windows_installer,
)
from .image_request import (
    DEFAULT_DISK_GIB,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TIMEOUT,
    SENSOR_BUILDS,
    BuildPaths,
    GoldenImage,
    ImageRequest,
    InstallerDomain,
    InstallerFactory,
    Progress,
)
from .image_stamp import manifest_driver, stamp_golden, up_to_date
from .package import DriverPackage, package_stamp, sample_package, vendor_package

__all__ = [
    "BOOT_KEY", "DEFAULT_DISK_GIB", "DEFAULT_PRESS_KEYS_S", "DEFAULT_SHUTDOWN_TIMEOUT", "DEFAULT_TIMEOUT",
    "ERROR_MARKER", "ISO_MAGIC_OFFSET", "MARKER_RE", "READY_MARKER", "SENSOR_BUILDS",
    "BuildPaths", "GoldenImage", "ImageRequest", "InstallerDomain", "InstallerFactory", "Progress",
    "build_windows_image", "check_iso", "check_request", "run_installer", "sensor_files", "stamp_golden",
    "windows_installer",
]

ISO_MAGIC_OFFSET = 0x8001  # "CD001" of the primary volume descriptor


# ------------------------------------------------------------------ inputs

def check_iso(path: Path, what: str, fix: str) -> None:
    if not path.exists():
        raise InputFileError(f"{path}: {what} not found: {fix}")
    if not path.is_file():
        raise InputFileError(f"{path}: {what} is not a file: {fix}")
    with open(path, "rb") as handle:
        handle.seek(ISO_MAGIC_OFFSET)
        if handle.read(5) != b"CD001":
            raise InputFileError(f"{path}: {what} is not an ISO 9660 image (no CD001 volume descriptor "
                                 f"at 0x8001): {fix}")


def sensor_files(build: str, progress: Progress) -> tuple[Path, Path, Path]:
    """(signed harnessflt.sys, harnessflt.inf, test certificate .cer), built if missing."""
    signed = DRIVERS_BUILD / "windows" / build / "signed"
    cert = DRIVERS_BUILD / "windows" / "testcert" / "harness-test-signing.cer"
    wanted = (signed / "harnessflt.sys", signed / "harnessflt.inf", cert)
    if not all(p.is_file() for p in wanted):
        progress("image: building the signed sensor: make -C drivers windows sign")
        proc = subprocess.run(["make", "--no-print-directory", "-C", str(driver_tree()), "windows", "sign"],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
            raise InfraError(f"make -C drivers windows sign failed (exit {proc.returncode}): {tail}")
        missing = [str(p) for p in wanted if not p.is_file()]
        if missing:
            raise InfraError(f"make -C drivers windows sign succeeded but {', '.join(missing)} is missing")
    return wanted


def check_request(req: ImageRequest, paths: BuildPaths, replace_stale: bool = False) -> None:
    """The request's inputs; `replace_stale`: an existing image is stale (built with another
    driver) and is replaced without --force."""
    if req.edition not in EDITIONS:
        raise ConfigError(f"--edition {req.edition!r}: not one of {', '.join(EDITIONS)}")
    if req.sensor not in SENSOR_BUILDS:
        raise ConfigError(f"--sensor {req.sensor!r}: not one of {', '.join(SENSOR_BUILDS)}")
    if req.image_index < 1:
        raise ConfigError(f"--image-index {req.image_index}: must be >= 1 (dism /Get-ImageInfo lists them)")
    check_iso(req.iso, "Windows install ISO", "pass the Windows ISO downloaded from Microsoft with --iso")
    check_iso(req.virtio_win, "virtio-win ISO",
              "pass the virtio-win driver ISO (Fedora's virtio-win.iso) with --virtio-win")
    for existing in (paths.image, paths.manifest):
        if existing.exists() and not (req.force or replace_stale):
            raise InputFileError(f"{existing}: a golden image exists already: pass --force to replace it "
                                 f"(or --out another directory)")
    find_ovmf()  # InfraError naming Debian's ovmf package


def _password() -> str:
    # Satisfies the default complexity policy (upper, lower, digit, symbol) of Server 2022.
    alphabet = string.ascii_letters + string.digits
    return "Hx9-" + "".join(secrets.choice(alphabet) for _ in range(20))


def _write_secret(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


# ------------------------------------------------------------------ the recipe

def build_windows_image(req: ImageRequest, progress: Progress = print,
                        installer: InstallerFactory = windows_installer) -> GoldenImage:
    from .media import AnswerPlan, answer_files, build_answer_iso, render_autounattend

    paths = BuildPaths.for_request(req)
    package: DriverPackage | None = None
    stale = False
    if req.driver is not None:  # a vendor's driver instead of the sample: checked before anything runs
        package = vendor_package(req.driver, req.profile or "(no name)")
        stamp = package_stamp(package)
        current = None if req.force else up_to_date(req, paths, stamp)
        if current is not None:
            progress(f"image: {paths.image} is up to date: built with this {package.service} "
                     f"(driver key {str(stamp['key'])[:16]}); --force builds it again")
            return current
        old = manifest_driver(paths.manifest)
        stale = old is not None and old.get("kind") == "vendor" and paths.image.exists()
        if stale:
            progress(f"image: {paths.image} is stale (driver key {str(old.get('key', ''))[:16]} was built, "
                     f"the profile's {package.service} is {str(stamp['key'])[:16]}): building it again")
    check_request(req, paths, replace_stale=stale)
    if package is None:
        sys_file, inf_file, cert = sensor_files(req.sensor, progress)
        driver = sample_package(sys_file, inf_file, cert)
    else:
        driver = package
    req.out.mkdir(parents=True, exist_ok=True)
    paths.artifacts.mkdir(parents=True, exist_ok=True)

    # secrets: only in the output directory, mode 0600
    password = _password()
    _write_secret(paths.password, (password + "\n").encode())
    import paramiko

    key = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    if key is None:
        from ..vm.ssh import new_client_key
        key = new_client_key()
    paths.ssh_key.unlink(missing_ok=True)
    key.write_private_key_file(str(paths.ssh_key))
    os.chmod(paths.ssh_key, 0o600)
    public = f"{key.get_name()} {key.get_base64()} harness-image-{req.stem}"
    paths.ssh_key.with_name(paths.ssh_key.name + ".pub").write_text(public + "\n")

    plan = AnswerPlan(edition=req.edition, image_index=req.image_index, sensor_build=req.sensor,
                      admin_password=password, product_key=req.product_key)
    xml = render_autounattend(plan)
    build_answer_iso(paths.answer_iso, xml, answer_files(plan, None, None, None, public, package=driver))
    progress(f"image: answer medium {paths.answer_iso}")

    # a blank disk, renamed to the golden name only once stamped
    for stale in (paths.building,):
        stale.unlink(missing_ok=True)
    proc = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(paths.building), f"{req.disk_gib}G"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise InfraError(f"{paths.building}: qemu-img create failed: {proc.stderr.strip()}")
    progress(f"image: blank disk {paths.building} ({req.disk_gib} GiB)")

    domain = installer(req, paths, paths.answer_iso)
    (paths.artifacts / "domain.xml").write_text(domain.xml)
    markers, elapsed = run_installer(domain, req, paths, progress)
    return stamp_golden(req, paths, markers, elapsed, progress, driver=package_stamp(driver))
