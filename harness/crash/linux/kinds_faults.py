"""Faults the CPU raised in kernel mode: Oopses, paging faults, NULL dereferences, general
protection faults, `kernel BUG at`, divide errors and the other traps (x86 and arm wording).

Kernels 6.10 and later put `Oops: ` in front of the trap's own words
(`Oops: general protection fault, ...`); older ones print the trap first and
`Oops:` on a later line, where it is part of the report, not a start.
"""

from __future__ import annotations

from .kind import Kind, k

_OOPS = r"(?:Oops: )?"

FAULT_KINDS: tuple[Kind, ...] = (
    # `BUG: unable to handle page fault for address: X` (4.17+), `... kernel paging request at X` (older).
    k("page-fault", r"BUG: (?:unable to handle (?:page fault for address|kernel paging request)"
      r"|Unable to handle kernel data access)(?:(?::| at) (?P<addr>\S+))?",
      "BUG: unable to handle page fault in {f}", locate="ip-trace", ends_with_trace=True),
    k("null-deref", r"BUG: (?:unable to handle kernel NULL pointer dereference|[Kk]ernel NULL pointer dereference)"
      r"(?:(?:, address:| at) (?P<addr>\S+))?",
      "BUG: unable to handle kernel NULL pointer dereference in {f}", locate="ip-trace", ends_with_trace=True),
    # The second half of the line is a separate printk and sometimes never comes.
    k("page-fault", r"BUG: (?:unable|Unable) to handle kernel", "BUG: unable to handle kernel",
      locate="none", ends_with_trace=True, corrupted="the fault's first line was cut after its first words"),
    # arm and arm64.
    k("page-fault", r"Unable to handle kernel (?P<what>paging request|NULL pointer dereference|access to user memory)"
      r"(?: at virtual address (?P<addr>\S+))?",
      "BUG: unable to handle kernel {what} in {f}", locate="ip-trace", ends_with_trace=True),
    k("general-protection", _OOPS + r"(?:segment-related )?general protection fault"
      r"(?:, (?:probably|maybe) for (?:non-canonical )?address (?P<addr>0x[0-9a-f]+))?",
      "general protection fault in {f}", locate="ip-trace", ends_with_trace=True),
    k("stack-segment", _OOPS + r"stack segment: ", "stack segment fault in {f}", locate="ip-trace",
      ends_with_trace=True),
    # BUG_ON in helpers whose caller is at fault.
    k("bug", r"kernel BUG at mm/usercopy\.c", "BUG: bad usercopy in {f}", skip=("usercopy", "__check"),
      ends_with_trace=True),
    k("bug", r"kernel BUG at lib/list_debug\.c", "BUG: corrupted list in {f}", ends_with_trace=True),
    k("bug", r"kernel BUG at ", "kernel BUG in {f}", locate="ip-trace", skip=(r"^skb_",), ends_with_trace=True),
    k("bug", r"Kernel BUG (?P<what>.*)", "kernel BUG {what}", locate="none", ends_with_trace=True),
    k("divide-error", _OOPS + r"divide[ _]error: ", "divide error in {f}", locate="ip", ends_with_trace=True),
    k("invalid-opcode", _OOPS + r"invalid opcode: ", "invalid opcode in {f}", locate="ip", ends_with_trace=True),
    k("int3", _OOPS + r"int3: ", "int3 in {f}", locate="ip-trace", ends_with_trace=True),
    k("double-fault", r"PANIC: double fault", "PANIC: double fault in {f}", locate="ip"),
    k("oops", r"Oops: ", "Oops in {f}", locate="ip-trace", ends_with_trace=True),
    k("oops", r"Internal error: ", "Internal error in {f}", locate="ip-trace", ends_with_trace=True),
    k("oops", r"Unhandled fault: ", "Unhandled fault in {f}", locate="ip-trace", ends_with_trace=True),
    k("oops", r"Alignment trap: ", "Alignment trap in {f}", locate="ip-trace", ends_with_trace=True),
)
