"""Every report kind, in the order they are tried, and the line tests built from them.

`match_head` is given the message of a console line (the text after its
timestamp) and returns the first kind whose head matches its start.  Lines the
kernel prints with the same first words that are not reports (`WARNING:
/etc/ssh/moduli does not exist`, `INFO: lockdep is turned off`, ...) are in
`_NOT_REPORTS`.
"""

from __future__ import annotations

import re

from .kind import Kind
from .kinds_faults import FAULT_KINDS
from .kinds_locking import LOCKING_KINDS
from .kinds_misc import LEAK_KINDS, OTHER_KINDS, PANIC_KINDS, WARNING_KINDS
from .kinds_sanitizers import SANITIZER_KINDS
from .kinds_stalls import STALL_KINDS

# Specific before general: sanitizers and named BUG:s before the catch-all `BUG: text`.
KINDS: tuple[Kind, ...] = (SANITIZER_KINDS + FAULT_KINDS + LOCKING_KINDS + STALL_KINDS + LEAK_KINDS
                           + WARNING_KINDS + PANIC_KINDS + OTHER_KINDS)

# The first words of every head above (a cheap test before the table is tried).
HEAD_WORDS = (r"BUG[: ]|Oops: |(?:segment-related )?general protection fault|stack segment: |kernel BUG at "
              r"|Kernel BUG |invalid opcode: |divide[ _]error: |int3: |PANIC: double fault|Kernel panic - not syncing"
              r"|WARNING:|INFO:"
              r"|\[ (?:WARNING|INFO): |(?:NMI )?watchdog: |rcu: INFO: |UBSAN: |Unable to handle kernel "
              r"|Internal error: |Unhandled fault: |Alignment trap: |unreferenced object 0x"
              r"|unregister_netdevice: waiting for |VFS: (?:Close: file count is 0|Busy inodes after unmount)")

_NOT_REPORTS = re.compile("|".join((
    # user space and firmware lines that share the words
    r"WARNING: /etc/ssh/moduli", r"WARNING: Unsupported flag value", r"WARNING: See https",
    r"WARNING: workqueue cpumask: online intersect > possible intersect", r"WARNING: [Tt]he mand mount option",
    r"WARNING: Unprivileged eBPF is enabled", r"WARNING: fbcon: Driver", r"WARNING: kernel not compiled with",
    r"(?i:warning: .* uses (?:deprecated v2 capabilities|wireless extensions))",
    # kernel lines that are not reports
    r"INFO: lockdep is turned off", r"INFO: Stall ended before state dump start", r"INFO: NMI handler",
    r"INFO: recovery required on readonly filesystem", r"INFO: .*(?:handler|interrupt).*took too long",
    r"INFO: sys_.* is not present in /proc/kallsyms", r"INFO: no syscalls can create resource",
    r"BUG: no syscalls can create resource",
)))
# `BUG <cache> (Not tainted): ...` is SLUB debugging; only a double free there is a report.
_SLUB_REPORT = re.compile(r"BUG kmalloc-")


def match_head(message: str) -> tuple[Kind, re.Match[str]] | None:
    """The kind of report this message opens, and the head's match (None: not a report)."""
    if _NOT_REPORTS.match(message) or (message.startswith("BUG ") and not _SLUB_REPORT.match(message)):
        return None
    for kind in KINDS:
        match = kind.head.match(message)
        if match:
            return kind, match
    return None


def classify(head: str) -> tuple[str, dict[str, str | None]]:
    """The kind name a start line opens and the fields its line names (for callers and tests)."""
    found = match_head(head)
    if found is None:
        return "bug", {}
    kind, match = found
    return kind.name, match.groupdict()
