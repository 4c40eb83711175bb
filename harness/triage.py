"""Judge a saved serial log: the same monitor as a live run, fed line by line.

Linux logs go through the Linux family, exactly as a live run of the reference
guest.  Windows logs (COM1 with EMS/SAC, or a kernel debugger transcript) go
through the Windows family, and a libvirt domain log
(/var/log/libvirt/qemu/<domain>.log) adds the Hyper-V crash MSRs' exact STOP
code and parameters: its `panic hyper-v: arg1=...` lines are fused with the
console's reports of the same crashes (`harness.crash.windows.fuse_reports`).

The family is named (`family="linux"|"windows"`) or detected from the text
(`detect_family`): EMS/SAC lines, the BLUESCREEN record, `*** Fatal System
Error`, a STOP screen or `panic hyper-v` mean Windows; `Linux version N` means
Linux; when both appear the earlier one wins; when neither does, Linux (what
`harness triage` always assumed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .crash.report import CrashReport
from .crash.windows import fuse_reports, parse_domain_log
from .driver import DriverSpec
from .errors import InputFileError
from .families.linux import LinuxFamily
from .families.windows import WindowsFamily
from .monitor.monitor import Monitor
from .monitor.verdict import BootSummary, Verdict

MAX_LOG_BYTES = 512 * 1024 * 1024
CHUNK_BYTES = 4 << 20
# `reports` lists at most this many (a console full of WARNINGs lists the first ones and a count).
MAX_LISTED_REPORTS = 1000
FAMILIES = ("auto", "linux", "windows")

_WINDOWS_RE = re.compile(
    r"SAC started and initialized|EVENT: The CMD command is now available|CLASSNAME=\"BLUESCREEN\"|<BP>"
    r"|\*\*\* Fatal System Error:|^\s*(?:\*\*\*\s*)?STOP: (?:0x)?[0-9A-Fa-f]{8}|panic\s+hyper-v:"
    r"|HV crash parameters:", re.M)
_LINUX_RE = re.compile(r"Linux version \d")
# A libvirt per-domain QEMU log: its timestamped lines, the QEMU command line it records.
_DOMAIN_LOG_RE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\+\d{4}: (?:starting up libvirt version|shutting down|panic )"
    r"|^LC_ALL=C .*qemu-system-|qemu-system-\w+ .*-name guest=", re.M)
_CONSOLE_RE = re.compile(r"SAC started and initialized|<BP>|\*\*\* Fatal System Error:|Linux version \d")


def _check_log(path: Path) -> None:
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory; give the serial log (serial.log)")
    if path.stat().st_size > MAX_LOG_BYTES:
        raise InputFileError(f"{path}: larger than {MAX_LOG_BYTES >> 20} MiB; cut it to the boots of interest")


def read_log(path: Path) -> str:
    _check_log(path)
    try:
        return path.read_bytes().decode("utf-8", "replace").replace("\r", "")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror}") from None


def read_chunks(path: Path, size: int = CHUNK_BYTES) -> Iterator[str]:
    """The log as `read_log` gives it, in pieces that end at a `\\n` (the last piece is what
    follows the last newline, maybe empty): a 100 MB log is never in memory at once.
    Cutting at a newline never splits a UTF-8 character, so decoding is the same."""
    _check_log(path)
    try:
        with path.open("rb") as handle:
            rest = b""
            while block := handle.read(size):
                block = rest + block
                cut = block.rfind(b"\n") + 1
                rest = block[cut:]
                if cut:
                    yield block[:cut].decode("utf-8", "replace").replace("\r", "")
            yield rest.decode("utf-8", "replace").replace("\r", "")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror}") from None


def file_lines(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """The lines of a log file, split at `\\n` only, as `iter_lines(read_log(path))`."""
    for chunk in read_chunks(path, chunk_bytes):
        if chunk.endswith("\n"):
            yield from iter_lines(chunk[:-1])
        else:
            yield chunk


def _first_marker(text: str) -> str | None:
    windows = _WINDOWS_RE.search(text)
    linux = _LINUX_RE.search(text)
    if windows and (linux is None or windows.start() < linux.start()):
        return "windows"
    return "linux" if linux else None


def detect_family(text: str) -> str:
    """"windows" or "linux", from the first family marker in the text (Linux if none)."""
    return _first_marker(text) or "linux"


def is_domain_log(text: str) -> bool:
    """True for a libvirt domain log rather than a console log."""
    return _DOMAIN_LOG_RE.search(text) is not None and _CONSOLE_RE.search(text) is None


def iter_lines(text: str) -> Iterator[str]:
    """The lines of a log split at `\\n` only, without a list of them all (a 100 MB log)."""
    start = 0
    while True:
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start:end]
        start = end + 1


def _scan_file(path: Path) -> tuple[str, bool]:
    """(`detect_family`, `is_domain_log`) of a log file, read piece by piece (markers are
    within a line, and pieces end at line ends, so the answers are the same)."""
    family: str | None = None
    domain = console = False
    for chunk in read_chunks(path):
        family = family or _first_marker(chunk)
        domain = domain or _DOMAIN_LOG_RE.search(chunk) is not None
        console = console or _CONSOLE_RE.search(chunk) is not None
    return family or "linux", domain and not console


class _ReportList:
    """Summaries of every report a parser completes, in order, up to MAX_LISTED_REPORTS."""

    def __init__(self) -> None:
        self.listed: list[dict[str, Any]] = []
        self.omitted = 0

    def add(self, report: CrashReport) -> None:
        if len(self.listed) < MAX_LISTED_REPORTS:
            self.listed.append(report_summary(report))
        else:
            self.omitted += 1


def _monitor_verdict(family: str, lines: Iterable[str], boot_loop_threshold: int,
                     listing: _ReportList | None = None, driver: DriverSpec | None = None) -> Verdict:
    """The verdict a console log implies. Lines carry no times, so each counts as one tick.
    With `listing` (Linux), every report the monitor's parser completes is listed there too.
    `driver`: a vendor's driver, whose own lines say ready and rejected (default: the sample's)."""
    linux = LinuxFamily(on_report=listing.add if listing is not None else None, driver=driver)
    chosen = WindowsFamily(driver=driver) if family == "windows" else linux
    monitor = Monitor(chosen, boot_loop_threshold=boot_loop_threshold, grace_s=float("inf"))
    count = 0
    for n, line in enumerate(lines):
        monitor.observe_line(line, float(n))
        count = n + 1
    verdict = monitor.decide(float(count), final=True) or _unreachable()
    for parser in linux.parsers:
        parser.flush()  # a finding still open at the end of the log is listed too
    return verdict


def report_summary(report: CrashReport) -> dict[str, Any]:
    """One line of `reports` in `harness triage --json`."""
    return {"title": report.title, "function": report.function, "module": report.module, "kind": report.kind,
            "fatal": report.fatal, "corrupted": report.corrupted, "corrupted_reason": report.corrupted_reason,
            "first_line": report.first_line, "last_line": report.last_line}


def triage_text(text: str, boot_loop_threshold: int = 2, family: str = "auto",
                domain_log: str | None = None, listing: _ReportList | None = None,
                driver: DriverSpec | None = None) -> Verdict:
    """The verdict a console log implies (with `domain_log`, fused with its Hyper-V panics)."""
    chosen = detect_family(text) if family == "auto" else family
    verdict = _monitor_verdict(chosen, iter_lines(text), boot_loop_threshold, listing, driver)
    if domain_log is None:
        return verdict
    return fuse_verdict(verdict, parse_domain_log(domain_log))


def triage_domain_log(text: str, boot_loop_threshold: int = 2) -> Verdict:
    """The verdict a libvirt domain log alone implies.

    A bugcheck ends the boot it happens in, so each Hyper-V panic is one crashing boot;
    boots that did not crash leave no line in a domain log, so N panics read as N
    crashing boots in a row (the reason says so)."""
    reports = parse_domain_log(text)
    if not reports:
        return Verdict(verdict="hang", reason="no Hyper-V panic in the domain log, and no console log "
                       "to judge the boots by", boots=0, crashing_boots=0, elapsed_s=0.0)
    count = len(reports)
    name = "boot-loop" if count >= boot_loop_threshold else "crashed"
    reason = (f"{count} Hyper-V panic(s) in the domain log and no console log: read as {count} crashing "
              "boot(s) in a row (a boot that does not crash leaves no line there)")
    log = [BootSummary(index=i + 1, started_s=0.0, crashed=True, complete=False, sensor=None,
                       crash_title=r.title, rejected=[], loaded=[], crashed_event=True)
           for i, r in enumerate(reports)]
    return Verdict(verdict=name, reason=reason, boots=count, crashing_boots=count, elapsed_s=0.0,
                   crash=reports[0], crashes=reports, boot_log=log, events={"lifecycle:crashed:panicked": count})


def fuse_verdict(verdict: Verdict, hyperv: list[CrashReport]) -> Verdict:
    """The console verdict with the domain log's Hyper-V panics fused into its reports.

    Each panic merges, in order, with the console report of the same STOP code (one
    report per crash: exact code and parameters from Hyper-V, module from the text).
    Panics that match no console report are added after the console's crashes; if the
    console showed no crash at all and its verdict was a hang, the verdict becomes
    "crashed" (the guest bugchecked before it printed anything).  A healthy console
    verdict is kept, with the unmatched panics named in its reason: a domain log keeps
    the lines of earlier runs of the domain."""
    if not hyperv:
        return verdict
    fused, _merged = fuse_reports(verdict.crashes, hyperv)
    count = len(verdict.crashes)
    extra = fused[count:]
    boot_log: list[BootSummary] = []
    index = 0
    for boot in verdict.boot_log:
        if boot.crash_title is not None and index < count:
            boot = replace(boot, crash_title=fused[index].title)
            index += 1
        boot_log.append(boot)
    if verdict.verdict in ("healthy", "content-rejected"):
        if not extra:
            return replace(verdict, boot_log=boot_log)
        return replace(verdict, boot_log=boot_log, reason=f"{verdict.reason}; the domain log also has "
                       f"{len(extra)} Hyper-V panic(s) no console report matches (an earlier run?)")
    if verdict.crash is None and verdict.verdict == "hang":
        crashing = len(extra) if verdict.boots == 0 else min(len(extra), verdict.boots)
        return replace(verdict, verdict="crashed", crash=extra[0], crashes=extra, boot_log=boot_log,
                       crashing_boots=crashing, boots=max(verdict.boots, crashing),
                       reason=f"the console shows no bugcheck, the domain log {len(extra)} Hyper-V "
                              f"panic(s) ({verdict.reason})")
    return replace(verdict, crash=fused[0] if fused else None, crashes=fused, boot_log=boot_log)


def _unreachable() -> Verdict:
    raise AssertionError("decide(final=True) always returns a verdict")


@dataclass
class Triage:
    verdict: Verdict
    family: str
    log: Path | None
    domain_log: Path | None
    # Every report in the log, in order (Linux: findings too; Windows: the bugchecks).
    reports: list[dict[str, Any]] = field(default_factory=list)
    reports_omitted: int = 0

    def reports_json(self) -> dict[str, Any]:
        """`reports` (and `reports_omitted` when there were too many) for `--json`."""
        out: dict[str, Any] = {"reports": self.reports}
        if self.reports_omitted:
            out["reports_omitted"] = self.reports_omitted
        return out


def triage_files(log: Path | None, domain_log: Path | None = None, boot_loop_threshold: int = 2,
                 family: str = "auto", driver: DriverSpec | None = None) -> Triage:
    """Triage a console log, a libvirt domain log, or both.  A domain log given as the
    console log (`harness triage qemu/win.log`) is read as a domain log. `driver`: the
    profile's vendor driver, whose own lines say ready and rejected."""
    if log is None and domain_log is None:
        raise InputFileError("give a serial log, a libvirt domain log (--domain-log), or both")
    if log is not None and domain_log is None and family in ("auto", "linux"):
        detected, domain = _scan_file(log)
        if not domain and (family == "linux" or detected == "linux"):
            # A Linux console log is judged line by line from the file, never held whole.
            listing = _ReportList()
            verdict = _monitor_verdict("linux", file_lines(log), boot_loop_threshold, listing, driver)
            return Triage(verdict, "linux", log, None, listing.listed, listing.omitted)
    text = read_log(log) if log is not None else None
    domain_text = read_log(domain_log) if domain_log is not None else None
    if text is not None and domain_text is None and is_domain_log(text):
        text, domain_text, log, domain_log = None, text, None, log
    if domain_text is not None and family == "linux":
        raise InputFileError(f"{domain_log}: a domain log's Hyper-V panics are Windows bugchecks; "
                             "use --family windows (or auto)")
    if text is None:
        assert domain_text is not None
        verdict = triage_domain_log(domain_text, boot_loop_threshold)
        return Triage(verdict, "windows", None, domain_log, [report_summary(r) for r in verdict.crashes])
    chosen = family if family != "auto" else ("windows" if domain_text is not None else detect_family(text))
    listing = _ReportList()
    verdict = triage_text(text, boot_loop_threshold, chosen, domain_text, listing, driver)
    if chosen == "linux":
        return Triage(verdict, chosen, log, domain_log, listing.listed, listing.omitted)
    return Triage(verdict, chosen, log, domain_log, [report_summary(r) for r in verdict.crashes])


def triage_file(path: Path, boot_loop_threshold: int = 2) -> Verdict:
    return triage_files(path, None, boot_loop_threshold).verdict
