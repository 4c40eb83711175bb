"""Windows bugchecks (BSOD) -> crash reports, from what the host can see of them.

A Windows bugcheck reaches the host through up to three channels (design notes:
shared/design/windows-notes.md section 2).  This module reads all three and makes
one `CrashReport` per crash:

1. **COM1 text** (`WindowsConsoleParser`, same interface as `LinuxConsoleParser`):

   * the EMS "BLUESCREEN" record.  With EMS on (`bcdedit /ems on`), the kernel's
     headless terminal code sends, once per bugcheck::

         \\a\\a\\a<?xml>\\a<BP>
         <INSTANCE CLASSNAME="BLUESCREEN">
         <PROPERTY NAME="STOPCODE" TYPE="string"><VALUE>"0x50"</VALUE></PROPERTY>
         ...the XML fragments components registered (e.g. <machine-info>...)...
         </INSTANCE>
         </BP>\\a

     Sources: Avocent/Cyclades ACS command reference, "<BP> Tags Description"
     (https://www.manualslib.com/manual/536887/Avocent-Cyclades-Acs.html?page=140),
     and decompiled x64 ntoskrnl `HdlspSendBlueScreenInfo`, whose format strings are
     exactly the lines above (`"0x%0X"`: upper-case hex, no padding).  The
     documented record carries the STOP code only.  The parser also reads
     parameter PROPERTY elements named `PARAMETER1`..`PARAMETER4` (or `PARAMn`,
     `Pn`, `ARGn`) if a record has them: those names are **our assumption**; no
     source shows Windows emitting them.  The record may be split over any
     number of lines (the Avocent sample even splits `</` from `VALUE>`), and may
     lack its `<?xml>`/`<BP>` wrapper.
   * the kernel debugger's bugcheck text (kd/WinDbg on the serial port)::

         *** Fatal System Error: 0x00000050
                                (0xFFFF9C8E0000008A,0x0000000000000000,0xFFFFF8012345678A,0x0000000000000002)

         Driver at fault:
         ***   harnessflt.sys - Address FFFFF8012345678A base at FFFFF80123450000, DateStamp 66a1b2c3

     (the parameter list on the same line or the next one), plus the summary
     `BugCheck 50, {p1, p2, p3, p4}` / `Probably caused by : x.sys` and the
     `!analyze -v` lines `NAME (50)`, `Arg1: ...`, `IMAGE_NAME:`, `SYMBOL_NAME:`.
     Sources: MicrosoftDocs/windows-driver-docs debugger/blue-screen-data.md and
     bug-check-0x50--page-fault-in-nonpaged-area.md (!analyze example); kd
     transcripts published with CVE-2020-0796 and MSKSSRV.sys analyses
     (`*** Fatal System Error:`, `Driver at fault:`, `***   MSKSSRV.sys -
     Address ... base at ..., DateStamp ...`).
   * the text STOP screen, if the port shows it: the classic
     `*** STOP: 0x00000050 (0x..., 0x..., 0x..., 0x...)` with the symbolic name
     on the next line and `***  x.sys - Address ... base at ..., DateStamp ...`
     (old WinDbg help "Blue Screen Data": `STOP: 0x00000079 (0x00000002,
     0x00000001, 0x00000002, 0x00000000)`), and the Windows 10+ lines
     `Stop code: PAGE_FAULT_IN_NONPAGED_AREA` / `What failed: x.sys`
     (blue-screen-data.md: "The stop code is displayed ... the module name ...
     is also displayed, such as AcmeVideo.sys").  Whether a Windows 10/11 guest
     mirrors any stop text to the EMS port is **not confirmed**.

2. **The libvirt domain log** (`parse_domain_log`).  With `hv-crash`, Windows writes
   the STOP code and its four parameters to the Hyper-V crash MSRs; QEMU raises
   GUEST_PANICKED with `GuestPanicInformationHyperV {arg1..arg5}` ("arg1: for
   Windows, STOP code for the guest crash"; "arg2: for Windows, first argument of
   the STOP" ... arg5 the fourth: qemu/qemu:qapi/run-state.json,
   docs/system/i386/hyperv.rst), and libvirt appends to
   /var/log/libvirt/qemu/<domain>.log::

       2024-09-30 16:30:49.506+0000: panic hyper-v: arg1='0x5a', arg2='0x1', arg3='0x2', arg4='0x3', arg5='0x4'

   (format of libvirt's qemuMonitorGuestPanicEventInfoFormatMsg as parsed by
   kubevirt/kubevirt:pkg/virt-launcher/virtwrap/util/panic_info.go and its test;
   a real line, `panic hyper-v: arg1='0x3e', arg2='0x46d359bbdff', ...`, is
   quoted in the qemu-devel vCPU-hotplug thread of 2025-06-09).  The unquoted
   form `arg1=0x50, ...` is accepted too.  QEMU's own guest-error log line
   `HV crash parameters: (0x50 0x... 0x... 0x... 0x...)` (qemu/qemu:
   system/runstate.c, printed with `-d guest_errors`) is read as well.

3. **Fusion** (`fuse_reports`): one report per crash when several channels saw it.
   Within one console stream, evidence from different channels joins the open
   report while the STOP codes agree; a second record from a channel that already
   spoke is a new crash (each channel reports a bugcheck once).  Across the
   serial log and the domain log, the i-th Hyper-V panic is matched, in order,
   with the next serial report that has the same STOP code.  The merged report
   keeps the Hyper-V code and parameters (read from the MSRs, exact, 64-bit) and
   the text's module and function.

Report fields (`kind="bugcheck"`, `family="windows"`):

* `stop_code`: the code as an int, `_M` variants normalised (0x1000007E -> 0x7E,
  `bugcheck_codes.normalize_code`); `stop_name` from `bugcheck_codes`.
* `parameters`: four strings, **always "0x" + 16 lower-case hex digits**
  (`0xffff9c8e0000008a`), whatever the channel printed (kd: 16 upper-case digits,
  libvirt: `%llx`, the classic STOP screen: 8 or 16 digits).  Empty when no
  channel gave them (an EMS record alone).
* `address`: the parameter that is the referenced memory address, where the docs
  say one is (parameter 1 of 0xA, 0x50, 0xD1, 0xD6; parameter 4 of 0x1E when the
  exception is 0xC0000005); `ip`: the faulting instruction's address (the
  parameter the docs name, else the `Address` of the driver line).  Same
  16-digit form.
* `module`: from `*** x.sys - Address ...`, `What failed:`, `Probably caused
  by :` or `IMAGE_NAME:`; `function` only when the text names one
  (`SYMBOL_NAME: mod!Func+0x4a`, `Probably caused by : x.sys ( mod!Func+4a )`).
* `title`: `PAGE_FAULT_IN_NONPAGED_AREA (0x50) in harnessflt.sys`; without a
  module `PAGE_FAULT_IN_NONPAGED_AREA (0x50)`; a code not in the table
  `BUGCHECK 0x1234ABCD`; no code at all `BUGCHECK (stop code unknown)`.  Titles
  are built from parsed fields, so they go through `sanitize_title` only:
  syzkaller's `normalize_title` would turn an 8-digit code into `ADDR`.  The
  function is left out of the title so that a crash keeps one title whether or
  not `!analyze` ran (syzkaller's one bug, one title).
* `corrupted`: a record was cut (end of log, next boot) or garbled (a value that
  is not hex, fewer than four parameters) and no other channel made up for it.
  The title is still right whenever the STOP code itself was read.
* `panic` is True: a bugcheck always stops the machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from .bugcheck_codes import address_parameter, by_name, ip_parameter, lookup, normalize_code
from .report import CrashReport, sanitize_title

# --- cleaning ---------------------------------------------------------------------

# VT100/ANSI sequences (SAC draws its screens with them) and the BEL characters of the
# EMS record.
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_line(line: str) -> str:
    """A console line without `\\r`, escape sequences, BEL and other control characters,
    and without trailing blanks (SAC pads its lines to 80 columns)."""
    line = _ANSI_RE.sub("", line.replace("\r", "").rstrip("\n"))
    return _CONTROL_RE.sub("", line).rstrip()


# --- line classes -----------------------------------------------------------------

# Lines that mean a new boot began: a report still open was cut by it.
_NEXT_BOOT_RE = re.compile(
    r"Computer is booting, SAC started and initialized|Windows Boot Manager"
    r"|SeaBIOS \(version|BdsDxe: (?:loading|starting) Boot")

_EMS_OPEN = r"<\s*BP\s*>|<\s*INSTANCE\s+CLASSNAME\s*=\s*\"BLUESCREEN\""
_EMS_OPEN_RE = re.compile(_EMS_OPEN, re.I)
_EMS_INSTANCE_END_RE = re.compile(r"<\s*/\s*INSTANCE\s*>|<\s*/\s*BP\s*>", re.I)
_HEX = r"(?:0[xX])?[0-9A-Fa-f`]+"
_KD_FATAL_RE = re.compile(r"\*\*\* Fatal System Error:\s*(?P<code>0[xX][0-9A-Fa-f]+)\b(?P<rest>.*)$")
_STOP_RE = re.compile(r"^\s*(?:\*\*\*\s*)?STOP:\s*(?P<code>(?:0[xX])?[0-9A-Fa-f]{1,8})\b(?P<rest>.*)$")
_STOP_CODE_RE = re.compile(r"^\s*Stop code:\s*(?P<what>\S.*?)\s*$")
_BUGCHECK_SUMMARY_RE = re.compile(r"^\s*BugCheck (?P<code>[0-9A-Fa-f]+), \{(?P<rest>.*)$")
_HV_LIBVIRT_RE = re.compile(r"panic\s+hyper-v:\s*(?P<args>.*)$")
_HV_QEMU_RE = re.compile(r"HV crash parameters:\s*\((?P<args>[^)]*)(?P<close>\))?")
# Any line that starts a crash report, in one search (the monitor runs it on every line).
_START_RE = re.compile(
    r"(?i:" + _EMS_OPEN + r")|\*\*\* Fatal System Error:|^\s*(?:\*\*\*\s*)?STOP:\s*(?:0[xX])?[0-9A-Fa-f]"
    r"|^\s*Stop code:\s*\S|^\s*BugCheck [0-9A-Fa-f]+, \{|panic\s+hyper-v:|HV crash parameters:")

_PARAM_LINE_RE = re.compile(r"^\s*\((?P<body>[^)]*)(?P<close>\))?")
_MODULE_LINE_RE = re.compile(
    r"^\s*\*\*\*\s+(?P<module>[\w.$~-]+\.(?:sys|dll|exe))\s+-\s+Address\s+(?P<addr>" + _HEX + r")"
    r"(?:\s+base at\s+(?P<base>" + _HEX + r"))?", re.I)
_WHAT_FAILED_RE = re.compile(r"^\s*What failed:\s*(?P<module>\S+)", re.I)
_CAUSED_BY_RE = re.compile(
    r"^\s*Probably caused by\s*:\s*(?P<module>[^\s(]+)(?:\s*\(\s*(?P<sym>[^)\s]+)\s*\))?")
_IMAGE_NAME_RE = re.compile(r"^\s*IMAGE_NAME:\s*(?P<module>\S+)")
_SYMBOL_NAME_RE = re.compile(r"^\s*SYMBOL_NAME:\s*(?P<sym>\S+)")
_ANALYZE_HEADER_RE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]{4,}) \((?P<code>[0-9a-fA-F]+)\)\s*$")
_ANALYZE_ARG_RE = re.compile(r"^\s*Arg(?P<n>[1-4]):\s*(?P<value>[0-9a-fA-F`]+)\b")
_BUGCHECK_CODE_RE = re.compile(r"^\s*BUGCHECK_CODE:\s*(?P<code>[0-9a-fA-F]+)\s*$")
_BUGCHECK_P_RE = re.compile(r"^\s*BUGCHECK_P(?P<n>[1-4]):\s*(?P<value>[0-9a-fA-F`]+)\s*$")
_NAME_LINE_RE = re.compile(r"^\s*[A-Z][A-Z0-9]+(?:_[A-Z0-9]+)+\s*$")
# Text that belongs to a bugcheck report but names nothing: the STOP screen's prose, the
# debugger's messages, the EMS record's closing tag.
_FILLER_RE = re.compile(
    r"^\s*(?:Driver at fault:|<\s*/?\s*BP\s*>|A problem has been detected and Windows has been shut down"
    r"|Technical information:|Beginning dump of physical memory|Collecting data for crash dump"
    r"|Initializing disk for crash dump|Dumping physical memory to disk|Physical memory dump complete"
    r"|Contact your system administrator|If this is the first time you've seen this|"
    r"Break instruction exception|A fatal system error has occurred|Debugger entered on first try"
    r"|For analysis of this file|Use !analyze -v|Bugcheck Analysis|Arguments:|\*{5,}|\*\s+\*"
    r"|nt!DbgBreakPoint|KDTARGET:|Your PC ran into a problem|For more information about this issue"
    r"|If you call a support person|\d{1,3}% complete|Implicit thread is now|\.\s*$)",
    re.I)
# Where a guest ends its crash text (the classic STOP screen's last lines).
CRASH_END_RE = re.compile(r"Physical memory dump complete|Contact your system administrator or technical support group")

# Properties of the EMS record.
_PROPERTY_RE = re.compile(
    r"<\s*PROPERTY\s+NAME\s*=\s*\"(?P<name>[^\"]*)\"[^>]*>\s*<\s*VALUE\s*>(?P<value>.*?)<\s*/\s*VALUE\s*>",
    re.S | re.I)
_STOPCODE_CUT_RE = re.compile(r"NAME\s*=\s*\"STOPCODE\"", re.I)
_PARAM_PROPERTY_RE = re.compile(r"^(?:(?:BUGCHECK)?PARAM(?:ETER)?|P|ARG)(?P<n>[1-4])$", re.I)

# Channels, in the order their values are trusted.
HYPERV, QEMU_HV, KD, ANALYZE, STOP_SCREEN, EMS = "hyperv", "qemu-hv", "kd", "analyze", "stop-screen", "ems"
_PRIORITY = (HYPERV, QEMU_HV, KD, ANALYZE, STOP_SCREEN, EMS)

TRUNCATED_EMS = "truncated: the EMS BLUESCREEN record ended before </INSTANCE>"
TOO_LONG = "report longer than {n} lines; cut there"
NO_CODE = "no stop code: the record that opened the report was cut or garbled before it"


def is_crash_start(line: str) -> bool:
    """True when this console line starts a Windows bugcheck report (one regex search)."""
    return _START_RE.search(clean_line(line)) is not None


def format_param(value: int) -> str:
    """A parameter (or address) as the reports spell it: 0x + 16 lower-case hex digits."""
    return f"0x{value:016x}"


def bugcheck_title(code: int | None, module: str | None) -> str:
    """`NAME (0xNN) in module`, `NAME (0xNN)`, `BUGCHECK 0xNN`, or `BUGCHECK (stop code unknown)`."""
    if code is None:
        base = "BUGCHECK (stop code unknown)"
    else:
        entry = lookup(code)
        base = f"{entry.name} ({entry.hex})" if entry else f"BUGCHECK 0x{code:X}"
    return sanitize_title(f"{base} in {module}" if module else base)


# --- values -----------------------------------------------------------------------

def _hex(token: str) -> int | None:
    token = token.strip().replace("`", "")
    if re.fullmatch(r"(?:0[xX])?[0-9A-Fa-f]{1,16}", token) is None:
        return None
    return int(token, 16)


def _param_list(body: str, closed: bool, what: str) -> tuple[list[int], list[str]]:
    """Parameters from `p1,p2,p3,p4` (commas, optional blanks, optional 0x)."""
    problems: list[str] = []
    tokens = [t for t in body.replace(" ", ",").split(",") if t.strip()]
    values: list[int] = []
    for token in tokens[:4]:
        value = _hex(token)
        if value is None:
            problems.append(f"garbled {what} parameter {token.strip()!r}")
            break
        values.append(value)
    if not problems and not closed:
        problems.append(f"truncated: the {what} parameter list was cut")
        values = values[:-1]  # the last value may be cut short
    elif not problems and len(values) < 4:
        problems.append(f"truncated: the {what} gave {len(values)} of 4 parameters")
    return values, problems


@dataclass
class _Evidence:
    channel: str
    code: int | None = None  # raw, as printed (before normalize_code)
    params: list[int] = field(default_factory=list)
    gave_params: bool = False  # this channel carries parameters (even if they were cut)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems and self.code is not None and (not self.gave_params or len(self.params) == 4)


def _start_evidence(text: str) -> _Evidence | None:
    """The evidence a single-line crash start gives (None for the EMS record, which
    spans lines, and for lines that start nothing)."""
    if match := _KD_FATAL_RE.search(text):
        ev = _Evidence(KD, code=int(match["code"], 16), gave_params=True)
        rest = match["rest"]
        if plist := _PARAM_LINE_RE.match(rest):
            ev.params, ev.problems = _param_list(plist["body"], plist["close"] is not None, "debugger")
        return ev
    if match := _HV_LIBVIRT_RE.search(text):
        return _hyperv_args(HYPERV, match["args"], quoted_form=True)
    if match := _HV_QEMU_RE.search(text):
        ev = _hyperv_args(QEMU_HV, match["args"].replace(" ", ","), quoted_form=False)
        if match["close"] is None and not ev.problems:
            ev.problems.append("truncated: QEMU's HV crash parameters line was cut")
        return ev
    if match := _STOP_RE.match(text):
        ev = _Evidence(STOP_SCREEN, code=int(match["code"], 16))
        if plist := _PARAM_LINE_RE.match(match["rest"]):
            ev.gave_params = True
            ev.params, ev.problems = _param_list(plist["body"], plist["close"] is not None, "STOP screen")
        return ev
    if match := _STOP_CODE_RE.match(text):
        what = match["what"]
        entry = by_name(what)
        if entry is not None:
            return _Evidence(STOP_SCREEN, code=entry.code)
        value = _hex(what)
        if value is not None:
            return _Evidence(STOP_SCREEN, code=value)
        return _Evidence(STOP_SCREEN, problems=[f"unknown stop code name {what!r}"])
    if match := _BUGCHECK_SUMMARY_RE.match(text):
        ev = _Evidence(ANALYZE, code=int(match["code"], 16), gave_params=True)
        body, brace, _ = match["rest"].partition("}")
        ev.params, ev.problems = _param_list(body, bool(brace), "debugger summary")
        return ev
    return None


def _hyperv_args(channel: str, args: str, quoted_form: bool) -> _Evidence:
    """arg1..arg5 of a Hyper-V panic: `arg1='0x50', arg2='0x...'` (libvirt, also unquoted)
    or `0x50,0x...` (QEMU)."""
    ev = _Evidence(channel, gave_params=True)
    values: dict[int, int] = {}
    if quoted_form:
        for match in re.finditer(r"arg(?P<n>\d+)\s*=\s*(?P<q>['\"]?)(?P<value>[^'\",\s]*)(?P<end>['\"]?)", args):
            n = int(match["n"])
            value = _hex(match["value"])
            cut = match["q"] != match["end"] or (not match["q"] and match.end() == len(args) and n < 5)
            if value is None or cut:
                ev.problems.append(f"{'truncated' if cut else 'garbled'} Hyper-V arg{n} {match['value']!r}")
                continue
            values[n] = value
    else:
        for n, token in enumerate([t for t in args.split(",") if t.strip()], start=1):
            value = _hex(token)
            if value is None:
                ev.problems.append(f"garbled Hyper-V arg{n} {token.strip()!r}")
                continue
            values[n] = value
    if 1 in values:
        ev.code = values[1]
        if values[1] > 0xFFFFFFFF:
            ev.problems.append(f"Hyper-V arg1 0x{values[1]:x} is wider than a 32-bit STOP code")
    missing = [n for n in range(1, 6) if n not in values]
    if missing and not ev.problems:
        ev.problems.append("truncated: the Hyper-V panic line lacks " + ", ".join(f"arg{n}" for n in missing))
    for n in range(2, 6):  # the parameters up to the first one missing
        if n not in values:
            break
        ev.params.append(values[n])
    return ev


def _ems_evidence(record: str, closed: bool) -> _Evidence:
    """The STOP code (and parameters, if the record has them) of one EMS BLUESCREEN record."""
    ev = _Evidence(EMS)
    params: dict[int, int] = {}
    for prop in _PROPERTY_RE.finditer(record):
        name = prop["name"].strip()
        raw = prop["value"].strip()
        value_text = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
        if name.upper() == "STOPCODE":
            value = _hex(value_text) if value_text.lower().startswith("0x") else None
            if value is None:
                ev.problems.append(f"garbled EMS STOPCODE value {raw!r}")
            else:
                ev.code = value
        elif number := _PARAM_PROPERTY_RE.match(name):
            ev.gave_params = True
            value = _hex(value_text)
            if value is None:
                ev.problems.append(f"garbled EMS {name} value {raw!r}")
            else:
                params[int(number["n"])] = value
    if ev.code is None and not ev.problems and _STOPCODE_CUT_RE.search(record):
        ev.problems.append("truncated: the EMS record was cut inside its STOPCODE property")
    if ev.gave_params:
        ev.params = [params[n] for n in range(1, 5) if n in params]
        if len(ev.params) < 4 and not ev.problems:
            ev.problems.append(f"the EMS record gave {len(ev.params)} of 4 parameters")
    if not closed:
        ev.problems.append(TRUNCATED_EMS)
    return ev


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


# --- the libvirt domain log ---------------------------------------------------------

def parse_domain_log(text: str) -> list[CrashReport]:
    """One report per Hyper-V panic in a libvirt domain log (/var/log/libvirt/qemu/<dom>.log),
    in order.  libvirt's `panic hyper-v: arg1=...` line and QEMU's `HV crash parameters:
    (...)` line for the same crash (same five values, no other panic between) make one."""
    reports: list[CrashReport] = []
    previous: tuple[str, tuple[int, ...]] | None = None
    for lineno, line in enumerate(text.split("\n"), start=1):
        clean = clean_line(line)
        if not (_HV_LIBVIRT_RE.search(clean) or _HV_QEMU_RE.search(clean)):
            continue
        ev = _start_evidence(clean)
        if ev is None:
            continue
        key = (ev.channel, tuple([ev.code or 0, *ev.params]))
        if previous is not None and previous[0] != key[0] and previous[1] == key[1] and not ev.problems:
            last = reports[-1]
            reports[-1] = replace(last, text=f"{last.text}\n{clean}", last_line=lineno)
            previous = None
            continue
        pending = _Pending()
        pending.add(lineno, clean)
        pending.add_evidence(ev)
        reports.append(build_report(pending))
        previous = key
    return reports


# --- fusion -------------------------------------------------------------------------

def _ints(params: list[str]) -> list[int]:
    return [int(p, 16) for p in params]


def merge_reports(text_report: CrashReport, hyperv_report: CrashReport) -> CrashReport:
    """One report from a console report and the Hyper-V report of the same crash: the
    Hyper-V STOP code and parameters (exact, from the crash MSRs) when it has them, the
    console's module, function and text."""
    hv_ok = hyperv_report.stop_code is not None and len(hyperv_report.parameters) == 4 \
        and not hyperv_report.corrupted
    code = hyperv_report.stop_code if hyperv_report.stop_code is not None else text_report.stop_code
    params_text = hyperv_report.parameters if len(hyperv_report.parameters) == 4 else text_report.parameters
    params = _ints(params_text)
    address = address_parameter(code, params) if code is not None else None
    ip = ip_parameter(code, params) if code is not None else None
    entry = lookup(code) if code is not None else None
    corrupted = text_report.corrupted and not hv_ok
    reasons = [r for r in (text_report.corrupted_reason, hyperv_report.corrupted_reason) if r]
    return replace(
        text_report,
        title=bugcheck_title(code, text_report.module),
        text=f"{text_report.text}\n{hyperv_report.text}",
        stop_code=code,
        stop_name=entry.name if entry else None,
        parameters=list(params_text),
        address=format_param(address) if address is not None else text_report.address,
        ip=format_param(ip) if ip is not None else text_report.ip,
        corrupted=corrupted,
        corrupted_reason="; ".join(reasons) if corrupted else None,
    )


def fuse_reports(console: list[CrashReport], hyperv: list[CrashReport]) -> tuple[list[CrashReport], list[int]]:
    """Fuse the Hyper-V reports into the console reports of the same crashes.

    Walks both lists in order: each Hyper-V report merges with the next console report
    not yet merged whose STOP code is the same (or unknown, when the console record was
    cut before its code).  Returns the console list with the merged reports in place,
    followed by the Hyper-V reports that matched none, and the indices (into the
    returned list) of the console reports that were merged."""
    fused = list(console)
    merged: list[int] = []
    unmatched: list[CrashReport] = []
    position = 0
    for hv in hyperv:
        for index in range(position, len(fused)):
            candidate = fused[index]
            if candidate.stop_code is None or hv.stop_code is None or candidate.stop_code == hv.stop_code:
                fused[index] = merge_reports(candidate, hv)
                merged.append(index)
                position = index + 1
                break
        else:
            unmatched.append(hv)
    return fused + unmatched, merged
