"""Linux kernel console text -> crash reports, titled as syzkaller's pkg/report titles them.

Modules: `console` (line prefixes and markers), `kind` and `kinds_*` (every
report kind: its head, title and where its guilty frame is), `kinds` (the
order they are tried), `frames` (stack frames and the one list of frames that
are never the bug), `locate` (the guilty frame of a report), `build` (lines to
a `CrashReport`), `parser` (the streaming parser the monitor feeds).
"""

from .build import FAULT_INJECTION, NO_FRAMES, NO_FUNCTION, NO_STACK, STACK_MISSED, build_report
from .console import strip_console_prefix
from .frames import SKIP_GROUPS
from .kinds import KINDS, classify
from .parser import (CUT_BY_BOOT, CUT_BY_CRASH, MAX_UNREAD_WARNINGS, TOO_BIG, TOO_LONG, TRUNCATED,
                     LinuxConsoleParser, is_crash_start, parse_all, parse_reports)

__all__ = [
    "CUT_BY_BOOT", "CUT_BY_CRASH", "FAULT_INJECTION", "KINDS", "MAX_UNREAD_WARNINGS", "NO_FRAMES", "NO_FUNCTION",
    "NO_STACK", "SKIP_GROUPS", "STACK_MISSED", "TOO_BIG", "TOO_LONG", "TRUNCATED", "LinuxConsoleParser",
    "build_report", "classify", "is_crash_start", "parse_all", "parse_reports", "strip_console_prefix",
]
