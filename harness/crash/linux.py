"""Linux kernel console text -> crash reports (in the style of syzkaller's pkg/report).

The parser reads the guest's serial console one line at a time.  A report
opens at a line that starts a kernel crash report (see `is_crash_start`) and
takes every line after it, so the whole Oops is captured, until it ends:

* at `Rebooting in N seconds..` or `---[ end Kernel panic - not syncing ... ]---`;
* or after `---[ end trace ... ]---` (or, for reports the kernel does not close
  with an end-trace line, the `</TASK>` that ends their stack dump) once the
  lines that can still belong to the report stop coming: the register dump
  that follows the end-trace line, `Kernel panic - not syncing`, `Kernel
  Offset:`.  Up to `tail_window` unrelated lines may come in between (other
  CPUs, user space); a panic after them still joins the report, so an Oops
  followed by `Kernel panic - not syncing: Fatal exception` is one report with
  `panic=True`.  The unrelated lines are left out unless a panic follows;
* or at the next boot (`Linux version N`, `HARNESS-BOOT-START`, `SeaBIOS
  (version`): a report the next boot cut short is `corrupted` unless it
  had already panicked;
* or at `flush()` (end of input, end of the monitor's grace window): a
  report still inside its body is `corrupted` (truncated) unless it had
  already panicked (a pvpanic reset cuts the console right after the panic);
* or after `max_report_lines` lines or `max_report_chars` characters
  (`corrupted`): a guest that floods the console inside a report cannot make
  the parser hold more than that;
* a WARNING still inside its body ends (`corrupted`) at a crash start other
  than `Kernel panic`: a warning whose end never came (cut, or text that only
  looks like one) must not swallow the crash that follows and lend it its
  title.

Supported report starts (kind -> title):

| console line | kind | title |
|---|---|---|
| `BUG: unable to handle page fault for address: X` (also `... kernel paging request at X`) | page-fault | `BUG: unable to handle page fault in F` |
| `BUG: kernel NULL pointer dereference, address: X` | null-deref | `BUG: kernel NULL pointer dereference in F` |
| `general protection fault[, probably for non-canonical address X]` | general-protection | `general protection fault in F` |
| `kernel BUG at file:line!` | bug | `kernel BUG in F` |
| `invalid opcode:` (without `kernel BUG at`) | invalid-opcode | `invalid opcode in F` |
| `Oops:` (without a `BUG:` line before it) | oops | `Oops in F` |
| `WARNING: CPU: N PID: N at file:line F+0x../0x..` | warning | `WARNING in F` |
| `watchdog: BUG: soft lockup - CPU#N stuck for Ns!` | soft-lockup | `BUG: soft lockup in F` |
| `watchdog: Watchdog detected hard LOCKUP on cpu N` | hard-lockup | `hard LOCKUP in F` |
| `INFO: task X:N blocked for more than N seconds.` | hung-task | `INFO: task hung in F` |
| `rcu: INFO: rcu_preempt (self-)detected stall` | rcu-stall | `INFO: rcu detected stall in F` |
| `BUG: KASAN: T in F` | kasan | `KASAN: T Read/Write in F` |
| any other `BUG: text` | bug | `BUG: text` |
| `Kernel panic - not syncing: R` with no report before it | panic | `Kernel panic - not syncing: R` |

F is the faulting function: from the kernel-mode `RIP:` line for faults and
lockups, from the `WARNING:` line for warnings, and otherwise the first
reliable stack frame that is not panic, scheduler, lock or entry machinery.
When F cannot be found the title stops before ` in F` and the report is
`corrupted`.  Every title then goes through `report.normalize_title`.

WARNINGs: a WARNING is not a crash; the kernel carries on.  `is_crash_start`
is False for its line, and its report has `fatal=False` and is kept apart
(`warnings()`).  If a panic follows it (`panic_on_warn=1`), the `Kernel panic`
line is a crash start and joins the WARNING's report, which becomes a crash
titled `WARNING in F` with `panic=True`.  Pass `include_warnings=True` to get
the non-fatal ones from `reports()` as well.  Hung tasks, lockups and Oopses
that the kernel survives (no `oops=panic`) are crashes, as in syzkaller.
Unread WARNINGs are kept up to MAX_UNREAD_WARNINGS (the oldest are dropped), so
a console full of them costs bounded memory when nobody asks.

Streaming: `reports()` and `flush()` hand each completed report out once
(what completed since the last call), so a caller that polls after every line
can pin each report to the boot it came from.  `parse_reports` returns all.

Report text has `\\r` and the `[    3.123456] ` timestamps removed; line
numbers (`first_line`, `last_line`) are the caller's.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from .report import CrashReport, normalize_title

# --- line classes -----------------------------------------------------------

# A crash-report start line, with or without the console timestamp (or other
# text) in front.  The monitor runs this on every console line.
_CRASH_HEADS = (
    r"BUG: |Oops: |general protection fault|kernel BUG at |invalid opcode: "
    r"|Kernel panic - not syncing"
    r"|watchdog: BUG: soft lockup|(?:NMI )?watchdog: Watchdog detected hard LOCKUP"
    r"|INFO: task \S+ blocked for more than"
    r"|(?:rcu: )?INFO: rcu_\w+ (?:self-)?detected stalls?")
_WARNING_HEADS = r"|WARNING: CPU: \d+ PID: \d+ at |WARNING: at "
_START_RE = re.compile(r"(?:^|\d\] )\s*(?P<head>" + _CRASH_HEADS + ")")
# What opens a report in the parser: a crash start, or a WARNING (which may
# turn into a crash if a panic follows).
_OPEN_RE = re.compile(r"(?:^|\d\] )\s*(?P<head>" + _CRASH_HEADS + _WARNING_HEADS + ")")
# `[    3.123456] `, optionally followed by a caller id `[    T1] `.
_TIMESTAMP_RE = re.compile(r"\[\s*\d+\.\d+\](?:\[\s*[CT]\d+\])? ?")
_BOOT_RE = re.compile(r"(?:^|\d\] )Linux version \d|HARNESS-BOOT-START|SeaBIOS \(version")
_CUT_HERE_RE = re.compile(r"^-+\[ cut here \]-+$")
_END_TRACE_RE = re.compile(r"^---\[ end trace")
_FINAL_RE = re.compile(r"^(?:Rebooting in \d+ seconds|---\[ end Kernel panic)")
_PANIC_RE = re.compile(r"^Kernel panic - not syncing")
_DIE_RE = re.compile(r"^(?:Oops: |general protection fault|invalid opcode: |kernel BUG at )")
_END_OF_STACK_RE = re.compile(r"^\s*</TASK>")
# Lines that may still follow a report after its end-trace line.
_TAIL_RE = re.compile(
    r"^(?:RIP: |Code: |RSP: |RAX: |RDX: |RBP: |R\d+: |FS: |CS: |CR2: |DR\d: |PKRU: "
    r"|Kernel Offset: |Modules linked in|note: |Fixing recursive fault|---\[ end trace )")

# --- field extraction -------------------------------------------------------

_FUNC = r"(?P<func>[A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[(?P<mod>[\w-]+)\])?"
_RIP_RE = re.compile(r"^RIP: (?P<cs>[0-9a-f]{4}):(?P<value>.*)$")
_RIP_FUNC_RE = re.compile(_FUNC)
_MODULE_SUFFIX_RE = re.compile(r"\s*\[[\w-]+\]\s*$")
_USER_CS = {"0033", "0023", "002b"}
_FRAME_RE = re.compile(r"^\s+(?:\[<[0-9a-f]+>\] )?(?P<q>\? )?" + _FUNC)
_CALL_TRACE_RE = re.compile(r"^\s*Call Trace:")
_TRACE_STOP_RE = re.compile(
    r"^(?:\s*</TASK>|Call Trace:|---\[ end |Kernel panic|Kernel Offset|Modules linked in)")
_WARNING_FUNC_RE = re.compile(r"^WARNING: (?:CPU: \d+ PID: \d+ )?at (?:\S+ )?" + _FUNC)
_CR2_RE = re.compile(r"^CR2: (?P<addr>[0-9a-fx]+)")
_KASAN_ACCESS_RE = re.compile(r"^(?P<rw>Read|Write) of size \d+ at addr (?P<addr>[0-9a-fx]+)")
# Frames that never name the culprit: panic, scheduler, locks, IRQ and syscall entry.
_SKIP_FRAME_RE = re.compile(
    r"^(?:dump_stack\w*|__dump_stack|show_stack\w*|panic|nmi_panic|vpanic|check_panic_on_warn"
    r"|__warn\w*|warn_slowpath\w*|report_bug|handle_bug|exc_\w+|asm_exc_\w+"
    r"|asm_sysvec_\w+|sysvec_\w+|__sysvec_\w+|__hrtimer_run_queues|hrtimer_interrupt"
    r"|watchdog|watchdog_timer_fn|lockup_detector\w*|__schedule|schedule\w*"
    r"|preempt_schedule\w*|io_schedule\w*|msleep\w*|ssleep|usleep_range\w*"
    r"|wait_for_completion\w*|__wait_for_common|do_wait_for_common|mutex_lock\w*"
    r"|__mutex_lock\w*|down|down_\w+|__down\w*|rwsem_\w+|rt_mutex\w*|rcu_\w+"
    r"|print_cpu_stall\w*|kthread|ret_from_fork\w*|irq_exit\w*|__irq_exit_rcu"
    r"|__do_softirq|do_softirq\w*|entry_SYSCALL\w*|do_syscall_64|__x64_sys_\w+"
    r"|__do_sys_\w+|do_one_initcall|do_init_module|kasan_\w+|__kasan_\w+|__asan_\w+"
    r"|print_report|print_address_description\w*)$")

# kind, regex on the start line (from the head on).  First match wins.
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("page-fault", re.compile(r"BUG: unable to handle page fault for address: (?P<addr>\S+)")),
    ("page-fault", re.compile(r"BUG: unable to handle kernel paging request at (?P<addr>\S+)")),
    ("null-deref", re.compile(r"BUG: kernel NULL pointer dereference, address: (?P<addr>\S+)")),
    ("null-deref", re.compile(r"BUG: unable to handle kernel NULL pointer dereference at (?P<addr>\S+)")),
    ("general-protection", re.compile(
        r"general protection fault"
        r"(?:, (?:probably|maybe) for (?:non-canonical )?address (?P<addr>0x[0-9a-f]+))?")),
    ("bug", re.compile(r"kernel BUG at ")),
    ("invalid-opcode", re.compile(r"invalid opcode: ")),
    ("oops", re.compile(r"Oops: ")),
    ("warning", re.compile(r"WARNING: ")),
    ("panic", re.compile(r"Kernel panic - not syncing:? ?(?P<reason>.*)")),
    ("soft-lockup", re.compile(r"(?:watchdog: )?BUG: soft lockup")),
    ("hard-lockup", re.compile(r"(?:NMI )?watchdog: Watchdog detected hard LOCKUP")),
    ("hung-task", re.compile(r"INFO: task \S+ blocked for more than")),
    ("rcu-stall", re.compile(r"(?:rcu: )?INFO: rcu_\w+ (?:self-)?detected stall")),
    ("kasan", re.compile(r"BUG: KASAN: (?P<what>[\w-]+)(?: in " + _FUNC + ")?")),
    ("bug", re.compile(r"BUG: (?P<what>.*)")),
)
# Title per kind; "{f}" is the faulting function.  Kinds missing here use their line.
_TITLES: dict[str, str] = {
    "page-fault": "BUG: unable to handle page fault in {f}",
    "null-deref": "BUG: kernel NULL pointer dereference in {f}",
    "general-protection": "general protection fault in {f}",
    "bug": "kernel BUG in {f}",
    "invalid-opcode": "invalid opcode in {f}",
    "oops": "Oops in {f}",
    "warning": "WARNING in {f}",
    "soft-lockup": "BUG: soft lockup in {f}",
    "hard-lockup": "hard LOCKUP in {f}",
    "hung-task": "INFO: task hung in {f}",
    "rcu-stall": "INFO: rcu detected stall in {f}",
}
# Where F comes from: the RIP line first, or the stack first.
_FUNCTION_FROM_RIP = {"page-fault", "null-deref", "general-protection", "bug", "invalid-opcode",
                      "oops", "warning", "soft-lockup", "hard-lockup"}
# Reports the kernel closes with "---[ end trace ... ]---".
_ENDS_WITH_TRACE = {"page-fault", "null-deref", "general-protection", "bug", "invalid-opcode",
                    "oops", "warning"}

TRUNCATED = "truncated: the console output ended before the report did"
CUT_BY_BOOT = "truncated: the next boot began before the report ended"
NO_FUNCTION = "no faulting function: no kernel RIP line and no usable stack frame"
TOO_LONG = "report longer than {n} lines without an end marker; cut there"
TOO_BIG = "report longer than {n} characters without an end marker; cut there"
CUT_BY_CRASH = "truncated: a crash report began before the warning ended"
MAX_UNREAD_WARNINGS = 16


def strip_console_prefix(line: str) -> str:
    """The message part of a console line: `\\r`, a trailing newline and everything
    up to and including the first `[    3.123456] ` timestamp removed."""
    line = line.replace("\r", "").rstrip("\n")
    match = _TIMESTAMP_RE.search(line)
    return line[match.end():] if match else line


def is_crash_start(line: str) -> bool:
    """True when this console line starts a kernel crash report (one regex search).

    A WARNING line does not: the kernel carries on after it.  When a panic
    follows it (`panic_on_warn`), the `Kernel panic` line is a crash start."""
    return _START_RE.search(line) is not None


# --- one report being read --------------------------------------------------

class _State(Enum):
    BODY = "body"   # inside the report: every line belongs to it
    TAIL = "tail"   # after the end-trace line: only report lines extend it


@dataclass
class _Pending:
    kind: str
    head: str                                   # the start line, from its head on
    head_fields: dict[str, str | None]          # what classify() read from it
    lines: list[tuple[int, str]] = field(default_factory=list)
    chars: int = 0                              # characters in lines (and unrelated)
    state: _State = _State.BODY
    panic: bool = False
    expects_end_trace: bool = False
    unrelated: list[tuple[int, str]] = field(default_factory=list)  # seen in TAIL

    def add(self, lineno: int, body: str) -> None:
        if self.unrelated:
            self.lines.extend(self.unrelated)
            self.unrelated.clear()
        self.lines.append((lineno, body))
        self.chars += len(body)


def classify(head: str) -> tuple[str, dict[str, str | None]]:
    """The kind of report a start line opens, and the fields its line names
    (`addr`, `reason`, `what`, `func`, `mod`)."""
    for kind, pattern in _KINDS:
        match = pattern.match(head)
        if match:
            return kind, match.groupdict()
    return "bug", {}


# --- the parser -------------------------------------------------------------

class LinuxConsoleParser:
    """Streaming Linux console parser: `feed_line` each line, read `reports()`,
    `flush()` at end of input or when the monitor's grace window runs out."""

    def __init__(self, *, include_warnings: bool = False, tail_window: int = 20,
                 max_report_lines: int = 2000, max_report_chars: int = 512 << 10) -> None:
        self.include_warnings = include_warnings
        self.tail_window = tail_window
        self.max_report_lines = max_report_lines
        self.max_report_chars = max_report_chars
        self._reports: list[CrashReport] = []      # completed, not yet handed out
        # the same for non-fatal WARNINGs, the newest MAX_UNREAD_WARNINGS
        self._warnings: deque[CrashReport] = deque(maxlen=MAX_UNREAD_WARNINGS)
        self._current: _Pending | None = None
        # The last few lines outside any report: a "cut here" line before a
        # WARNING or kernel BUG belongs to it.
        self._recent: deque[tuple[int, str]] = deque(maxlen=3)

    is_crash_start = staticmethod(is_crash_start)

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
        """Crash reports completed since the last `reports()` or `flush()`, oldest
        first.  Each report is handed out once, so a monitor that calls this after
        every line gets each boot's report at the line that completes it.
        WARNINGs that no panic followed only with include_warnings=True."""
        done, self._reports = self._reports, []
        return done

    def warnings(self) -> list[CrashReport]:
        """WARNING reports that no panic followed (not crashes), completed since
        the last call; each is handed out once."""
        done = list(self._warnings)
        self._warnings.clear()
        return done

    def flush(self) -> list[CrashReport]:
        """Finish the open report, if any (corrupted as truncated while still in
        its body), and return what `reports()` would: every crash report not
        handed out yet."""
        current = self._current
        if current is not None:
            cut = current.state is _State.BODY and not current.panic
            self._finish(TRUNCATED if cut else None)
        return self.reports()

    def feed_line(self, line: str, lineno: int) -> None:
        """Read one console line; `lineno` is the caller's number for it."""
        current = self._current
        if current is None:
            match = _OPEN_RE.search(line)
            if match is None:
                self._recent.append((lineno, line))
                return
            self._open(line, match, lineno)
            return
        if _BOOT_RE.search(line):
            cut = current.state is _State.BODY and not current.panic
            self._finish(CUT_BY_BOOT if cut else None)
            return
        body = strip_console_prefix(line)
        if current.state is _State.BODY:
            self._feed_body(current, line, body, lineno)
        else:
            self._feed_tail(current, line, body, lineno)

    # -- states --

    def _feed_body(self, current: _Pending, line: str, body: str, lineno: int) -> None:
        if current.kind == "warning" and not current.panic and not _PANIC_RE.match(body):
            crash = _START_RE.search(line)
            if crash is not None:
                self._finish(CUT_BY_CRASH)
                self._open(line, crash, lineno)
                return
        current.add(lineno, body)
        if _FINAL_RE.match(body):
            self._finish(None)
        elif _END_TRACE_RE.match(body):
            current.state = _State.TAIL
        elif _PANIC_RE.match(body):
            current.panic = True
        elif _DIE_RE.match(body):
            current.expects_end_trace = True
        elif _END_OF_STACK_RE.match(body) and not current.expects_end_trace:
            current.state = _State.TAIL
        if self._current is current and len(current.lines) >= self.max_report_lines:
            self._finish(TOO_LONG.format(n=self.max_report_lines))
        elif self._current is current and current.chars >= self.max_report_chars:
            self._finish(TOO_BIG.format(n=self.max_report_chars))

    def _feed_tail(self, current: _Pending, line: str, body: str, lineno: int) -> None:
        if _PANIC_RE.match(body):
            current.add(lineno, body)
            current.panic = True
            current.state = _State.BODY
        elif _FINAL_RE.match(body):
            current.add(lineno, body)
            self._finish(None)
        elif _TAIL_RE.match(body):
            current.add(lineno, body)
        else:
            match = _OPEN_RE.search(line)
            if match is not None:
                self._finish(None)
                self._open(line, match, lineno)
                return
            current.unrelated.append((lineno, body))
            current.chars += len(body)
            self._recent.append((lineno, line))
            if len(current.unrelated) > self.tail_window:
                self._finish(None)

    # -- open / finish --

    def _open(self, line: str, match: re.Match[str], lineno: int) -> None:
        head = line[match.start("head"):].replace("\r", "").rstrip("\n")
        kind, head_fields = classify(head)
        pending = _Pending(kind=kind, head=head, head_fields=head_fields, panic=kind == "panic",
                           expects_end_trace=kind in _ENDS_WITH_TRACE)
        recent = list(self._recent)
        for index, (number, text) in enumerate(recent):
            if _CUT_HERE_RE.match(strip_console_prefix(text)):
                pending.lines.extend((n, strip_console_prefix(t)) for n, t in recent[index:])
                break
        self._recent.clear()
        pending.lines.append((lineno, strip_console_prefix(line)))
        self._current = pending

    def _finish(self, corrupted_reason: str | None) -> None:
        pending = self._current
        assert pending is not None
        self._current = None
        pending.unrelated.clear()
        report = build_report(pending.kind, pending.head, pending.head_fields, pending.lines,
                              pending.panic, corrupted_reason)
        if report.fatal:
            self._reports.append(report)
        else:
            self._warnings.append(report)
            if self.include_warnings:
                self._reports.append(report)


def parse_reports(text: str, *, include_warnings: bool = False) -> list[CrashReport]:
    """Every crash report in a whole console log.

    Lines are split at `\n` only and numbered from 1, as `grep -n` does.  Decode
    the serial log's bytes yourself: Python's universal-newline text mode would
    also split at the lone `\r` that firmware prints, and shift the numbers."""
    parser = LinuxConsoleParser(include_warnings=include_warnings)
    for lineno, line in enumerate(text.split("\n"), start=1):
        parser.feed_line(line, lineno)
    return parser.flush()


# --- from lines to a report -------------------------------------------------

@dataclass(frozen=True)
class _Frame:
    function: str
    module: str | None


def _frame_name(raw: str) -> str:
    """`chf_load.cold` and `foo.isra.0` name `chf_load` and `foo` (as syzkaller does)."""
    return raw.split(".", 1)[0]


def _first_call_trace(bodies: list[str]) -> list[_Frame]:
    frames: list[_Frame] = []
    inside = False
    for body in bodies:
        if not inside:
            inside = _CALL_TRACE_RE.match(body) is not None
            continue
        if _TRACE_STOP_RE.match(body):
            if frames or not _CALL_TRACE_RE.match(body):
                break
            continue  # a second "Call Trace:" header before any frame
        match = _FRAME_RE.match(body)
        if match and not match.group("q"):
            frames.append(_Frame(_frame_name(match.group("func")), match.group("mod")))
    return frames


def _kernel_rip(bodies: list[str]) -> tuple[str, _Frame | None] | None:
    """The first kernel-mode RIP line: (raw value, function in it if symbolised)."""
    for body in bodies:
        match = _RIP_RE.match(body)
        if match is None or match.group("cs") in _USER_CS:
            continue
        value = " ".join(match.group("value").split())
        func = _RIP_FUNC_RE.search(value)
        ip = f"{match.group('cs')}:{_MODULE_SUFFIX_RE.sub('', value)}"
        if func is None:
            return ip, None
        return ip, _Frame(_frame_name(func.group("func")), func.group("mod"))
    return None


def _guilty_frame(frames: list[_Frame]) -> _Frame | None:
    for frame in frames:
        if not _SKIP_FRAME_RE.match(frame.function):
            return frame
    return None


def _address(kind: str, head_fields: dict[str, str | None], bodies: list[str]) -> str | None:
    if head_fields.get("addr"):
        return head_fields["addr"]
    if kind in ("page-fault", "null-deref"):
        for body in bodies:
            if cr2 := _CR2_RE.match(body):
                return cr2.group("addr")
    if kind == "kasan":
        for body in bodies:
            if access := _KASAN_ACCESS_RE.match(body):
                return access.group("addr")
    return None


def _title(kind: str, head: str, head_fields: dict[str, str | None], function: str | None,
           bodies: list[str]) -> tuple[str, bool]:
    """(title before normalisation, whether it needed F and F was missing)."""
    if kind == "panic":
        reason = (head_fields.get("reason") or "").strip()
        return f"Kernel panic - not syncing: {reason}".rstrip(": "), False
    if kind == "kasan":
        access = next((m.group("rw") for b in bodies if (m := _KASAN_ACCESS_RE.match(b))), None)
        base = f"KASAN: {head_fields.get('what')}" + (f" {access}" if access else "")
        return (f"{base} in {function}", False) if function else (base, True)
    if kind == "bug" and not head.startswith("kernel BUG at"):
        return _MODULE_SUFFIX_RE.sub("", head), False
    template = _TITLES[kind]
    if function:
        return template.format(f=function), False
    return template.replace(" in {f}", ""), True


def build_report(kind: str, head: str, head_fields: dict[str, str | None],
                 lines: list[tuple[int, str]], panic: bool,
                 corrupted_reason: str | None = None) -> CrashReport:
    """Turn the lines of one report into a CrashReport (titles, function, fields)."""
    bodies = [body for _, body in lines]
    frames = _first_call_trace(bodies)
    rip = _kernel_rip(bodies)
    ip = rip[0] if rip else None
    source: _Frame | None = None
    if kind == "warning":
        warning = _WARNING_FUNC_RE.match(head)
        if warning:
            source = _Frame(_frame_name(warning.group("func")), warning.group("mod"))
    if source is None and kind in _FUNCTION_FROM_RIP and rip:
        source = rip[1]
    if source is None and kind == "kasan" and head_fields.get("func"):
        source = _Frame(_frame_name(head_fields["func"] or ""), head_fields.get("mod"))
    if source is None:
        source = _guilty_frame(frames)
    function = source.function if source else None
    title, missing_function = _title(kind, head, head_fields, function, bodies)
    if corrupted_reason is None and missing_function:
        corrupted_reason = NO_FUNCTION
    return CrashReport(
        title=normalize_title(title),
        kind=kind,
        text="\n".join(bodies),
        first_line=lines[0][0],
        last_line=lines[-1][0],
        function=function,
        module=source.module if source else None,
        ip=ip,
        address=_address(kind, head_fields, bodies),
        call_trace=[frame.function for frame in frames],
        panic=panic,
        fatal=kind != "warning" or panic,
        corrupted=corrupted_reason is not None,
        corrupted_reason=corrupted_reason,
    )
