"""Windows bug check (STOP) codes: symbolic names and what their four parameters mean.

Every entry was read from Microsoft's Bug Check Code Reference, the pages
`windows-driver-docs-pr/debugger/bug-check-0x<code>--<name>.md` of
MicrosoftDocs/windows-driver-docs (published at
https://learn.microsoft.com/windows-hardware/drivers/debugger/bug-check-code-reference2).
The page of each code is in `BugCheck.source`.

Two things the parser derives from the table, and where the docs say so:

* `address_param`: the parameter that *is* the memory address the faulting code
  referenced ("Memory address referenced" for 0x50 and 0xD6, "Memory
  referenced" for 0xD1, "The virtual memory address that could not be
  accessed" for 0xA).  `CrashReport.address` is that parameter.  0x1E is the
  one conditional case: its page says parameter 4 is the address the driver
  attempted to access when the exception (parameter 1) is 0xC0000005
  STATUS_ACCESS_VIOLATION; otherwise 0x1E has no address.
* `ip_param`: the parameter that is the address of the faulting instruction
  ("Address that referenced memory (if known)", "The address where the
  exception occurred", "The instruction pointer at the time of the fault").
  `CrashReport.ip` is that parameter when it is not 0.

The `_M` codes: bug check 0x1000007E "has the same meaning and parameters as
bug check 0x7E" and 0x1000008E the same as 0x8E (their reference pages).  The
0x10000000 bit is applied to every code of the table the same way:
`normalize_code(0x1000007E) == 0x7E`, so a crash has one title whichever of the
two codes Windows chose.  That generalisation beyond 0x7E and 0x8E is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

REFERENCE = "https://learn.microsoft.com/windows-hardware/drivers/debugger/bug-check-code-reference2"
_DOCS = "MicrosoftDocs/windows-driver-docs:windows-driver-docs-pr/debugger/"
# The bit that turns a code into its "_M" twin (0x7E -> 0x1000007E).
M_VARIANT_BIT = 0x10000000


@dataclass(frozen=True)
class BugCheck:
    code: int
    name: str
    parameters: tuple[str, str, str, str]  # what parameters 1..4 mean, as the docs say
    source: str
    address_param: int | None = None  # 1-based: the parameter that is the referenced address
    ip_param: int | None = None  # 1-based: the parameter that is the faulting instruction's address

    @property
    def hex(self) -> str:
        return f"0x{self.code:X}"


_DEPENDS = "depends on parameter 1 (see the table on the reference page)"

_TABLE: tuple[BugCheck, ...] = (
    BugCheck(0x0A, "IRQL_NOT_LESS_OR_EQUAL", (
        "the virtual memory address that could not be accessed",
        "the IRQL at the time of the fault (2 = DISPATCH_LEVEL)",
        "the operation: bit 0 is 0 for a read, 1 for a write; bit 3 is 1 for an execute "
        "(0x0 read, 0x1 write, 0x8 execute)",
        "the instruction pointer at the time of the fault"),
        _DOCS + "bug-check-0xa--irql-not-less-or-equal.md", address_param=1, ip_param=4),
    BugCheck(0x1E, "KMODE_EXCEPTION_NOT_HANDLED", (
        "the exception code that was not handled",
        "the address at which the exception occurred",
        "parameter 0 of the exception",
        "parameter 1 of the exception (for 0xC0000005 STATUS_ACCESS_VIOLATION: the address "
        "the driver attempted to access)"),
        _DOCS + "bug-check-0x1e--kmode-exception-not-handled.md", ip_param=2),
    BugCheck(0x3B, "SYSTEM_SERVICE_EXCEPTION", (
        "the exception that caused the bug check",
        "the address of the instruction that caused the bug check",
        "the address of the context record for the exception",
        "0"),
        _DOCS + "bug-check-0x3b--system-service-exception.md", ip_param=2),
    BugCheck(0x50, "PAGE_FAULT_IN_NONPAGED_AREA", (
        "the memory address referenced",
        "0: read, 1: write, 2 or 8: execute",
        "the address that referenced memory (if known)",
        "the type of page fault (0x03 NONPAGED_BUGCHECK_WRONG_SESSION, "
        "0x04 NONPAGED_BUGCHECK_VA_NOT_CANONICAL)"),
        _DOCS + "bug-check-0x50--page-fault-in-nonpaged-area.md", address_param=1, ip_param=3),
    BugCheck(0x7B, "INACCESSIBLE_BOOT_DEVICE", (
        "the address of a UNICODE_STRING (the ARC name of the boot device) or of the device "
        "object that could not be mounted",
        "0", "0", "0"),
        _DOCS + "bug-check-0x7b--inaccessible-boot-device.md"),
    BugCheck(0x7E, "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED", (
        "the exception code that was not handled",
        "the address where the exception occurred",
        "the address of the exception record",
        "the address of the context record"),
        _DOCS + "bug-check-0x7e--system-thread-exception-not-handled.md", ip_param=2),
    BugCheck(0x8E, "KERNEL_MODE_EXCEPTION_NOT_HANDLED", (
        "the exception code that was not handled",
        "the address where the exception occurred",
        "the trap frame",
        "reserved"),
        _DOCS + "bug-check-0x8e--kernel-mode-exception-not-handled.md", ip_param=2),
    BugCheck(0xC2, "BAD_POOL_CALLER", (
        "the type of violation (e.g. 0x07: the thread freed pool that was already freed)",
        _DEPENDS, _DEPENDS, _DEPENDS),
        _DOCS + "bug-check-0xc2--bad-pool-caller.md"),
    BugCheck(0xC4, "DRIVER_VERIFIER_DETECTED_VIOLATION", (
        "the type of violation Driver Verifier found",
        _DEPENDS, _DEPENDS, _DEPENDS),
        _DOCS + "bug-check-0xc4--driver-verifier-detected-violation.md"),
    BugCheck(0xD1, "DRIVER_IRQL_NOT_LESS_OR_EQUAL", (
        "the memory referenced",
        "the IRQL at the time of the reference",
        "0: read, 1: write, 2 or 8: execute",
        "the address that referenced memory"),
        _DOCS + "bug-check-0xd1--driver-irql-not-less-or-equal.md", address_param=1, ip_param=4),
    BugCheck(0xD6, "DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION", (
        "the memory address referenced",
        "0: read, 1: write",
        "the address that referenced memory (if known)",
        "reserved"),
        _DOCS + "bug-check-0xd6--driver-page-fault-beyond-end-of-allocation.md", address_param=1,
        ip_param=3),
    BugCheck(0xE2, "MANUALLY_INITIATED_CRASH", (
        "none (the reference lists no parameters)", "none", "none", "none"),
        _DOCS + "bug-check-0xe2--manually-initiated-crash.md"),
    BugCheck(0xEF, "CRITICAL_PROCESS_DIED", (
        "the process object",
        "0: a process died, 1: a thread died",
        "reserved",
        "reserved"),
        _DOCS + "bug-check-0xef--critical-process-died.md"),
    BugCheck(0xF7, "DRIVER_OVERRAN_STACK_BUFFER", (
        "the actual security check cookie from the stack",
        "the expected security check cookie",
        "the bit-complement of the expected security check cookie",
        "0"),
        _DOCS + "bug-check-0xf7--driver-overran-stack-buffer.md"),
    BugCheck(0x139, "KERNEL_SECURITY_CHECK_FAILURE", (
        "the type of corruption (0/2: stack buffer overrun, 3: LIST_ENTRY corrupted, "
        "8: array bounds check, ...)",
        "the address of the trap frame for the exception",
        "the address of the exception record for the exception",
        "reserved"),
        _DOCS + "bug-check-0x139--kernel-security-check-failure.md"),
)

BUGCHECKS: dict[int, BugCheck] = {entry.code: entry for entry in _TABLE}
_BY_NAME: dict[str, BugCheck] = {entry.name: entry for entry in _TABLE}

STATUS_ACCESS_VIOLATION = 0xC0000005


def normalize_code(code: int) -> int:
    """The base code of an `_M` variant whose base is in the table (0x1000007E -> 0x7E);
    every other code unchanged."""
    if code & M_VARIANT_BIT and (code & ~M_VARIANT_BIT) in BUGCHECKS:
        return code & ~M_VARIANT_BIT
    return code


def lookup(code: int) -> BugCheck | None:
    """The table entry for a code (after `normalize_code`), or None for a code we do not know."""
    return BUGCHECKS.get(normalize_code(code))


def by_name(name: str) -> BugCheck | None:
    """The table entry for a symbolic name; spaces count as underscores (Windows 10's stop
    screen shows "PAGE FAULT IN NONPAGED AREA" on some builds)."""
    return _BY_NAME.get(name.strip().upper().replace(" ", "_"))


def address_parameter(code: int, params: list[int]) -> int | None:
    """The referenced memory address among the four parameters, where the docs name one."""
    entry = lookup(code)
    if entry is None or len(params) < 4:
        return None
    if entry.code == 0x1E:
        return params[3] if params[0] == STATUS_ACCESS_VIOLATION else None
    return params[entry.address_param - 1] if entry.address_param else None


def ip_parameter(code: int, params: list[int]) -> int | None:
    """The faulting instruction's address among the parameters, where the docs name one
    and it is not 0 ("if known")."""
    entry = lookup(code)
    if entry is None or entry.ip_param is None or len(params) < 4:
        return None
    return params[entry.ip_param - 1] or None
