"""From the lines of one report to a `CrashReport`: title, guilty function, fields.

The title is the kind's template with `{f}` the guilty frame (`locate.py`) and
the other fields read from the opening line or the body, then normalised
(`report.normalize_title`: no numbers, no addresses).

Frames are read only from the report's own lines: those of the task or CPU that
printed its head (caller ids), or, without caller ids, the lines up to where a
second report begins.  A title that needs a function those lines do not show
stops before ` in {f}` and the report is `corrupted` (NO_FUNCTION) instead of
naming a frame of someone else.  A report whose stack is missing, cut short, or
has other output where its frames should be is `corrupted` too, the reason in
`corrupted_reason` (`interleaved`).
"""

from __future__ import annotations

import re
import string

from ..report import CrashReport, normalize_title
from .frames import STACK_START_RE, Frame, frames_in
from .kind import Kind
from .locate import guilty_frame

NO_FUNCTION = "no faulting function: no kernel RIP line and no usable stack frame"
NO_STACK = "no stack trace in the report"
STACK_MISSED = "call trace is missed: the report ends right after its stack header"
NO_FRAMES = "no frames after a stack trace header: other output is mixed in"
FAULT_INJECTION = "fault injection frames are mixed into the report"
NO_ACCESS_LINE = "the KASAN report has no access line"

_FUNC = r"(?P<func>[A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[(?P<mod>[\w-]+)\])?"
_RIP_RE = re.compile(r"^RIP: (?P<cs>[0-9a-f]{4}):(?P<value>.*)$")
_RIP_FUNC_RE = re.compile(_FUNC)
_MODULE_SUFFIX_RE = re.compile(r"\s*\[[\w-]+\]\s*$")
_USER_CS = {"0033", "0023", "002b"}
_FRAME_RE = re.compile(r"^\s+(?:\[<[0-9a-f]+>\] )?(?P<q>\? )?" + _FUNC)
_CALL_TRACE_RE = re.compile(r"^\s*Call Trace:")
_TRACE_STOP_RE = re.compile(
    r"^(?:\s*</TASK>|Call Trace:|---\[ end |Kernel panic|Kernel Offset|Modules linked in)")
_CR2_RE = re.compile(r"^CR2: (?P<addr>[0-9a-fx]+)")
_KASAN_ACCESS_RE = re.compile(r"^(?:Read|Write) of size \d+ at addr (?P<addr>[0-9a-fx]+)")


def call_trace(bodies: list[str]) -> list[str]:
    """The functions of the first `Call Trace:` block, `?` guesses left out, as printed
    (`foo.isra.0` as `foo`)."""
    names: list[str] = []
    inside = False
    for body in bodies:
        if not inside:
            inside = _CALL_TRACE_RE.match(body) is not None
            continue
        if _TRACE_STOP_RE.match(body):
            if names or not _CALL_TRACE_RE.match(body):
                break
            continue  # a second "Call Trace:" header before any frame
        match = _FRAME_RE.match(body)
        if match and not match.group("q"):
            names.append(match.group("func").split(".", 1)[0])
    return names


def kernel_ip(bodies: list[str]) -> str | None:
    """The first kernel-mode RIP line's value (`0010:f+0x1/0x2`), module suffix removed."""
    for body in bodies:
        match = _RIP_RE.match(body)
        if match is None or match.group("cs") in _USER_CS:
            continue
        value = " ".join(match.group("value").split())
        return f"{match.group('cs')}:{_MODULE_SUFFIX_RE.sub('', value)}"
    return None


def _address(kind: str, head_fields: dict[str, str], bodies: list[str]) -> str | None:
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


_FAULT_INJECTION_RE = re.compile(r"^\s*(?:\[<?(?:0x)?[0-9a-f]+>?\]\s+)?should_fail(?:slab)?(?:\.[\w.]+)?\+0x")
# Kinds whose guilty frame is read from a stack: their report must show one, whole.
_NO_STACK_LOCATES = {"none", "head", "body", "at", "pc", "frames", "head-frames"}


_QUESTIONABLE_RE = re.compile(r"^\s*(?:\[<?(?:0x)?[0-9a-f]+>?\]\s+)?\?\s")


def interleaved(kind: Kind, own: list[str]) -> str | None:
    """Why the report's stack cannot be trusted (other text mixed in, or missing), or None.
    `? f+0x..` guesses are no frames and take no place; a repeated header is one."""
    if kind.locate in _NO_STACK_LOCATES:
        return None
    own = [line for line in own if not _QUESTIONABLE_RE.match(line)]
    own = [line for i, line in enumerate(own)
           if not (i + 1 < len(own) and STACK_START_RE.search(line) and own[i + 1].strip() == line.strip())]
    headers: list[int] = []
    kinds_seen: set[str] = set()
    for i, line in enumerate(own):
        match = STACK_START_RE.search(line)
        if match:
            headers.append(i)
            # Only the first stack of each sort is checked: later ones are other tasks' dumps.
            kind_of_header = re.sub(r"[^A-Za-z]", "", match.group(0)).lower()
            if kind_of_header in kinds_seen:
                headers.pop()
            kinds_seen.add(kind_of_header)
    for index in headers:
        if _FAULT_INJECTION_RE.match(own[index]):
            break
        following = own[index + 1:index + 16]
        if len(following) < 3:
            return STACK_MISSED
        frames_follow = False
        for line in following:
            if STACK_START_RE.search(line):
                break
            if frames_in(line) or "(stack is not available)" in line:
                frames_follow = True
                break
        if not frames_follow:
            return NO_FRAMES
    if any(_FAULT_INJECTION_RE.match(line) for line in own):
        return FAULT_INJECTION
    if not headers:
        return NO_STACK
    return None


def _body_fields(kind: Kind, bodies: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, pattern in kind.body_fields:
        for body in bodies:
            match = pattern.search(body)
            if match:
                found[name] = match.group(1)
                break
    return found


def _fill(template: str, fields: dict[str, str]) -> tuple[str, bool]:
    """(the title, whether it needed a function it did not get)."""
    missing_function = False
    out: list[str] = []
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        value = fields.get(name)
        if value is not None:
            out.append(value)
        elif name == "f":
            missing_function = True
            if out[-1].endswith(" in "):
                out[-1] = out[-1][:-len(" in ")]
            break  # nothing after a missing function makes sense ("X in {f}/usb_submit_urb")
    title = " ".join("".join(out).split())
    return _MODULE_SUFFIX_RE.sub("", title), missing_function


def build_report(kind: Kind, head: re.Match[str], lines: list[tuple[int, str]], own: list[str], panic: bool,
                 corrupted_reason: str | None = None) -> CrashReport:
    """One CrashReport from a report's lines (`own`: the bodies printed by the report's
    own task or CPU, which are what the guilty frame is read from)."""
    bodies = [body for _, body in lines]
    head_fields = {name: value for name, value in head.groupdict().items() if value is not None}
    fields = dict(head_fields)
    fields.update(_body_fields(kind, own))
    chosen, _frames = guilty_frame(kind, head, own)
    named_by_head = kind.name == "kasan" and any(name == "rw" for name, _ in kind.body_fields) \
        and "rw" not in fields and bool(fields.get("hf"))
    if named_by_head:
        # No access line (cut, or the old format): the function the head names, as it names it.
        chosen = Frame(fields["hf"])
        corrupted_reason = corrupted_reason or NO_ACCESS_LINE
    broken = None if named_by_head else interleaved(kind, own)
    if broken is not None and corrupted_reason is None:
        # Flagged, as syzkaller flags it; the frame stays: it was read from the report's own
        # lines (up to a second report, or of its own task), so it is not a random one.
        corrupted_reason = broken
    if chosen is None and "f" in fields:
        chosen = Frame(fields["f"])
    needs_function = "{f}" in kind.title
    if chosen is None and needs_function and kind.name == "warning" and fields.get("hf"):
        chosen = Frame(fields["hf"])  # a WARNING cut before its dump still names the function it is in
    if chosen is not None:
        fields["f"] = chosen.function
    title, missing_function = _fill(kind.title, fields)
    if corrupted_reason is None and kind.corrupted:
        corrupted_reason = kind.corrupted
    if corrupted_reason is None and missing_function:
        corrupted_reason = NO_FUNCTION
    if chosen is None and not needs_function:
        # A title without a function (a panic's reason): the first real frame still says where.
        fallback = Kind("", kind.head, "", locate="trace")
        chosen, _ = guilty_frame(fallback, head, own)
    return CrashReport(
        title=normalize_title(title),
        kind=kind.name,
        text="\n".join(bodies),
        first_line=lines[0][0],
        last_line=lines[-1][0],
        function=chosen.function if chosen else None,
        module=chosen.module if chosen else None,
        ip=kernel_ip(bodies),
        address=_address(kind.name, head_fields, bodies),
        call_trace=call_trace(bodies),
        panic=panic,
        fatal=kind.fatal or panic,
        corrupted=corrupted_reason is not None,
        corrupted_reason=corrupted_reason,
    )
