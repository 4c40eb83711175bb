"""The I/O manager and object manager calls whose timing the runner controls.

Reinitialization routines are queued here, not run by speakeasy, so the runner decides when
the boot phase ends (boot devices started, then the boot reinitialization queue) and can
unload the driver while a routine is still queued.  The driver object's reference count is
kept so that the runner knows whether the image is still mapped after an unload: an image is
unloaded when its driver object's last reference goes (IoDeleteDriver), and a queued routine
that runs after that executes code that is gone.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .kernel import Kernel

STATUS_SUCCESS = 0
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_TOO_LATE = 0xC0000189
BOOTDISK_INFORMATION_SIZE = 24


@dataclass
class Reinit:
    routine: int
    context: int
    boot: bool  # IoRegisterBootDriverReinitialization (True) or IoRegisterDriverReinitialization
    count: int = 0


@dataclass
class IoManagerModel:
    kernel: Kernel
    booted: bool = False  # the boot has finished: IoGetBootDiskInformation says STATUS_TOO_LATE
    queue: list[Reinit] = field(default_factory=list)
    extra_references: int = 0  # references the driver took on its own driver object
    deferred_delete: bool = False
    calls: list[str] = field(default_factory=list)

    def install(self) -> None:
        k = self.kernel
        k.hook("ntoskrnl", "IoRegisterBootDriverReinitialization", 3, lambda a: self._register(a, True))
        k.hook("ntoskrnl", "IoRegisterDriverReinitialization", 3, lambda a: self._register(a, False))
        k.hook("ntoskrnl", "IoGetBootDiskInformation", 2, self._boot_disk_information)
        k.hook("ntoskrnl", "ObfReferenceObject", 1, self._reference)
        k.hook("ntoskrnl", "ObfDereferenceObject", 1, self._dereference)
        k.hook("ntoskrnl", "ObDereferenceObjectDeferDelete", 1, self._dereference_defer)

    def _register(self, a: list[int], boot: bool) -> None:
        self.calls.append("IoRegisterBootDriverReinitialization" if boot else "IoRegisterDriverReinitialization")
        if a[0] == self.kernel.driver_object and self.kernel.in_image(a[1]):
            self.queue.append(Reinit(a[1], a[2], boot))

    def _boot_disk_information(self, a: list[int]) -> int:
        self.calls.append("IoGetBootDiskInformation")
        if self.booted:
            return STATUS_TOO_LATE
        if a[1] < BOOTDISK_INFORMATION_SIZE:
            return STATUS_INVALID_PARAMETER
        # BootPartitionOffset, SystemPartitionOffset, then the two disk signatures
        self.kernel.write(a[0], struct.pack("<qqII", 0x100000, 0x100000, 0x48415253, 0x48415253))
        return STATUS_SUCCESS

    def _reference(self, a: list[int]) -> int:
        if a[0] == self.kernel.driver_object:
            self.extra_references += 1
        return a[0]

    def _dereference(self, a: list[int]) -> int:
        if a[0] == self.kernel.driver_object:
            self.extra_references -= 1
        return 0

    def _dereference_defer(self, a: list[int]) -> int:
        if a[0] == self.kernel.driver_object:
            self.extra_references -= 1
            self.deferred_delete = True
        return 0

    def take(self, boot: bool) -> list[Reinit]:
        """Remove and return the queued routines of one queue, in registration order."""
        mine = [r for r in self.queue if r.boot == boot]
        self.queue = [r for r in self.queue if r.boot != boot]
        return mine
