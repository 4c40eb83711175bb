"""Console lines: the prefixes a kernel console puts before a message, and the markers
that end a report or a boot.

A line may start with `[   12.345678] ` (printk time), then `[ T1234] ` or `[ C1] `
(CONFIG_PRINTK_CALLER: the task or CPU that printed it), sometimes after
`syzkaller login: ` or a `<4>` log level.  With caller ids, lines of one report
can be told from other tasks' lines printed in between (`caller_of`).
"""

from __future__ import annotations

import re

from .kinds import HEAD_WORDS

# `[    3.123456] `, optionally followed by a caller id `[    T1] `.
TIMESTAMP_RE = re.compile(r"\[\s*\d+\.\d+\](?:\[\s*[CT]\d+\])? ?")
_CALLER_RE = re.compile(r"\[\s*\d+\.\d+\]\[\s*(?P<id>[CT]\d+)\]")
# A report head at the start of a line's message: the line's start, or right after a
# timestamp or caller id, a login prompt, a log level or a `2018/01/09 14:28:48 ` date,
# or KASAN's GPF hint that 4.x printed with no newline before the fault; old lockdep puts
# its heads in `[ ... ]`.
HEAD_RE = re.compile(r"(?:^|\[\s*\d+\.\d+\] |\[\s*[CT]\d+\] |login: |^<\d>|^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d "
                     r"|kasan: GPF could be caused by NULL-ptr deref or user memory access)"
                     r"\s*(?:\[ )?(?P<head>" + HEAD_WORDS + ")")
# Words every head has: a line without any of them opens no report (one cheap search on
# each console line before HEAD_RE, which is three times slower).
QUICK_RE = re.compile(r"BUG|Oops|protection fault|opcode|divide|int3:|PANIC|Kernel panic|WARNING|INFO|watchdog|UBSAN"
                      r"|Unable to handle|Internal error|Unhandled fault|Alignment trap|unreferenced object"
                      r"|unregister_netdevice|VFS: |stack segment")
BOOT_RE = re.compile(r"(?:^|\d\] )Linux version \d|HARNESS-BOOT-START|SeaBIOS \(version")
CUT_HERE_RE = re.compile(r"^-+\[ cut here \]-+$")
END_TRACE_RE = re.compile(r"^---\[ end trace")
FINAL_RE = re.compile(r"^(?:Rebooting in \d+ seconds|---\[ end Kernel panic)")
PANIC_RE = re.compile(r"^Kernel panic - not syncing")
DIE_RE = re.compile(r"^(?:Oops: |general protection fault|invalid opcode: |kernel BUG at |divide error: )")
END_OF_STACK_RE = re.compile(r"^\s*</TASK>")
RULE_RE = re.compile(r"^={20,}\s*$")
# Another CPU's backtrace was asked for: its lines belong to the report.
NMI_BACKTRACE_RE = re.compile(r"Sending NMI from CPU|NMI backtrace for cpu")
# Lines inside a report that start another one without ending it, and messages with a
# stack of their own that mean the text around them is interleaved.
NOT_A_SECOND_REPORT_RE = re.compile(r"unreferenced object 0x|invalid opcode: 0000|\] Oops: |^Oops: "
                                    r"|Kernel panic - not syncing|unregister_netdevice: waiting for"
                                    r"|PANIC: double fault|Internal error:")
STACK_MESSAGE_RE = re.compile(r"vmalloc: allocation failure:|FAULT_INJECTION: forcing a failure"
                              r"|FAULT_FLAG_ALLOW_RETRY missing")
# Lines that may still follow a report after its end-trace line.
TAIL_RE = re.compile(
    r"^(?:RIP: |Code: |RSP: |RAX: |RDX: |RBP: |R\d+: |FS: |CS: |CR2: |DR\d: |PKRU: "
    r"|Kernel Offset: |Modules linked in|note: |Fixing recursive fault|---\[ end trace )")


def strip_console_prefix(line: str) -> str:
    """The message part of a console line: `\\r`, a trailing newline and everything
    up to and including the first `[    3.123456] ` timestamp removed."""
    line = line.replace("\r", "").rstrip("\n")
    match = TIMESTAMP_RE.search(line)
    return line[match.end():] if match else line


def caller_of(line: str) -> str | None:
    """The caller id (`T1234`, `C1`) of a console line, if the kernel printed one."""
    match = _CALLER_RE.search(line)
    return match.group("id") if match else None
