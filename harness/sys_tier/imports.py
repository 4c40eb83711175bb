"""Direct dispatch of the driver's imports to the hooked kernel routines.

speakeasy reaches an API hook through an invalid-fetch fault on a reserved address, then its
own argument, logging and profiling machinery: about a millisecond a call, most of a check's
time for a driver that allocates once per criterion.  Here each import-table slot of a routine
we model points at its own 16-byte stub (`ret`) on a page of ours, and one unicorn code hook
on that page runs the Python routine before the `ret` executes.  Imports we do not model keep
speakeasy's own slots (its native routines, or its "unsupported API" error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .kernel import Kernel

STUB_BASE = 0x00000B0000000000  # a low alias, as the reservations (memory.py)
STUB_SIZE = 16
RET = b"\xc3"


def bind_imports(kernel: Kernel, sys_path: Path) -> list[str]:
    """Point the image's import slots of every hooked routine at a stub; returns their names."""
    import pefile
    from unicorn import UC_HOOK_CODE

    pe = pefile.PE(str(sys_path), fast_load=True)
    pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]])
    slots: list[tuple[int, str, int, Any]] = []
    for entry in getattr(pe, "DIRECTORY_ENTRY_IMPORT", []):
        module = entry.dll.decode(errors="replace").lower().rsplit(".", 1)[0]
        for imp in entry.imports:
            name = imp.name.decode(errors="replace") if imp.name else ""
            handler = kernel.handlers.get((module, name))
            if handler is not None:
                slot = imp.address - pe.OPTIONAL_HEADER.ImageBase + kernel.base
                slots.append((slot, name, *handler))
    if not slots:
        return []
    size = (len(slots) * STUB_SIZE + 0xFFF) & ~0xFFF
    kernel.emu.mem_map(size, base=STUB_BASE, tag="harness.import_stubs")
    kernel.write(STUB_BASE, (RET + b"\xcc" * (STUB_SIZE - 1)) * len(slots))
    table = []
    for i, (slot, name, argc, fn) in enumerate(slots):
        kernel.put_u64(slot, STUB_BASE + i * STUB_SIZE)
        table.append((name, argc, fn))

    def on_stub(uc: Any, address: int, _size: int, _data: Any) -> None:
        index, offset = divmod(address - STUB_BASE, STUB_SIZE)
        if offset:
            return
        name, argc, fn = table[index]
        result = kernel.dispatch(name, argc, fn)
        if result is not None:
            uc.reg_write(_RAX, result & 0xFFFFFFFFFFFFFFFF)

    uc = kernel.emu.emu_eng.emu
    kernel.import_hook = uc.hook_add(UC_HOOK_CODE, on_stub, begin=STUB_BASE, end=STUB_BASE + size - 1)
    return [name for name, _a, _f in table]


def _rax() -> int:
    from unicorn.x86_const import UC_X86_REG_RAX

    return int(UC_X86_REG_RAX)


_RAX = _rax()
