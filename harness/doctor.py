"""`harness doctor`: is this host able to run the VM tests? Each problem comes with its fix."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import Profile
from .errors import HarnessError
from .paths import DRIVERS_BUILD


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks(profile: Profile) -> list[Check]:
    checks: list[Check] = []
    qemu = shutil.which("qemu-system-x86_64")
    checks.append(Check("qemu", qemu is not None, qemu or "qemu-system-x86_64 not found",
                        "make setup (apt-get install qemu-system-x86 qemu-utils)"))
    for uri in profile.hosts:
        checks.append(_host_check(uri))
    from .vm.accel import choose_domain_type

    domain_type, why = choose_domain_type(profile.accel)
    checks.append(Check("accelerator", True, f"domain type {domain_type}: {why}"))
    if profile.family == "windows":
        checks.extend(_windows_checks(profile))
        return checks
    for build in ("vulnerable", "hardened"):
        ko = DRIVERS_BUILD / "linux" / build / "harness_sensor.ko"
        checks.append(Check(f"sensor module ({build})", ko.exists(), str(ko) if ko.exists() else "not built",
                            'make -C "$(python3 -m harness.paths)" linux'))
    try:
        from .guest.linux_ref import cached_reference_guest

        guest = cached_reference_guest()
        checks.append(Check("reference guest", guest is not None,
                            f"{guest.initrd}" if guest else "not built (or inputs changed)",
                            "harness guest build (make guest)"))
    except HarnessError as exc:
        checks.append(Check("reference guest", False, str(exc), "make setup; harness guest build"))
        guest = None
    if guest is not None:
        checks.extend(_shared_path_checks(profile, [guest.kernel, guest.initrd, guest.recovery_initrd]))
    if guest is not None and profile.driver is not None:
        checks.append(_vendor_module_check(profile, guest.kernel_version))
    return checks


def _vendor_module_check(profile: Profile, kernel_version: str) -> Check:
    """A vendor's module must be built for the reference guest's kernel (its vermagic)."""
    from .guest.vendor_module import build_hint, check_vendor_module

    assert profile.driver is not None
    module = Path(profile.driver.module)
    try:
        check_vendor_module(module, kernel_version, f"profile {profile.name}: driver.module")
    except HarnessError as exc:
        return Check("driver module", False, str(exc), build_hint(kernel_version))
    return Check("driver module", True, f"{module} is built for {kernel_version}, the reference guest's kernel "
                                        f"({build_hint(kernel_version)})")


def _host_check(uri: str) -> Check:
    try:
        from .vm.connection import open_connection

        conn = open_connection(uri)
        version = conn.getLibVersion()
        conn.close()
        return Check(f"libvirt {uri}", True, f"answers (libvirt {version})")
    except HarnessError as exc:
        return Check(f"libvirt {uri}", False, str(exc), "tools/libvirtd.sh start (make setup installs it)")
    except ImportError:
        return Check(f"libvirt {uri}", False, "libvirt-python is not installed", "make setup")


def _shared_path_checks(profile: Profile, files: list[Path]) -> list[Check]:
    """A remote host must see the guest's files and the artifacts root at the same paths."""
    from .artifacts import default_root
    from .vm.hosts import HostUri, check_shared_paths

    checks = []
    for uri in profile.hosts:
        if not HostUri.parse(uri).remote:
            continue
        try:
            check_shared_paths(uri, files, [Path(default_root())])
            checks.append(Check(f"shared paths {uri}", True, "guest files and artifacts root seen at the same paths"))
        except HarnessError as exc:
            checks.append(Check(f"shared paths {uri}", False, str(exc), "mount them there at the same paths"))
    return checks


def _windows_checks(profile: Profile) -> list[Check]:
    from .windows.domain import EDITIONS, check_host
    from .windows.golden import load_golden, verify_golden

    checks = []
    spec = EDITIONS[profile.edition]
    try:
        check_host(tpm=spec.tpm, secure_boot_capable=spec.secure_boot_capable)
        checks.append(Check("firmware", True, ("OVMF (Secure Boot capable)" if spec.secure_boot_capable else "OVMF")
                            + (" and swtpm" if spec.tpm else "")))
    except HarnessError as exc:
        checks.append(Check("firmware", False, str(exc), "make setup"))
    try:
        golden = load_golden(Path(profile.image), profile.edition)
        verify_golden(golden)
        checks.append(Check("golden image", True, f"{golden.image} ({golden.edition}, {golden.sensor} sensor, "
                                                  "sha256 matches its manifest)"))
        checks.extend(_shared_path_checks(profile, [golden.image]))
    except HarnessError as exc:
        checks.append(Check("golden image", False, str(exc), "harness image build windows (docs/running-on-windows.md)"))
    if profile.driver is not None:
        checks.append(_windows_driver_check(profile))
    for tool in ("guestfish", "wimupdate", "xorriso", "hivexsh"):
        path = shutil.which(tool)
        checks.append(Check(tool, path is not None, path or f"{tool} not found",
                            "make setup (libguestfs-tools, wimtools, xorriso, libhivex-bin)"))
    return checks


def _windows_driver_check(profile: Profile) -> Check:
    """A vendor's Windows driver package (INF, .sys, catalog, certificate) passes the checks the
    image recipe makes, and the golden image was built with exactly those files."""
    from .windows.family import check_image_driver
    from .windows.golden import load_golden
    from .windows.package import package_stamp, vendor_package

    assert profile.driver is not None
    try:
        package = vendor_package(profile.driver, profile.name)
        check_image_driver(load_golden(Path(profile.image), profile.edition), package_stamp(package), profile.name)
    except HarnessError as exc:
        return Check("vendor driver", False, str(exc), "fix the profile's driver: block or rebuild the image "
                     "(docs/windows-vendor-driver.md)")
    return Check("vendor driver", True, f"{profile.driver.service}: {profile.driver.inf} installed in the image")
