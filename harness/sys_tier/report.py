"""One content file's verdict from an emulated boot, in the shape `harness content check
--json` prints for the host tier (outcome, reason, reason_code, stage, crash), plus what only
the real image can say: the bugcheck, the driver's console lines and the filter's registration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .memory import ALIAS_NOTE
from .runner import SysRun

_LOADED = re.compile(r"^harness_sensor: (?P<name>[^:]+): loaded \((?P<n>\d+) instances\)$")
_REJECTED = re.compile(r"^harness_sensor: (?P<name>[^:]+): rejected: (?P<text>.*) "
                       r"\[(?P<code>[a-z0-9-]+)\](?P<kept>; keeping last good content)?$")
_EVENT = re.compile(r"^harness_sensor: named-pipe event: (?P<n>\d+) instances evaluated, (?P<m>\d+) matched$")
_MARKER = re.compile(r"^HARNESS-SENSOR-LOADED build=(?P<build>\S+) files=(?P<files>\d+) "
                     r"loaded=(?P<loaded>\d+) rejected=(?P<rejected>\d+)$")


@dataclass(frozen=True)
class FileLine:
    outcome: str  # loaded | rejected
    text: str
    reason_code: str | None
    instances: int | None


def file_lines(console: list[str]) -> dict[str, FileLine]:
    """The driver's last word on each channel file it read."""
    out: dict[str, FileLine] = {}
    for line in console:
        if m := _LOADED.match(line):
            n = int(m["n"])
            out[m["name"]] = FileLine("loaded", f"{n} instances loaded", None, n)
        elif m := _REJECTED.match(line):
            out[m["name"]] = FileLine("rejected", m["text"], m["code"], None)
    return out


def verdict(run: SysRun, name: str, size: int, build: str) -> dict[str, Any]:
    """The report for content file `name` (its name in the content directory) of `size` bytes."""
    lines = file_lines(run.console)
    line = lines.get(name)
    events = [m for m in map(_EVENT.match, run.console) if m]
    marker = next((m for m in map(_MARKER.match, run.console) if m), None)
    report: dict[str, Any] = {"target": "sys", "build": build, "file": name, "size": size,
                              "reason_code": None, "offset": None, "crash": None}
    stop = run.stop
    if stop is not None and stop.kind == "bugcheck" and stop.bugcheck is not None:
        bc = stop.bugcheck
        stage = _stage(stop.step, line)
        region = run.region or "unmapped memory"
        crash: dict[str, Any] = {
            "bugcheck": f"{bc.code:#x}", "address": f"{bc.address:#x}" if bc.address is not None else None,
            "access": bc.access, "region": region, "function": stop.function, "location": stop.location,
            "module": run.sys_path.name, "ip": f"{stop.pc:#x}", "stage": stage, "callback": stop.step,
        }
        if run.reservation is not None:
            crash["reservation"] = run.reservation
            if region.startswith("guard page") and bc.address is not None:
                res = run.reservation
                data_start = int(res["base"], 16) + int(res["mapped"]) - size
                crash["buffer_offset"] = bc.address - data_start
        what = f"{bc.access} of {bc.address:#x} ({region})" if bc.address is not None else bc.reason
        report.update(outcome="crash", stage=stage, crash=crash,
                      reason=f"bugcheck {bc.code:#x} {bc.name}: {what} in {stop.function} during "
                             f"{stage} ({stop.step})")
    elif stop is not None:
        report.update(outcome="hang", stage=stop.step, hang={"step": stop.step, "function": stop.function,
                                                             "location": stop.location},
                      reason=f"no return from {stop.step} within the instruction/time budget: "
                             f"stopped in {stop.function} ({stop.location})")
    elif line is None:
        started = any(s.name == "DriverEntry" and s.status is not None and not s.status & 0x80000000
                      for s in run.steps)
        report.update(outcome="not-loaded" if started else "not-started", stage="load",
                      reason=("the driver never read the file" if started else
                              f"DriverEntry failed ({run.registration_error or 'status ' + _status(run)})"))
    elif line.outcome == "rejected":
        report.update(outcome="rejected", stage="load", reason=line.text, reason_code=line.reason_code)
    else:
        report.update(outcome="loaded", stage="evaluate", instances=line.instances)
        reason = f"{line.instances} instances loaded"
        if events:
            n, m = int(events[-1]["n"]), int(events[-1]["m"])
            reason += f"; named-pipe event: {n} evaluated, {m} matched"
            report["event"] = {"instances": n, "matched": m}
        report["reason"] = reason
    report.update(
        bugcheck=stop.bugcheck.to_json() if stop is not None and stop.bugcheck is not None else None,
        console=run.console,
        marker=marker.groupdict() if marker else None,
        steps=[{"step": s.name, "function": s.function,
                "status": None if s.status is None else f"{s.status:#x}", "seconds": round(s.seconds, 3),
                "calls": _distinct(s.calls)}
               for s in run.steps],
        filter={"registration": run.registration, "registration_error": run.registration_error,
                "volumes": run.instances},
        leaks=run.leaks,
        driver_status=run.driver_status,
        ports=run.ports,
        reload=run.reload,
        image="unloaded" if run.image_unloaded else "loaded",
        seconds=round(run.seconds, 3),
        note=ALIAS_NOTE,
    )
    return report


def _stage(step: str, line: FileLine | None) -> str:
    """load while the file had no verdict line yet, evaluate once it was loaded."""
    if step.startswith("pre-create"):
        return "evaluate"
    if "reinitialization" in step or step == "DriverEntry":
        return "evaluate" if line is not None and line.outcome == "loaded" else "load"
    return step


def _status(run: SysRun) -> str:
    entry = next((s for s in run.steps if s.name == "DriverEntry"), None)
    return f"{entry.status:#010x}" if entry and entry.status is not None else "unknown"


def _distinct(calls: list[str]) -> list[str]:
    """Kernel routines in the order first called (a loop's thousand calls listed once)."""
    return list(dict.fromkeys(calls))
