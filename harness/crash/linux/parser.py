"""The streaming Linux console parser: one line at a time in, reports out, in order.

A report opens at a line whose message starts with a report head (`kinds.py`)
and takes every line after it, until it ends:

* at `Rebooting in N seconds..` or `---[ end Kernel panic - not syncing ... ]---`;
* or after `---[ end trace ... ]---`, the `</TASK>` that ends a stack dump (for
  reports without an end-trace line), or the `=====` rule that closes a
  sanitizer report, once the lines that can still belong to it stop coming
  (register dump, `Kernel panic - not syncing`, `Kernel Offset:`).  Up to
  `tail_window` unrelated lines may come in between; a panic after them still
  joins the report (an Oops, then `Kernel panic - not syncing: Fatal
  exception`, is one report with `panic=True`);
* or at the next boot (`Linux version N`, `HARNESS-BOOT-START`, `SeaBIOS
  (version`): `corrupted` (cut by the boot) unless it had already panicked;
* or at `flush()` (end of input): `corrupted` (truncated) while still in its
  body, unless it had already panicked;
* or after `max_report_lines` lines or `max_report_chars` characters
  (`corrupted`): a guest flooding its console cannot make the parser hold more;
* a hung task's report ends at the next hung task's head (khungtaskd prints one
  task after the other): `corrupted` when no stack line came before it (the
  kernel prints the stack at KERN_INFO, below a `loglevel=6` console);
* a finding (a WARNING, a sanitizer or lockdep report: `fatal=False`) still in
  its body ends (`corrupted`) at the head of a crash other than `Kernel
  panic`: a finding whose end never came must not swallow the crash after it.
  A panic that follows a finding joins it and makes it fatal (`panic_on_warn`).

Fatal and non-fatal: `reports()` hands out the fatal reports (what the monitor
counts as crashes; `is_crash_start` is True only for their heads and for
`Kernel panic`), `findings()` the non-fatal ones, each once, in order.  With
`include_warnings=True`, `reports()` hands out both, in the order they
completed (`parse_all` does that for a whole log).  Unread findings are kept
up to MAX_UNREAD_WARNINGS (the oldest dropped): a console full of WARNINGs
costs bounded memory when nobody asks.

Report text has `\\r` and timestamps removed; line numbers are the caller's.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from ..report import CrashReport
from .build import build_report
from .console import (BOOT_RE, CUT_HERE_RE, DIE_RE, END_OF_STACK_RE, END_TRACE_RE, FINAL_RE, HEAD_RE,
                      NMI_BACKTRACE_RE, NOT_A_SECOND_REPORT_RE, PANIC_RE, QUICK_RE, RULE_RE, STACK_MESSAGE_RE, TAIL_RE,
                      caller_of, strip_console_prefix)
from .kind import Kind
from .kinds import match_head

TRUNCATED = "truncated: the console output ended before the report did"
CUT_BY_BOOT = "truncated: the next boot began before the report ended"
TOO_LONG = "report longer than {n} lines without an end marker; cut there"
TOO_BIG = "report longer than {n} characters without an end marker; cut there"
CUT_BY_CRASH = "truncated: a crash report began before the warning ended"
CUT_BY_OTHER_TEXT = "truncated: other output began before the report showed its stack"
HUNG_NO_STACK = ("no stack: the next hung task's report began first (the kernel prints a hung task's stack "
                 "at KERN_INFO: a console loglevel of 6 or less hides it)")
MAX_UNREAD_WARNINGS = 16
# A stack has begun: its header (x86 `Call Trace:`, arm64 `Call trace:`) or a frame.
_TRACE_LINE_RE = re.compile(r"[Cc]all [Tt]race:|\+0x[0-9a-f]+/0x[0-9a-f]+")

# Reports whose body goes on after their first stack dump (other CPUs' backtraces follow);
# a memory leak report goes on while its lines are indented.
_SEVERAL_STACKS = {"rcu-stall"}


def open_match(line: str) -> tuple[Kind, re.Match[str], int] | None:
    """(kind, head match, where the head starts) when this console line opens a report."""
    if QUICK_RE.search(line) is None:
        return None
    found = HEAD_RE.search(line)
    if found is None:
        return None
    start = found.start("head")
    message = line[start:].replace("\r", "").rstrip("\n")
    kind_match = match_head(message)
    if kind_match is None:
        return None
    return kind_match[0], kind_match[1], start


def _is_crash(kind: Kind, head: re.Match[str]) -> bool:
    return kind.fatal or head.string.startswith("Kernel panic")


def is_crash_start(line: str) -> bool:
    """True when this console line starts a crash: a report that stops the machine or
    kills the task.  A finding's head (WARNING, KASAN, lockdep, leak) is not one; when
    a panic follows it (`panic_on_warn`), the `Kernel panic` line is."""
    opened = open_match(line)
    return opened is not None and _is_crash(opened[0], opened[1])


class _State(Enum):
    BODY = "body"   # inside the report: every line belongs to it
    TAIL = "tail"   # after its end: only report lines extend it


@dataclass
class _Pending:
    kind: Kind
    head: re.Match[str]
    caller: str | None                          # the caller id of the head line, if printed
    lines: list[tuple[int, str]] = field(default_factory=list)
    own: list[str] = field(default_factory=list)  # bodies of the report's own caller
    chars: int = 0
    state: _State = _State.BODY
    panic: bool = False
    expects_end_trace: bool = False
    other_cpus: bool = False                    # an NMI backtrace of all CPUs was asked for
    head_index: int = 0                         # where the head line is in `own`
    own_end: int | None = None                  # where a second report began in `own` (no caller ids)
    stack_ended: bool = False                   # a report of several stacks has shown its first whole
    trace_seen: bool = False                    # a stack line has come (_TRACE_LINE_RE)

    def cut_reason(self, reason: str) -> str | None:
        """`reason` if the report is cut while its text still matters, else None."""
        whole = self.state is _State.TAIL or self.panic or self.stack_ended
        return None if whole else reason
    unrelated: list[tuple[int, str, bool]] = field(default_factory=list)  # seen in TAIL

    def add(self, lineno: int, line: str, body: str) -> None:
        for number, text, own in self.unrelated:
            self.lines.append((number, text))
            if own:
                self.own.append(text)
        self.unrelated.clear()
        self.lines.append((lineno, body))
        if self.is_own(line):
            self.own.append(body)
        self.chars += len(body)

    def is_own(self, line: str) -> bool:
        if self.caller is None:
            return True
        caller = caller_of(line)
        return caller == self.caller or (self.other_cpus and caller is not None and caller.startswith("C"))


class LinuxConsoleParser:
    """Streaming Linux console parser: `feed_line` each line, read `reports()` and
    `findings()`, `flush()` at end of input or when the monitor's grace window runs out."""

    def __init__(self, *, include_warnings: bool = False, tail_window: int = 20,
                 max_report_lines: int = 2000, max_report_chars: int = 512 << 10,
                 on_report: Callable[[CrashReport], None] | None = None) -> None:
        self.include_warnings = include_warnings
        self.on_report = on_report  # called with every report, fatal or not, as it completes
        self.tail_window = tail_window
        self.max_report_lines = max_report_lines
        self.max_report_chars = max_report_chars
        self._reports: list[CrashReport] = []
        self._findings: deque[CrashReport] = deque(maxlen=MAX_UNREAD_WARNINGS)
        self._current: _Pending | None = None
        # The last lines outside any report: a "cut here" line before a WARNING belongs to it.
        self._recent: deque[tuple[int, str]] = deque(maxlen=3)
        self._last_open: tuple[str | None, tuple[Kind, re.Match[str], int] | None] = (None, None)

    def is_crash_start(self, line: str) -> bool:
        """`is_crash_start(line)`; the head it finds is kept for the `feed_line` of the same
        line that the monitor makes next (one head search per line, not two)."""
        opened = open_match(line)
        self._last_open = (line, opened)
        return opened is not None and _is_crash(opened[0], opened[1])

    def _open_match(self, line: str) -> tuple[Kind, re.Match[str], int] | None:
        last_line, opened = self._last_open
        if last_line is line:
            return opened
        return open_match(line)

    @property
    def in_report(self) -> bool:
        """True while a report is open (the monitor should keep reading)."""
        return self._current is not None

    @property
    def panicked(self) -> bool:
        """The open report has reached its `Kernel panic - not syncing` line: nothing the
        guest prints after it can change the report (pvpanic stops the guest there)."""
        return self._current is not None and self._current.panic

    def reports(self) -> list[CrashReport]:
        """Fatal reports completed since the last `reports()` or `flush()`, oldest first,
        each handed out once (with include_warnings=True, the non-fatal ones too)."""
        done, self._reports = self._reports, []
        return done

    def findings(self) -> list[CrashReport]:
        """Non-fatal reports (WARNING, sanitizers, lockdep, leaks) completed since the
        last call, oldest first, each handed out once; at most MAX_UNREAD_WARNINGS."""
        done = list(self._findings)
        self._findings.clear()
        return done

    warnings = findings  # the name the first callers used

    def settle(self) -> None:
        """Finish a finding whose end was seen and that only waits, in its tail, for a panic
        that may still join it: the caller is judging now (a WARNING on a machine that keeps
        running must not wait for the next report to be told)."""
        current = self._current
        if current is not None and current.state is _State.TAIL and not current.panic \
                and not current.kind.fatal:
            self._finish(None)

    def flush(self) -> list[CrashReport]:
        """Finish the open report, if any (corrupted as truncated while still in its
        body), and return what `reports()` would."""
        current = self._current
        if current is not None:
            self._finish(current.cut_reason(TRUNCATED))
        return self.reports()

    def feed_line(self, line: str, lineno: int) -> None:
        """Read one console line; `lineno` is the caller's number for it."""
        current = self._current
        if current is None:
            opened = self._open_match(line)
            if opened is None:
                self._recent.append((lineno, line))
                return
            self._open(line, opened, lineno)
            return
        if BOOT_RE.search(line):
            self._finish(current.cut_reason(CUT_BY_BOOT))
            return
        body = strip_console_prefix(line)
        if current.state is _State.BODY:
            self._feed_body(current, line, body, lineno)
        else:
            self._feed_tail(current, line, body, lineno)

    # -- states --

    def _feed_body(self, current: _Pending, line: str, body: str, lineno: int) -> None:
        opened = self._open_match(line)
        if opened is not None and not current.kind.fatal and not current.panic and not PANIC_RE.match(body) \
                and _is_crash(opened[0], opened[1]):
            self._finish(CUT_BY_CRASH)
            self._open(line, opened, lineno)
            return
        if opened is not None and current.kind.name == opened[0].name == "hung-task":
            # khungtaskd prints one blocked task after the other, each whole: the next task's head
            # ends this one; before any stack line, this one's stack was not on the console.
            self._finish(None if current.trace_seen else HUNG_NO_STACK)
            self._open(line, opened, lineno)
            return
        if _TRACE_LINE_RE.search(body):
            current.trace_seen = True
        if current.own_end is None and current.caller is None and (
                (opened is not None and not NOT_A_SECOND_REPORT_RE.search(line)) or STACK_MESSAGE_RE.search(body)):
            # Without caller ids, a second report's lines cannot be told from this one's: read up to it.
            current.own_end = len(current.own)
        if current.kind.name == "memory-leak" and len(current.lines) > 1:
            # kmemleak prints no end: its objects are indented under "unreferenced object" lines.
            if body and not body[0].isspace() and not body.startswith("unreferenced object"):
                self._finish(None if current.stack_ended else CUT_BY_OTHER_TEXT)
                self.feed_line(line, lineno)
                return
            if "backtrace" in body:
                current.stack_ended = True
        if NMI_BACKTRACE_RE.search(body):
            current.other_cpus = True
        current.add(lineno, line, body)
        if FINAL_RE.match(body):
            self._finish(None)
        elif END_TRACE_RE.match(body):
            current.state = _State.TAIL
        elif PANIC_RE.match(body):
            current.panic = True
        elif DIE_RE.match(body):
            current.expects_end_trace = True
        elif current.kind.ends_with_rule and RULE_RE.match(body) and len(current.lines) > 2:
            current.state = _State.TAIL
        elif END_OF_STACK_RE.match(body) and not current.expects_end_trace and not current.kind.ends_with_rule:
            if current.kind.name in _SEVERAL_STACKS:
                current.stack_ended = True  # other CPUs' stacks may follow: read on, but it is whole
            else:
                current.state = _State.TAIL
        if self._current is current and len(current.lines) >= self.max_report_lines:
            self._finish(TOO_LONG.format(n=self.max_report_lines))
        elif self._current is current and current.chars >= self.max_report_chars:
            self._finish(TOO_BIG.format(n=self.max_report_chars))

    def _feed_tail(self, current: _Pending, line: str, body: str, lineno: int) -> None:
        if PANIC_RE.match(body):
            current.add(lineno, line, body)
            current.panic = True
            current.state = _State.BODY
        elif FINAL_RE.match(body):
            current.add(lineno, line, body)
            self._finish(None)
        elif TAIL_RE.match(body):
            current.add(lineno, line, body)
        else:
            opened = self._open_match(line)
            if opened is not None:
                self._finish(None)
                self._open(line, opened, lineno)
                return
            current.unrelated.append((lineno, body, current.is_own(line)))
            current.chars += len(body)
            self._recent.append((lineno, line))
            if len(current.unrelated) > self.tail_window:
                self._finish(None)

    # -- open / finish --

    def _open(self, line: str, opened: tuple[Kind, re.Match[str], int], lineno: int) -> None:
        kind, head, _start = opened
        pending = _Pending(kind=kind, head=head, caller=caller_of(line),
                           panic=head.string.startswith("Kernel panic"), expects_end_trace=kind.ends_with_trace)
        recent = list(self._recent)
        for index, (_number, text) in enumerate(recent):
            if CUT_HERE_RE.match(strip_console_prefix(text)):
                for number, before in recent[index:]:
                    pending.add(number, before, strip_console_prefix(before))
                break
        self._recent.clear()
        pending.head_index = len(pending.own)
        pending.add(lineno, line, strip_console_prefix(line))
        self._current = pending

    def _finish(self, corrupted_reason: str | None) -> None:
        pending = self._current
        assert pending is not None
        self._current = None
        pending.unrelated.clear()
        own = pending.own[pending.head_index:pending.own_end]
        report = build_report(pending.kind, pending.head, pending.lines, own, pending.panic,
                              corrupted_reason)
        if self.on_report is not None:
            self.on_report(report)
        if report.fatal:
            self._reports.append(report)
        else:
            self._findings.append(report)
            if self.include_warnings:
                self._reports.append(report)


def parse_reports(text: str, *, include_warnings: bool = False) -> list[CrashReport]:
    """Every crash report in a whole console log (with include_warnings, every report).

    Lines are split at `\\n` only and numbered from 1, as `grep -n` does.  Decode
    the serial log's bytes yourself: Python's universal-newline text mode would
    also split at the lone `\\r` that firmware prints, and shift the numbers."""
    parser = LinuxConsoleParser(include_warnings=include_warnings)
    for lineno, line in enumerate(text.split("\n"), start=1):
        parser.feed_line(line, lineno)
    return parser.flush()


def parse_all(text: str) -> list[CrashReport]:
    """Every report in a whole console log, fatal or not, in order, each with `fatal` set."""
    return parse_reports(text, include_warnings=True)
