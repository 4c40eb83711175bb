"""The libvirt domain log's Hyper-V panics, and their fusion with the console's reports."""

from __future__ import annotations

from dataclasses import replace

from ..bugcheck_codes import address_parameter, ip_parameter, lookup
from ..report import CrashReport
from .evidence import _start_evidence
from .lines import _HV_LIBVIRT_RE, _HV_QEMU_RE, bugcheck_title, clean_line, format_param
from .parser import _Pending, build_report

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
