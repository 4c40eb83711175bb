"""The streaming Windows console parser, and one report from what it gathered."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..bugcheck_codes import address_parameter, ip_parameter, lookup, normalize_code
from ..report import CrashReport
from .evidence import _Evidence, _ems_evidence, _start_evidence
from .lines import (
    ANALYZE, CRASH_END_RE, EMS, KD, NO_CODE, TOO_LONG, _ANALYZE_ARG_RE, _ANALYZE_HEADER_RE, _BUGCHECK_CODE_RE,
    _BUGCHECK_P_RE, _CAUSED_BY_RE, _EMS_INSTANCE_END_RE, _EMS_OPEN_RE, _FILLER_RE, _IMAGE_NAME_RE, _KD_FATAL_RE,
    _MODULE_LINE_RE, _NAME_LINE_RE, _NEXT_BOOT_RE, _PARAM_LINE_RE, _PRIORITY, _START_RE, _SYMBOL_NAME_RE,
    _WHAT_FAILED_RE, _hex, _param_list, bugcheck_title, clean_line, format_param, is_crash_start,
)

# --- one report being read --------------------------------------------------------

@dataclass
class _Pending:
    lines: list[tuple[int, str]] = field(default_factory=list)
    evidence: dict[str, _Evidence] = field(default_factory=dict)
    module: str | None = None
    module_ip: int | None = None
    function: str | None = None
    ems_record: list[str] | None = None  # the EMS record's lines while it is open
    kd_waiting: bool = False  # "*** Fatal System Error" seen, its parameter line not yet
    analyze_code: int | None = None  # from `NAME (50)` / BUGCHECK_CODE
    analyze_args: dict[int, int] = field(default_factory=dict)
    unrelated: list[tuple[int, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # not tied to one channel

    def add(self, lineno: int, text: str) -> None:
        if self.unrelated:
            self.lines.extend(self.unrelated)
            self.unrelated.clear()
        self.lines.append((lineno, text))

    def code(self) -> int | None:
        for channel in _PRIORITY:
            ev = self.evidence.get(channel)
            if ev is not None and ev.code is not None:
                return normalize_code(ev.code)
        return normalize_code(self.analyze_code) if self.analyze_code is not None else None

    def add_evidence(self, ev: _Evidence) -> None:
        self.evidence[ev.channel] = ev


class WindowsConsoleParser:
    """Streaming parser for a Windows guest's COM1 text (and, line for line, for Hyper-V
    panic lines): `feed_line` each line, read `reports()`, `flush()` at the end of input
    or when the monitor's grace window runs out.  Each report is handed out once."""

    def __init__(self, *, tail_window: int = 40, max_report_lines: int = 2000,
                 max_record_lines: int = 200) -> None:
        self.tail_window = tail_window
        self.max_report_lines = max_report_lines
        self.max_record_lines = max_record_lines
        self._reports: list[CrashReport] = []
        self._current: _Pending | None = None

    is_crash_start = staticmethod(is_crash_start)

    @property
    def in_report(self) -> bool:
        return self._current is not None

    @property
    def panicked(self) -> bool:
        """The open report holds a whole record of the bugcheck (a closed EMS record, the
        debugger's line with its parameters, a STOP line, a Hyper-V panic) and no record
        is half read.  The monitor then finishes the report at the crash event instead of
        waiting for more console text: hv-crash and pvpanic stop the guest there.  (With
        pvpanic's crash-loaded event the guest goes on writing its dump; STOP text it
        prints after the record is then not in the report.)"""
        current = self._current
        return current is not None and current.ems_record is None and not current.kd_waiting \
            and any(ev.complete for ev in current.evidence.values())

    def reports(self) -> list[CrashReport]:
        """Reports completed since the last `reports()` or `flush()`, oldest first."""
        done, self._reports = self._reports, []
        return done

    def settle(self) -> None:
        """Nothing to settle: every Windows report is a bugcheck."""

    def findings(self) -> list[CrashReport]:
        """Non-fatal reports: a bugcheck always stops Windows, so there are none."""
        return []

    def flush(self) -> list[CrashReport]:
        """Finish the open report, if any, and return every report not handed out yet."""
        if self._current is not None:
            self._finish()
        return self.reports()

    def feed_line(self, line: str, lineno: int) -> None:
        """Read one console line; `lineno` is the caller's number for it."""
        text = clean_line(line)
        current = self._current
        if current is None:
            if _START_RE.search(text):
                self._open(text, lineno)
            return
        if _NEXT_BOOT_RE.search(text):
            self._finish()
            return
        if current.ems_record is not None:
            if self._feed_ems(current, text, lineno):
                return
            current = self._current
            assert current is not None
        elif current.kd_waiting:
            current.kd_waiting = False
            plist = _PARAM_LINE_RE.match(text)
            if plist:
                ev = current.evidence[KD]
                ev.params, ev.problems = _param_list(plist["body"], plist["close"] is not None, "debugger")
                current.add(lineno, text)
                return
            if not text.strip():
                current.kd_waiting = True
                current.add(lineno, text)
                return
            current.evidence[KD].problems.append("truncated: the debugger's parameter list is missing")
        if _START_RE.search(text):
            self._start_in_report(current, text, lineno)
        elif self._related(current, text):
            current.add(lineno, text)
            if CRASH_END_RE.search(text):
                self._finish()
                return
        else:
            current.unrelated.append((lineno, text))
            if len(current.unrelated) > self.tail_window:
                self._finish()
                return
        if self._current is current and len(current.lines) >= self.max_report_lines:
            current.problems.append(TOO_LONG.format(n=self.max_report_lines))
            self._finish()

    # -- starts --

    def _open(self, text: str, lineno: int) -> None:
        pending = _Pending()
        self._current = pending
        self._begin(pending, text, lineno)

    def _begin(self, pending: _Pending, text: str, lineno: int) -> None:
        """Take a start line into `pending` (whose channels do not include the line's)."""
        pending.add(lineno, text)
        if _EMS_OPEN_RE.search(text) and not _KD_FATAL_RE.search(text):
            pending.ems_record = [text]
            if _EMS_INSTANCE_END_RE.search(text):
                self._close_ems(pending, closed=True)
            return
        ev = _start_evidence(text)
        if ev is None:  # cannot happen: _START_RE matched
            return
        pending.add_evidence(ev)
        if ev.channel == KD and not ev.params and not ev.problems:
            pending.kd_waiting = True

    def _start_channel(self, text: str) -> str:
        if _EMS_OPEN_RE.search(text) and not _KD_FATAL_RE.search(text):
            return EMS
        ev = _start_evidence(text)
        return ev.channel if ev else EMS

    def _start_in_report(self, current: _Pending, text: str, lineno: int) -> None:
        channel = self._start_channel(text)
        code = None
        if channel != EMS:
            ev = _start_evidence(text)
            code = normalize_code(ev.code) if ev and ev.code is not None else None
        known = current.code()
        if channel in current.evidence or (code is not None and known is not None and code != known):
            self._finish()
            self._open(text, lineno)
        else:
            self._begin(current, text, lineno)

    # -- the EMS record --

    def _feed_ems(self, current: _Pending, text: str, lineno: int) -> bool:
        """Take a line while the EMS record is open; False if the line is not the record's
        (another crash start cut it) and must be read as an ordinary line."""
        record = current.ems_record
        assert record is not None
        other_start = _START_RE.search(text) and not _EMS_OPEN_RE.search(text)
        if other_start:
            self._close_ems(current, closed=False)
            return False
        if _EMS_OPEN_RE.search(text) and re.search(r"<\s*BP\s*>", text, re.I):
            # a second record began before this one ended: this one was cut
            self._close_ems(current, closed=False)
            self._finish()
            self._open(text, lineno)
            return True
        record.append(text)
        current.add(lineno, text)
        if _EMS_INSTANCE_END_RE.search(text):
            self._close_ems(current, closed=True)
        elif len(record) >= self.max_record_lines:
            self._close_ems(current, closed=False)
        return True

    def _close_ems(self, current: _Pending, closed: bool) -> None:
        """End the open EMS record and add what it says.  A record whose STOP code differs
        from what the report's other channels said is another crash (no boot line came
        between the two): it moves, with its lines, to a report of its own."""
        record = current.ems_record or []
        current.ems_record = None
        ev = _ems_evidence("\n".join(record), closed)
        known = current.code()
        if ev.code is None or known is None or normalize_code(ev.code) == known:
            current.add_evidence(ev)
            return
        moved = current.lines[-len(record):]
        del current.lines[-len(record):]
        other = _Pending(lines=moved)
        other.add_evidence(ev)
        self._reports.append(build_report(current))
        if self._current is current:
            self._current = other
        else:  # called from _finish: both are done
            self._reports.append(build_report(other))

    # -- lines that add to a report --

    def _related(self, current: _Pending, text: str) -> bool:
        if match := _MODULE_LINE_RE.match(text):
            current.module = current.module or match["module"]
            if current.module_ip is None:
                current.module_ip = _hex(match["addr"])
            return True
        if match := _WHAT_FAILED_RE.match(text):
            current.module = current.module or match["module"]
            return True
        if match := _CAUSED_BY_RE.match(text):
            current.module = current.module or match["module"]
            if match["sym"]:
                current.function = current.function or _symbol_function(match["sym"])
            return True
        if match := _IMAGE_NAME_RE.match(text):
            current.module = current.module or match["module"]
            return True
        if match := _SYMBOL_NAME_RE.match(text):
            current.function = current.function or _symbol_function(match["sym"])
            return True
        if match := _ANALYZE_HEADER_RE.match(text):
            current.analyze_code = current.analyze_code or int(match["code"], 16)
            return True
        if match := _BUGCHECK_CODE_RE.match(text):
            current.analyze_code = current.analyze_code or int(match["code"], 16)
            return True
        if (match := _ANALYZE_ARG_RE.match(text)) or (match := _BUGCHECK_P_RE.match(text)):
            value = _hex(match["value"])
            if value is not None:
                current.analyze_args.setdefault(int(match["n"]), value)
            return True
        return bool(_NAME_LINE_RE.match(text) or _FILLER_RE.match(text))

    # -- finishing --

    def _finish(self) -> None:
        pending = self._current
        assert pending is not None
        if pending.ems_record is not None:
            self._close_ems(pending, closed=False)  # may split off another report
            pending = self._current
            assert pending is not None
        self._current = None
        if pending.kd_waiting:
            pending.evidence[KD].problems.append("truncated: the debugger's parameter list is missing")
        if len(pending.analyze_args) == 4 and ANALYZE not in pending.evidence:
            pending.add_evidence(_Evidence(ANALYZE, code=pending.analyze_code, gave_params=True,
                                           params=[pending.analyze_args[n] for n in range(1, 5)]))
        pending.unrelated.clear()
        self._reports.append(build_report(pending))


def _symbol_function(symbol: str) -> str | None:
    """`harnessflt!ChfMatchCriterion+0x4a` -> `ChfMatchCriterion`."""
    _, bang, rest = symbol.partition("!")
    if not bang:
        return None
    name = re.split(r"[+]", rest, maxsplit=1)[0]
    return name or None


def build_report(pending: _Pending) -> CrashReport:
    """The report the evidence of one crash makes."""
    code = pending.code()
    ordered = [pending.evidence[c] for c in _PRIORITY if c in pending.evidence]
    full = next((ev.params for ev in ordered if len(ev.params) == 4 and not ev.problems), None)
    if full is None:
        full = next((ev.params for ev in ordered if len(ev.params) == 4), None)
    params = full or []
    problems = [p for ev in ordered for p in ev.problems] + pending.problems
    attempted = any(ev.gave_params for ev in ordered)
    facts_complete = code is not None and (bool(params) or not attempted)
    if code is None:
        problems.insert(0, NO_CODE)
    corrupted = bool(problems) and not (facts_complete and any(ev.complete for ev in ordered))
    address = address_parameter(code, params) if code is not None else None
    ip = ip_parameter(code, params) if code is not None else None
    if ip is None:
        ip = pending.module_ip
    entry = lookup(code) if code is not None else None
    lines = pending.lines or [(0, "")]
    return CrashReport(
        title=bugcheck_title(code, pending.module),
        kind="bugcheck",
        text="\n".join(text for _, text in lines),
        first_line=lines[0][0],
        last_line=lines[-1][0],
        function=pending.function,
        module=pending.module,
        ip=format_param(ip) if ip is not None else None,
        address=format_param(address) if address is not None else None,
        panic=True,
        fatal=True,
        corrupted=corrupted,
        corrupted_reason="; ".join(dict.fromkeys(problems)) if corrupted else None,
        family="windows",
        stop_code=code,
        stop_name=entry.name if entry else None,
        parameters=[format_param(p) for p in params],
    )


def parse_reports(text: str) -> list[CrashReport]:
    """Every bugcheck report in a whole console log (lines split at `\\n`, numbered from 1)."""
    parser = WindowsConsoleParser()
    for lineno, line in enumerate(text.split("\n"), start=1):
        parser.feed_line(line, lineno)
    return parser.flush()
