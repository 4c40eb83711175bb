"""What one channel's record says about a bugcheck: its STOP code, parameters, module."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..bugcheck_codes import by_name
from .lines import (
    ANALYZE, EMS, HYPERV, KD, QEMU_HV, STOP_SCREEN, TRUNCATED_EMS, _BUGCHECK_SUMMARY_RE, _HV_LIBVIRT_RE,
    _HV_QEMU_RE, _KD_FATAL_RE, _PARAM_LINE_RE, _PARAM_PROPERTY_RE, _PROPERTY_RE, _STOPCODE_CUT_RE, _STOP_CODE_RE,
    _STOP_RE, _hex, _param_list,
)


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
