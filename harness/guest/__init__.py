"""Guest images for the VM harness.

The Linux reference guest is Debian's own kernel booted directly (PVH entry of
the uncompressed vmlinux) with a busybox initramfs that loads the sample sensor
(drivers/linux) from a per-test ext4 data disk:

    guest = build_reference_guest()                 # cached, shared, read-only
    build_data_disk(disk, {"C-00000291-00000000-00000032.sys": data})
    qemu ... -kernel guest.kernel -initrd guest.initrd -append guest.cmdline("vulnerable")
    read_content_dir(disk)                          # what is left on the disk afterwards

See vm-templates/linux/README.md for the guest's boot sequence and console markers.
"""

from __future__ import annotations

from harness.errors import HarnessError, InfraError


class GuestBuildError(InfraError):
    """The reference guest cannot be built: a package, a file or a tool is missing or failed.

    The message names what is missing and the fix.
    """


class DataDiskError(HarnessError):
    """A per-test data disk cannot be made or read back; the message names the image."""


# Imported after the error classes: the submodules import them from here.
from harness.guest.datadisk import CONTENT_DIR, build_data_disk, read_content_dir  # noqa: E402
from harness.guest.linux_ref import (  # noqa: E402
    BUILDER_VERSION,
    ReferenceGuest,
    build_reference_guest,
    cached_reference_guest,
)

__all__ = [
    "BUILDER_VERSION",
    "CONTENT_DIR",
    "DataDiskError",
    "GuestBuildError",
    "ReferenceGuest",
    "build_data_disk",
    "build_reference_guest",
    "cached_reference_guest",
    "read_content_dir",
]
