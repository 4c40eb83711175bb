"""Executive and run-time library routines the driver calls: ERESOURCE locks, critical regions,
RtlInitUnicodeString.  One thread runs at a time here, so a lock is never contended; what is
checked is that the driver uses them in balance (every acquire released, the critical region
left, no resource deleted while held), which unload then reports as leaks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .kernel import Kernel

STATUS_SUCCESS = 0
MAX_USTRING_CHARS = 0x7FFE // 2


@dataclass
class ExecutiveModel:
    kernel: Kernel
    resources: dict[int, int] = field(default_factory=dict)  # ERESOURCE -> times held
    critical_region: int = 0
    misuse: list[str] = field(default_factory=list)

    def install(self) -> None:
        k = self.kernel
        k.hook("ntoskrnl", "ExInitializeResourceLite", 1, self._init)
        k.hook("ntoskrnl", "ExDeleteResourceLite", 1, self._delete)
        k.hook("ntoskrnl", "ExAcquireResourceSharedLite", 2, self._acquire)
        k.hook("ntoskrnl", "ExAcquireResourceExclusiveLite", 2, self._acquire)
        k.hook("ntoskrnl", "ExReleaseResourceLite", 1, self._release)
        k.hook("ntoskrnl", "KeEnterCriticalRegion", 0, self._enter)
        k.hook("ntoskrnl", "KeLeaveCriticalRegion", 0, self._leave)
        k.hook("ntoskrnl", "RtlInitUnicodeString", 2, self._init_unicode_string)

    def _init(self, a: list[int]) -> int:
        self.kernel.write(a[0], bytes(0x68))  # sizeof(ERESOURCE) on x64
        self.resources[a[0]] = 0
        return STATUS_SUCCESS

    def _delete(self, a: list[int]) -> int:
        held = self.resources.pop(a[0], None)
        if held is None:
            self.misuse.append(f"ExDeleteResourceLite of an unknown resource {a[0]:#x}")
        elif held:
            self.misuse.append(f"resource {a[0]:#x} deleted while held")
        return STATUS_SUCCESS

    def _acquire(self, a: list[int]) -> int:
        if a[0] not in self.resources:
            self.misuse.append(f"acquire of an uninitialised resource {a[0]:#x}")
            return 0
        if not self.critical_region:
            self.misuse.append("resource acquired outside a critical region (APCs enabled)")
        self.resources[a[0]] += 1
        return 1

    def _release(self, a: list[int]) -> None:
        if not self.resources.get(a[0]):
            self.misuse.append(f"release of resource {a[0]:#x} that is not held")
            return
        self.resources[a[0]] -= 1

    def _enter(self, a: list[int]) -> None:
        self.critical_region += 1

    def _leave(self, a: list[int]) -> None:
        if not self.critical_region:
            self.misuse.append("KeLeaveCriticalRegion without KeEnterCriticalRegion")
            return
        self.critical_region -= 1

    def _init_unicode_string(self, a: list[int]) -> None:
        dest, source = a
        length = 0
        if source:
            while length < MAX_USTRING_CHARS and self.kernel.read(source + 2 * length, 2) != b"\0\0":
                length += 1
        self.kernel.write(dest, struct.pack("<HH4xQ", 2 * length, 2 * length + 2 if source else 0, source))

    def leaks(self) -> list[str]:
        out = list(self.misuse)
        out += [f"resource {addr:#x} still held {n} time(s)" for addr, n in self.resources.items() if n]
        if self.critical_region:
            out.append(f"critical region entered {self.critical_region} time(s) more than left")
        return out
