"""The memory manager calls speakeasy lacks: system address reservations, MDL pages, pool v2.

The driver places each content file so that it ends at a page boundary in front of a
reserved, never-mapped page (MmAllocateMappingAddress for pages + 1, MmAllocatePagesForMdlEx
for the pages, MmMapLockedPagesWithReservedMapping), and points its input guard slots at a
reserved page that is never mapped.  Here a reservation is a range of emulated address space
that stays unmapped until pages are mapped into it, so a read past the pages faults exactly as
on Windows.

Unicorn (the CPU under speakeasy) keeps only 52 bits of an address for instruction memory
accesses: a page mapped at a kernel-half address such as 0xFFFFF9... faults when an instruction
reads it.  Reservations therefore live at low alias addresses (from ALIAS_BASE up); the
address in a bugcheck parameter is that alias, not an address Windows would show.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .bugcheck import BAD_POOL_CALLER, SYSTEM_PTE_MISUSE, Bugcheck
from .kernel import PAGE, Kernel

ALIAS_BASE = 0x00000A0000000000
ALIAS_NOTE = ("addresses of reserved system space (content buffers, their guard pages, the poisoned "
              "input page) are low aliases: unicorn cuts kernel-half addresses to 52 bits, so the "
              "emulator maps reservations from 0x00000a0000000000 up; on Windows they are "
              "canonical kernel addresses (0xffff...)")
MDL_SIZE = 0x30
MDL_BYTE_COUNT = 0x28
POOL_FLAG_UNINITIALIZED = 0x2
POOL_FLAG_NON_PAGED = 0x40
POOL_FLAG_PAGED = 0x100
POOL_BASE = 0x00000C0000000000  # the pool arena, a low alias too
POOL_CHUNK = 16 * 1024 * 1024
POOL_HEADER = 16


def _tag(value: int) -> str:
    return struct.pack("<I", value & 0xFFFFFFFF).decode("latin-1")


@dataclass
class Reservation:
    base: int
    size: int
    tag: str
    mapped: int = 0  # bytes of pages mapped at base (0: nothing mapped)
    mdl: int | None = None
    ever_mapped: bool = False


@dataclass
class Mdl:
    addr: int
    pages: bytearray
    mapped_at: int | None = None


@dataclass
class MemoryModel:
    """Reservations, MDL pages and pool allocations of one emulated machine."""

    kernel: Kernel
    reservations: dict[int, Reservation] = field(default_factory=dict)
    mdls: dict[int, Mdl] = field(default_factory=dict)
    pool: dict[int, str] = field(default_factory=dict)
    next_alias: int = ALIAS_BASE
    arena_next: int = 0
    arena_end: int = 0

    def install(self) -> None:
        k = self.kernel
        k.hook("ntoskrnl", "MmAllocateMappingAddress", 2, self._allocate_mapping_address)
        k.hook("ntoskrnl", "MmFreeMappingAddress", 2, self._free_mapping_address)
        k.hook("ntoskrnl", "MmAllocatePagesForMdlEx", 6, self._allocate_pages_for_mdl)
        k.hook("ntoskrnl", "MmFreePagesFromMdl", 1, self._free_pages_from_mdl)
        k.hook("ntoskrnl", "MmMapLockedPagesWithReservedMapping", 4, self._map_reserved)
        k.hook("ntoskrnl", "MmUnmapReservedMapping", 3, self._unmap_reserved)
        k.hook("ntoskrnl", "ExAllocatePool2", 3, self._allocate_pool2)
        k.hook("ntoskrnl", "ExAllocatePoolWithTag", 3, self._allocate_pool_with_tag)
        k.hook("ntoskrnl", "ExFreePoolWithTag", 2, self._free_pool)
        k.hook("ntoskrnl", "ExFreePool", 1, self._free_pool)

    # ------------------------------------------------------------- reservations

    def _allocate_mapping_address(self, a: list[int]) -> int:
        size, tag = a[0], a[1]
        if not size:
            return 0
        pages = (size + PAGE - 1) // PAGE
        base = self.next_alias
        self.next_alias += (pages + 16) * PAGE  # never adjacent: a stray read lands nowhere
        self.reservations[base] = Reservation(base, pages * PAGE, _tag(tag))
        return base

    def _free_mapping_address(self, a: list[int]) -> None:
        base, tag = a[0], _tag(a[1])
        res = self.reservations.get(base)
        if res is None or res.tag != tag or res.mapped:
            self._misuse(0x100, base, a[1], "MmFreeMappingAddress of an address that is not a free "
                         "reservation with this tag")
        del self.reservations[base]

    def _allocate_pages_for_mdl(self, a: list[int]) -> int:
        total = a[3]
        if not total:
            return 0
        pages = (total + PAGE - 1) // PAGE
        addr = self.kernel.alloc(MDL_SIZE + 8 * pages, "mdl")
        self.kernel.write(addr + MDL_BYTE_COUNT, struct.pack("<II", pages * PAGE, 0))
        self.mdls[addr] = Mdl(addr, bytearray(pages * PAGE))
        self.pool[addr] = "mdl"
        return addr

    def _free_pages_from_mdl(self, a: list[int]) -> None:
        mdl = self.mdls.get(a[0])
        if mdl is None or mdl.mapped_at is not None:
            self._misuse(0x101, a[0], 0, "MmFreePagesFromMdl of an MDL that is unknown or still mapped")
        mdl.pages = bytearray()

    def _map_reserved(self, a: list[int]) -> int:
        base, tag, mdl_addr = a[0], _tag(a[1]), a[2]
        res = self.reservations.get(base)
        mdl = self.mdls.get(mdl_addr)
        if res is None or res.tag != tag or mdl is None:
            self._misuse(0x102, base, a[1], "MmMapLockedPagesWithReservedMapping into an address that "
                         "is not a reservation with this tag")
        if res.mapped or len(mdl.pages) > res.size:
            return 0  # Windows returns NULL when the MDL does not fit the free reservation
        self.kernel.emu.mem_map(len(mdl.pages), base=base, tag=f"harness.reserved.{tag}")
        self.kernel.write(base, bytes(mdl.pages))
        res.mapped, res.mdl, res.ever_mapped = len(mdl.pages), mdl_addr, True
        mdl.mapped_at = base
        return base

    def _unmap_reserved(self, a: list[int]) -> None:
        base, tag, mdl_addr = a[0], _tag(a[1]), a[2]
        res = self.reservations.get(base)
        mdl = self.mdls.get(mdl_addr)
        if res is None or res.tag != tag or res.mdl != mdl_addr or mdl is None:
            self._misuse(0x103, base, a[1], "MmUnmapReservedMapping of a mapping that was not made "
                         "with this reservation, tag and MDL")
        mdl.pages[:] = self.kernel.read(base, res.mapped)  # the pages keep what was written
        self.kernel.emu.mem_free(base)
        try:
            self.kernel.emu.mem_unmap(base, res.mapped)
        except Exception:  # speakeasy's mem_free already unmapped the block
            pass
        res.mapped, res.mdl, mdl.mapped_at = 0, None, None

    def _misuse(self, kind: int, addr: int, tag: int, text: str) -> None:
        self.kernel.stop_with(Bugcheck(SYSTEM_PTE_MISUSE, (kind, addr, tag, 0), text))

    # --------------------------------------------------------------------- pool

    def _allocate_pool2(self, a: list[int]) -> int:
        flags, size, tag = a[0], a[1], a[2]
        if bool(flags & POOL_FLAG_NON_PAGED) == bool(flags & POOL_FLAG_PAGED):
            return 0  # exactly one pool type must be named
        return self._pool_alloc(size, tag, zero=not flags & POOL_FLAG_UNINITIALIZED)

    def _allocate_pool_with_tag(self, a: list[int]) -> int:
        return self._pool_alloc(a[1], a[2], zero=False)

    def _pool_alloc(self, size: int, tag: int, *, zero: bool) -> int:
        """A block of the pool arena: 16-byte aligned, a 16-byte header's gap in front of each
        (as POOL_HEADER), never reused.  speakeasy's own pool walks every mapping on each
        allocation and free, which made a file of 60,000 criteria take minutes."""
        if not size or size > 0x7FFFFFFF:
            return 0
        need = POOL_HEADER + ((size + 15) & ~15)
        if self.arena_next + need > self.arena_end:
            chunk = max(POOL_CHUNK, (need + PAGE - 1) & ~(PAGE - 1))
            base = self.arena_end if self.arena_end else POOL_BASE
            self.kernel.emu.mem_map(chunk, base=base, tag="harness.pool")
            self.arena_next, self.arena_end = base, base + chunk
        addr = self.arena_next + POOL_HEADER
        self.arena_next += need
        if not zero:  # fresh pages are zero; make "uninitialised" visibly so
            self.kernel.write(addr, b"\xcd" * size)
        self.pool[addr] = _tag(tag)
        return addr

    def _free_pool(self, a: list[int]) -> None:
        addr = a[0]
        if addr in self.mdls:
            self.pool.pop(addr, None)
            self.mdls.pop(addr, None)
            self.kernel.emu.mem_free(addr)
        elif addr in self.pool:
            del self.pool[addr]
        else:
            # BAD_POOL_CALLER 0x7: a block that is not allocated (freed twice, or never pool)
            self.kernel.stop_with(Bugcheck(BAD_POOL_CALLER, (0x7, 0, 0, addr),
                                           f"free of {addr:#x}, which is not an allocated pool block"))

    # ----------------------------------------------------------------- reports

    def region_of(self, address: int) -> tuple[str, Reservation | None]:
        """Where a faulting address lies, in the words the host tier uses."""
        for res in self.reservations.values():
            if res.base <= address < res.base + res.size:
                if res.ever_mapped and address >= res.base + res.mapped:
                    return "guard page after the content buffer", res
                if not res.ever_mapped:
                    return "poisoned input slot", res
                return "reserved system space", res
        return "unmapped memory", None

    def leaks(self) -> list[str]:
        out = [f"reservation {r.tag} at {r.base:#x} ({r.size} bytes) not freed"
               for r in self.reservations.values()]
        out += [f"MDL at {m.addr:#x} still mapped" for m in self.mdls.values() if m.mapped_at]
        out += [f"pool block {tag} at {addr:#x} not freed" for addr, tag in self.pool.items()]
        return out
