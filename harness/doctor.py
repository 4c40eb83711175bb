"""`harness doctor`: is this host able to run the VM tests? Each problem comes with its fix."""

from __future__ import annotations

import shutil
from dataclasses import dataclass


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
    try:
        from .vm.connection import open_connection

        conn = open_connection(profile.uri)
        checks.append(Check("libvirt", True, f"{profile.uri} answers (libvirt {conn.getLibVersion()})"))
        conn.close()
    except HarnessError as exc:
        checks.append(Check("libvirt", False, str(exc), "tools/libvirtd.sh start (make setup installs it)"))
    except ImportError:
        checks.append(Check("libvirt", False, "libvirt-python is not installed", "make setup"))
    from .vm.accel import choose_domain_type

    domain_type, why = choose_domain_type(profile.accel)
    checks.append(Check("accelerator", True, f"domain type {domain_type}: {why}"))
    for build in ("vulnerable", "hardened"):
        ko = DRIVERS_BUILD / "linux" / build / "harness_sensor.ko"
        checks.append(Check(f"sensor module ({build})", ko.exists(), str(ko) if ko.exists() else "not built",
                            "make -C drivers linux"))
    try:
        from .guest.linux_ref import cached_reference_guest

        guest = cached_reference_guest()
        checks.append(Check("reference guest", guest is not None,
                            f"{guest.initrd}" if guest else "not built (or inputs changed)",
                            "harness guest build (make guest)"))
    except HarnessError as exc:
        checks.append(Check("reference guest", False, str(exc), "make setup; harness guest build"))
    return checks



