"""The emulated Windows kernel the driver runs in: speakeasy's kernel-mode emulator plus
a few helpers the models share (argument access, structure I/O, pool memory, stopping
the machine with a bugcheck).

speakeasy supplies the PE loader (relocations, imports), the x64 CPU (unicorn) and most
ntoskrnl routines the driver calls; what it lacks (FltMgr, the Mm reservation calls,
ZwQueryDirectoryFile, ...) the other modules of this package hook in through `hook()`.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InfraError
from .bugcheck import Bugcheck, page_fault

try:
    from unicorn import x86_const as X86
except ImportError:  # reported by Kernel() with the fix
    X86 = None

API = Callable[[list[int]], int | None]

# speakeasy logs every API call and every fault at INFO/ERROR: the report says what matters.
for _name in ("speakeasy", "speakeasy.windows", "speakeasy.winenv"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

PAGE = 0x1000
_ARG_REGS = () if X86 is None else (X86.UC_X86_REG_RCX, X86.UC_X86_REG_RDX, X86.UC_X86_REG_R8, X86.UC_X86_REG_R9)
_RSP = 0 if X86 is None else X86.UC_X86_REG_RSP
STATUS_SUCCESS = 0


@dataclass
class CallResult:
    """How one call into the driver ended."""

    returned: bool
    value: int | None
    error: Any  # speakeasy's ErrorInfo of a fault, or None
    pc: int


class StopEmulation(Exception):
    """Raised inside a hook to end the current call (after a bugcheck was recorded)."""


class BadPointer(Exception):
    """The driver handed the kernel a pointer to memory that is not mapped."""

    def __init__(self, address: int, access: str) -> None:
        super().__init__(f"{access} of {address:#x}")
        self.address = address
        self.access = access


class Kernel:
    """One emulated machine with the driver image loaded (DriverEntry not yet run)."""

    def __init__(self, sys_path: Path, *, timeout_s: float, max_instructions: int) -> None:
        try:  # heavy import: only when a machine is made
            from speakeasy import Speakeasy
            from speakeasy.config import get_default_config_dict
        except ImportError:
            raise InfraError("the sys tier needs the Windows kernel emulator speakeasy-emulator-refined: "
                             "run 'make setup' (or pip install -e '.[test]')") from None

        config = get_default_config_dict()
        config["timeout"] = timeout_s
        config["max_instructions"] = max_instructions
        config["analysis"] = {"memory_tracing": False, "strings": False, "coverage": False}
        config["exceptions"] = {"dispatch_handlers": False}  # a fault is a bugcheck, no SEH
        config["max_api_count"] = 1_000_000
        # Windows 10 2004 (build 19041): ExAllocatePool2 exists from here on.
        config["os_ver"] = {"name": "windows", "major": 10, "minor": 0, "build": 19041}
        self.se = Speakeasy(config=config)
        self.module = self.se.load_module(path=str(sys_path))
        self.emu = self.se.emu
        self.base: int = self.module.base
        self.image_size: int = self.module.image_size
        self.bugcheck: Bugcheck | None = None
        self.api_calls: list[str] = []
        self.handlers: dict[tuple[str, str], tuple[int, API]] = {}
        self.import_hook: Any = None
        self.uc = self.emu.emu_eng.emu  # the unicorn machine itself, for the hot paths
        _narrow_code_hook(self.emu)

    # ------------------------------------------------------------------ hooks

    def hook(self, module: str, name: str, argc: int, fn: API) -> None:
        """Route `module!name` to `fn(args)`; its return value goes to RAX (None: void).

        The call reaches `fn` through the image's import table (imports.bind_imports patches it
        to a stub page) and, for a routine found another way, through speakeasy's API hooks."""
        self.handlers[(module.lower(), name)] = (argc, fn)

        def callback(_emu: Any, _api: str, _orig: Any, _argv: list[int]) -> int | None:
            result = self.dispatch(name, argc, fn)
            if result is None and self.bugcheck is not None:
                self.emu.stop()
            return result

        self.se.add_api_hook(callback, module, name, argc=argc)

    def dispatch(self, name: str, argc: int, fn: API) -> int | None:
        """Run one hooked kernel routine; a stop (bugcheck) is recorded and emulation ends."""
        self.api_calls.append(name)
        if self.bugcheck is not None:
            self.emu.stop()
            return 0
        try:
            try:
                return fn(self.args(argc))
            except BadPointer as bad:
                # the kernel routine faults on the driver's pointer: Windows stops the same way
                caller = self.u64(self.emu.reg_read("rsp"))
                self.stop_with(page_fault(bad.address, bad.access, caller))
        except StopEmulation:
            self.emu.stop()
        return None

    def args(self, count: int) -> list[int]:
        """The first `count` arguments of the call being hooked (x64: RCX, RDX, R8, R9, stack)."""
        if not count:
            return []
        values = list(self.uc.reg_read_batch(_ARG_REGS[:min(count, 4)]))
        if count > 4:
            sp = self.uc.reg_read(_RSP)  # the return address is at [rsp], home space above it
            values += struct.unpack(f"<{count - 4}Q", self.read(sp + 0x28, 8 * (count - 4)))
        return values

    def stop_with(self, bugcheck: Bugcheck) -> None:
        """Record a bugcheck raised by the kernel's own code and end the call."""
        if self.bugcheck is None:
            self.bugcheck = bugcheck
        raise StopEmulation()

    # ------------------------------------------------------------------- memory

    def read(self, addr: int, size: int) -> bytes:
        try:
            return bytes(self.emu.mem_read(addr, size))
        except Exception:  # unicorn's UcError: not mapped
            raise BadPointer(addr, "read") from None

    def write(self, addr: int, data: bytes) -> None:
        try:
            self.emu.mem_write(addr, data)
        except Exception:
            raise BadPointer(addr, "write") from None

    def u16(self, addr: int) -> int:
        return int(struct.unpack("<H", self.read(addr, 2))[0])

    def u32(self, addr: int) -> int:
        return int(struct.unpack("<I", self.read(addr, 4))[0])

    def u64(self, addr: int) -> int:
        return int(struct.unpack("<Q", self.read(addr, 8))[0])

    def put_u32(self, addr: int, value: int) -> None:
        self.write(addr, struct.pack("<I", value & 0xFFFFFFFF))

    def put_u64(self, addr: int, value: int) -> None:
        self.write(addr, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))

    def alloc(self, size: int, tag: str) -> int:
        """Zeroed non-paged pool owned by the emulated kernel (not charged to the driver)."""
        addr = int(self.emu.mem_map(max(size, 16), tag=f"harness.{tag}"))
        self.write(addr, bytes(size))
        return addr

    def read_cstring(self, addr: int, limit: int = 4096) -> bytes:
        out = bytearray()
        while len(out) < limit:
            chunk = self.read(addr + len(out), 1)
            if chunk == b"\0":
                break
            out += chunk
        return bytes(out)

    def read_unicode_string(self, addr: int) -> str:
        """A UNICODE_STRING (Length, MaximumLength, Buffer at +8) as text."""
        length = self.u16(addr)
        buf = self.u64(addr + 8)
        if not length:
            return ""
        return self.read(buf, length).decode("utf-16-le", "replace")

    def write_unicode_string(self, addr: int, text: str, tag: str) -> None:
        data = text.encode("utf-16-le")
        buf = self.alloc(len(data) + 2, tag)
        self.write(buf, data)
        self.write(addr, struct.pack("<HHIQ", len(data), len(data) + 2, 0, buf))

    @property
    def driver_object(self) -> int:
        """The DRIVER_OBJECT speakeasy made for the image (0 before DriverEntry is set up)."""
        drivers = getattr(self.emu, "drivers", [])
        return int(drivers[-1].address) if drivers else 0

    def in_image(self, addr: int) -> bool:
        return self.base <= addr < self.base + self.image_size

    # -------------------------------------------------------------------- calls

    def run_driver_entry(self) -> tuple[CallResult, int, int]:
        """Run DriverEntry the way the I/O manager does; returns (result, driver object, registry path)."""
        self.se.run_module(self.module)
        run = self.emu.runs[0] if self.emu.runs else None
        drv = self.emu.drivers[-1]
        return self._result(run), int(drv.address), int(drv.reg_path_ptr)

    def call(self, addr: int, args: list[int]) -> CallResult:
        """Call a driver routine with `args` (x64 calling convention) until it returns or stops."""
        self.emu.run_complete = False
        self.emu.emu_complete = False
        args = list(args)
        if len(args) > 4:
            # speakeasy pushes the fifth argument on right above the return address; the x64
            # convention has the 32-byte home space between them: four zero slots make it.
            args = args[:4] + [0, 0, 0, 0] + args[4:]
        self.se.call(addr, args)
        return self._result(self.emu.runs[-1] if self.emu.runs else None)

    def _result(self, run: Any) -> CallResult:
        pc = int(self.emu.get_pc())
        error = getattr(run, "error", None) if run is not None else None
        value = getattr(run, "ret_val", None) if run is not None else None
        returned = error is None and value is not None and self.bugcheck is None
        return CallResult(returned=returned, value=None if value is None else int(value) & 0xFFFFFFFF,
                          error=error, pc=pc)



def _narrow_code_hook(emu: Any) -> None:
    """Confine speakeasy's transient per-instruction hook to its reserved page.

    speakeasy enables a code hook to finish a run (at its return address) and then only flags
    it disabled: unicorn still calls into Python before every instruction of the driver for the
    rest of the emulation (6 million calls, 4 s, for a 770 KB file).  Made here first, over the
    reserved range that holds the return address, it fires only there.  What it also does
    elsewhere (SEH dispatch, unmapping a fault's stand-in page, data imports) is not used: a
    fault ends the run, exceptions are not dispatched, the driver imports no data.
    """
    from speakeasy.windows import common as wincommon

    emu.tmp_code_hook = emu.add_code_hook(cb=emu._hook_code_core, begin=wincommon.EMU_RESERVED,
                                          end=wincommon.EMU_RESERVED_END)
    emu.tmp_code_hook.disable()
