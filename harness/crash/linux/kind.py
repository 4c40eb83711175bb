"""What a report kind is: the line that opens it, its title, and how its guilty frame is read.

Each module `kinds_*.py` lists the kinds of one family of reports; `kinds.py`
puts them in the order they are tried.  A kind's `locate` says where in the
report text its guilty frame is (see `locate.py`):

| locate | frames, in order |
|---|---|
| `ip` | the function of the first instruction pointer line (`RIP:`, `IP:`, `pc :`) only |
| `ip-trace` | that function, then the stack after it (the first `Call Trace:` on) |
| `warning` | as `ip-trace`, then the first `Call Trace:` (old WARNINGs print no RIP) |
| `head-trace` | the function the opening line names, then the first `Call Trace:` |
| `trace` | the first `Call Trace:` after the opening line |
| `frames` | the stack lines right after the opening line (KMSAN prints no header) |
| `after` | the stack after the first line matching `anchor` |
| `at` | the `at: f+0x..` of the first lock line after a line matching `anchor` (lockdep) |
| `at-trace` | the `at:` of the next two lock lines, then the stack printed after them |
| `ip-line` | the first `[<pc>] f+0x..` line, then the first `Call Trace:` |
| `stall` | after a line matching `anchor` (the timer interrupt): its `RIP:` and stack |
| `none` | no function: the title names none |

The guilty frame is the first of those frames that `frames.SKIP_GROUPS` (or the
kind's `skip`) does not skip; stalls and hangs use their `extractor` instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Kind:
    name: str                       # CrashReport.kind
    head: re.Pattern[str]           # matched at the start of the line's message
    title: str                      # "{f}": the guilty function; "{x}": head group x or a body field
    locate: str = "trace"
    skip: tuple[str, ...] = ()      # frames this kind also skips
    fatal: bool = True              # the report by itself stops the machine or kills the task
    ends_with_trace: bool = False   # the kernel closes it with "---[ end trace"
    ends_with_rule: bool = False    # a sanitizer report, closed by a "=====" line
    anchor: re.Pattern[str] | None = None
    extractor: str = "first"        # "first", "stall" or "hung"
    corrupted: str | None = None    # only a damaged report has this shape: why
    body_fields: tuple[tuple[str, re.Pattern[str]], ...] = ()  # title fields read from the body


def k(name: str, head: str, title: str, *, anchor: str | None = None,
      body_fields: tuple[tuple[str, str], ...] = (), **options: Any) -> Kind:
    """A Kind from regex strings (keeps the tables short)."""
    return Kind(name, re.compile(head), title, anchor=re.compile(anchor) if anchor else None,
                body_fields=tuple((field, re.compile(rx)) for field, rx in body_fields), **options)
