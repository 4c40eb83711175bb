"""Guest images for the VM harness.

The Linux reference guest is Debian's own kernel booted directly (PVH entry of
the uncompressed vmlinux) with a busybox initramfs that loads the sample sensor
(drivers/linux) from a per-test ext4 data disk:

    guest = build_reference_guest()                 # cached, shared, read-only
    build_data_disk(disk, {"C-00000291-00000000-00000032.sys": data})
    qemu ... -kernel guest.kernel -initrd guest.initrd -append guest.cmdline("vulnerable")
    read_content_dir(disk)                          # what is left on the disk afterwards

Recovery (the Channel File 291 fix: safe mode or the recovery environment, then delete
the bad file), with a recovery medium as the second disk:

    build_recovery_medium(medium, SAMPLE_SCRIPT, [bad_file_entry(name, data)])
    qemu ... -initrd guest.recovery_initrd -append guest.recovery_cmdline()   # powers off
    qemu ... -initrd guest.initrd -append guest.cmdline(mode="safe")         # or safe mode

See vm-templates/linux/README.md for the guest's boot sequence and console markers.
"""

from __future__ import annotations

from harness.errors import DataDiskError, InfraError, RecoveryMediumError


class GuestBuildError(InfraError):
    """The reference guest cannot be built: a package, a file or a tool is missing or failed.

    The message names what is missing and the fix.
    """




# Imported after the error classes: the submodules import them from here.
from harness.guest.datadisk import CONTENT_DIR, build_data_disk, read_content_dir  # noqa: E402
from harness.guest.linux_ref import (  # noqa: E402
    BUILDER_VERSION,
    RECOVERY_TIMEOUT,
    ReferenceGuest,
    build_reference_guest,
    cached_reference_guest,
)
from harness.guest.recovery import (  # noqa: E402
    SAMPLE_SCRIPT,
    bad_file_entry,
    build_recovery_medium,
)

__all__ = [
    "BUILDER_VERSION",
    "CONTENT_DIR",
    "DataDiskError",
    "GuestBuildError",
    "RECOVERY_TIMEOUT",
    "RecoveryMediumError",
    "ReferenceGuest",
    "SAMPLE_SCRIPT",
    "bad_file_entry",
    "build_data_disk",
    "build_recovery_medium",
    "build_reference_guest",
    "cached_reference_guest",
    "read_content_dir",
]
