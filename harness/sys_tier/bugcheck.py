"""Bugchecks: what Windows would stop with for a fault the driver made under emulation.

Codes and parameters as the Windows debugger documentation gives them
(debugger/bug-check-0x50--page-fault-in-nonpaged-area and siblings on Microsoft Learn).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PAGE_FAULT_IN_NONPAGED_AREA = 0x50
KMODE_EXCEPTION_NOT_HANDLED = 0x1E
DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS = 0xCE
SYSTEM_PTE_MISUSE = 0xDA
INVALID_KERNEL_HANDLE = 0x93
BAD_POOL_CALLER = 0xC2

NAMES = {
    PAGE_FAULT_IN_NONPAGED_AREA: "PAGE_FAULT_IN_NONPAGED_AREA",
    KMODE_EXCEPTION_NOT_HANDLED: "KMODE_EXCEPTION_NOT_HANDLED",
    DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS:
        "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS",
    SYSTEM_PTE_MISUSE: "SYSTEM_PTE_MISUSE",
    INVALID_KERNEL_HANDLE: "INVALID_KERNEL_HANDLE",
    BAD_POOL_CALLER: "BAD_POOL_CALLER",
}

# Parameter 2 of 0x50 on x64 since Windows 10 1507: 0 read, 2 write, 0x10 execute.
_ACCESS = {"read": 0x0, "write": 0x2, "fetch": 0x10}
# Parameter 4 of 0x50: NONPAGED_BUGCHECK_NOT_PRESENT_PAGE_TABLE, the address has no valid PTE
# (a reserved, never-mapped page; Channel File 291's dumps show the same value).
NOT_PRESENT = 0x2
STATUS_ILLEGAL_INSTRUCTION = 0xC000001D
STATUS_INTEGER_DIVIDE_BY_ZERO = 0xC0000094


class EmulatorLimit(Exception):
    """The run stopped on something the emulator cannot do, not on anything the driver did."""


@dataclass
class Bugcheck:
    """One stop of the emulated machine."""

    code: int
    parameters: tuple[int, int, int, int]
    reason: str
    ip: int | None = None
    address: int | None = None
    access: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return NAMES.get(self.code, f"BUGCHECK_{self.code:#x}")

    def to_json(self) -> dict[str, Any]:
        return {"code": f"{self.code:#x}", "name": self.name,
                "parameters": [f"{p:#018x}" for p in self.parameters]}


def page_fault(address: int, access: str, ip: int) -> Bugcheck:
    """0x50: the driver touched memory that is not mapped."""
    kind = _ACCESS.get(access, 0)
    return Bugcheck(PAGE_FAULT_IN_NONPAGED_AREA, (address, kind, ip, NOT_PRESENT),
                    f"invalid {access} of {address:#x}", ip=ip, address=address, access=access)


def from_emulator_error(error: Any, pc: int) -> Bugcheck:
    """Map speakeasy's record of a failed run (invalid_read/_write/_fetch, ...) to a bugcheck."""
    kind = str(getattr(error, "type", "") or "")
    address = getattr(error, "address", None)
    ip = getattr(error, "pc", None) or pc
    if kind.startswith("invalid_") or kind.startswith("invalid_protect_"):
        access = "write" if "write" in kind else "fetch" if "fetch" in kind else "read"
        return page_fault(int(address if address is not None else 0), access, int(ip))
    if kind == "unhandled_interrupt" or "UC_ERR_INSN_INVALID" in kind or "UC_ERR_EXCEPTION" in kind:
        # A CPU exception (invalid opcode, division by zero, int3) reaches no handler in a driver
        # without __try: KMODE_EXCEPTION_NOT_HANDLED with the exception code and address.
        code = STATUS_INTEGER_DIVIDE_BY_ZERO if kind == "unhandled_interrupt" else STATUS_ILLEGAL_INSTRUCTION
        return Bugcheck(KMODE_EXCEPTION_NOT_HANDLED, (code, int(ip), 0, 0),
                        f"unhandled exception in the driver: {kind}", ip=int(ip))
    api = getattr(error, "api_name", None)
    raise EmulatorLimit(f"the emulator has no model of {api}" if api else f"the emulator failed: {kind}")
