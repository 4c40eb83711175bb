"""One crash report, whatever the guest OS, and syzkaller-style title normalisation.

A report is what the console said about one crash: a normalised title (one bug,
one title, however often it happens and wherever the kernel was loaded), the
faulting function and module, the raw text, and where in the console log it
was.  The Linux parser (`linux/`) fills it from every kind of kernel report
(`kind`: "page-fault", "kasan", "warning", "lockdep", "hung-task", ...); the
Windows parser (`windows/`) fills `stop_code`, `stop_name` and `parameters`
from bugcheck text.

Title normalisation follows syzkaller's `pkg/report` (`dynamicTitleReplacement`
and `sanitizeTitle`): `func+0x1e/0x80` becomes `func`, anything that looks like
an address (6+ hex digits) becomes `ADDR`, `file.c:123` becomes `file.c:LINE`,
`CPU#3` becomes `CPU`, the remaining stand-alone numbers become `NUM`, and the
title is cut at 120 characters.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_TITLE_LEN = 120

# Applied in this order; each is repeated until the title stops changing
# (overlapping matches such as "1,2,3" need several passes).
_TITLE_REPLACEMENTS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Raw references to functions: offsets and sizes are not stable.
    (re.compile(r"([a-zA-Z_][a-zA-Z0-9_.]*)\+0x[0-9a-f]+/0x[0-9a-f]+"), r"\1"),
    # Anything that looks like an address.
    (re.compile(r"([^a-zA-Z0-9_]|^)(?:0x)?[0-9a-fA-F]{6,}(?![0-9a-zA-Z_])"), r"\1ADDR"),
    # File line numbers.
    (re.compile(r"(\.\w+)(?::[0-9]+)+"), r"\1:LINE"),
    # CPU numbers.
    (re.compile(r"CPU#[0-9]+"), "CPU"),
    # Every stand-alone decimal number that is left.
    (re.compile(r"(\W|^)(\d+)(\W|$)"), r"\1NUM\3"),
    # Long digit runs glued to a word are not part of a function name either.
    (re.compile(r"\d{7,}"), "NUM"),
)


def normalize_title(title: str) -> str:
    """The syzkaller normalisation of a crash title (see the module docstring)."""
    for pattern, replacement in _TITLE_REPLACEMENTS:
        while True:
            new = pattern.sub(replacement, title)
            if new == title:
                break
            title = new
    return sanitize_title(title)


def sanitize_title(title: str) -> str:
    """Printable ASCII, tabs to spaces, no double spaces, at most 120 characters."""
    out: list[str] = []
    prev = " "
    for ch in title[:MAX_TITLE_LEN]:
        if ch == "\t":
            ch = " "
        elif ch < " " or ch >= "\x7f":
            continue
        if ch == " " and prev == " ":
            continue
        out.append(ch)
        prev = ch
    return "".join(out).strip()


@dataclass
class CrashReport:
    """One crash (or one warning) as the guest's console reported it.

    `panic` is True when the guest panicked as part of this report (a Linux
    "Kernel panic - not syncing" that followed the Oops, or that *is* the
    report).  `fatal` is False for a finding the kernel survives: a Linux
    WARNING, lockdep or sanitizer (KASAN, KMSAN, KCSAN, KFENCE, UBSAN) report
    or a memory leak that no panic followed.  `corrupted` says the text is
    incomplete (cut off by the end of the log or by the next boot), mixed with
    other output, or that the title could not be completed; `corrupted_reason`
    says which.  The defaults keep callers that build a report by hand working.
    """

    title: str
    kind: str
    text: str
    first_line: int
    last_line: int
    function: str | None = None
    module: str | None = None
    ip: str | None = None
    address: str | None = None
    call_trace: list[str] = field(default_factory=list)
    panic: bool = False
    fatal: bool = True
    corrupted: bool = False
    corrupted_reason: str | None = None
    family: str = "linux"
    # Windows bugchecks (filled by the Windows parser; None/empty on Linux).
    stop_code: int | None = None
    stop_name: str | None = None
    parameters: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Every field, as plain JSON types, plus `stop_code_hex` ("0x50", upper-case digits as
        in Microsoft's bug check reference; None when there is no STOP code, as on Linux)."""
        data = asdict(self)
        data["stop_code_hex"] = f"0x{self.stop_code:X}" if self.stop_code is not None else None
        return data
