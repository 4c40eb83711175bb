"""The Linux reference guest as a pluggable family (harness.vm.registry: "linux")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import filelock

from ..config import Profile
from ..vm.backend import GuestBackend, Progress
from .linux_backend import LinuxBackend
from .linux_ref import ReferenceGuest, build_reference_guest, default_cache_dir
from .snapshot_point import SNAPSHOT_POINT
from .vendor_module import check_vendor_module

BUILD_LOCK_TIMEOUT_S = 600  # another process (an xdist worker) building the guest


class LinuxReferenceFamily:
    name = "linux"
    snapshot_point = SNAPSHOT_POINT  # the fast path's wait point (snapshot_point.py)

    def prepare(self, profile: Profile, sensor: str | None, progress: Progress) -> tuple[ReferenceGuest, str]:
        """The reference guest, built once per set of inputs (cached); xdist workers wait for the
        first one's build and then find it cached. Either sensor build boots it."""
        lock = default_cache_dir().parent / ".guest-build.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(str(lock), timeout=BUILD_LOCK_TIMEOUT_S):
            guest = build_reference_guest(progress=progress)
        if profile.driver is not None:  # a vendor's module loads only on the kernel it was built for
            check_vendor_module(Path(profile.driver.module), guest.kernel_version,
                                f"profile {profile.name}: driver.module")
            return guest, profile.driver.module_name
        return guest, sensor or profile.sensor

    def backend(self, guest: Any, profile: Profile) -> GuestBackend:
        return LinuxBackend(guest, profile.driver)

    def shared_files(self, guest: Any) -> list[Path]:
        return [guest.kernel, guest.initrd, guest.recovery_initrd]


FAMILY = LinuxReferenceFamily()
