"""Windows console lines: cleaning, the line classes of every channel, and the values they carry."""

from __future__ import annotations

import re

from ..bugcheck_codes import lookup
from ..report import sanitize_title

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
