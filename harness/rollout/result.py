"""The rollout's result: one JSON object (docs/rollout.md has the schema), printed by `--json`
and always written as rollout.json into the report directory, partial after Ctrl-C."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..artifacts import write_json
from ..errors import HarnessError
from ..report import render_rollout
from .orchestrator import Rollout
from .record import MachineRecord

SCHEMA = 1


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _path(path: str, report_dir: Path) -> str:
    """Relative to the report directory when inside it, else absolute."""
    if not path:
        return ""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(report_dir.resolve()))
    except ValueError:
        return str(absolute)


def _machine(record: MachineRecord, report_dir: Path) -> dict[str, Any]:
    return {
        "name": record.name, "profile": record.profile, "ring": record.ring,
        "delivered": record.delivered, "delivered_at": _r(record.delivered_at),
        "deliveries": [d.to_json() for d in record.deliveries],
        "verdict": record.verdict, "verdict_reason": record.verdict_reason,
        "crash_title": record.crash_title, "signal_t": _r(record.signal_t),
        "rollback": record.rollback, "recovery": record.recovery,
        "final_verdict": record.final_verdict, "healthy_t": _r(record.healthy_t),
        "replaced": record.replaced, "state": record.state, "host": record.host,
        "artifacts": _path(record.artifacts, report_dir), "serial_log": _path(record.serial_log, report_dir),
    }


def rollout_result(rollout: Rollout, report_dir: Path) -> dict[str, Any]:
    plan, state, log = rollout.plan, rollout.state, rollout.log
    with log.lock:
        records = list(log.machines.values())
    halt = state.halt
    blast, unstaged, unstaged_detail = rollout.blast()
    first = state.first_delivery_t
    healthy_times = [r.healthy_t for r in records if r.final_verdict == "healthy" and r.healthy_t is not None]
    all_healthy = bool(records) and all(r.final_verdict == "healthy" for r in records)
    to_healthy = None
    if all_healthy and first is not None and not state.interrupted:
        to_healthy = max(healthy_times) - first
    halted_ring = halt.ring if halt else None
    return {
        "schema": SCHEMA,
        "fleet": len(plan.machines), "profiles": dict(plan.counts), "rings": list(plan.rings),
        "halted": halt is not None, "halted_ring": halted_ring,
        "halt_reason": f"{halt.reason} on {halt.machine}: {halt.detail}" if halt else None,
        "halt_signal": None if halt is None else {
            "kind": halt.reason, "machine": halt.machine, "t": _r(halt.signal_t), "halted_t": _r(halt.halt_t),
            "latency_s": _r(max(0.0, halt.halt_t - halt.signal_t))},
        "blast_radius": blast, "unstaged_blast_radius": unstaged, "unstaged": unstaged_detail,
        "seconds_to_halt": _r(halt.halt_t - first) if halt and first is not None else None,
        "seconds_to_healthy_fleet": _r(to_healthy),
        "healthy_at_end": sum(1 for r in records if r.final_verdict == "healthy"),
        "infra_errors": sum(1 for r in records if r.final_verdict == "infra-error"),
        "failed_deliveries": sum(1 for r in records if r.deliveries and not r.delivered),
        "delivered": sum(1 for r in records if r.delivered),
        "delivered_past_halted_ring": 0 if halted_ring is None else sum(
            1 for r in records if r.delivered and r.ring > halted_ring),
        "first_delivery_t": _r(first),
        "interrupted": state.interrupted,
        "started_at": round(log.started_at, 3),
        "content": list(plan.content.update), "baseline": list(plan.content.baseline),
        "content_sources": dict(plan.content.sources),
        "options": {"bake_boots": plan.bake_boots, "bake_s": plan.bake_s, "halt_on": list(plan.halt_on),
                    "recover": plan.recover, "measure_unstaged": plan.measure_unstaged},
        "run_id": plan.run_id, "artifacts": str(plan.run_dir), "report_dir": str(report_dir),
        "machines": [_machine(r, report_dir) for r in sorted(records, key=lambda r: (r.ring, r.name))],
        "timeline": log.sorted_timeline(),
    }


def write_result(result: dict[str, Any], report_dir: Path, say: Callable[[str], None]) -> Path | None:
    """rollout.json into `report_dir`, then its HTML page beside it. Returns the page's path
    (None when the page failed: the JSON is the result, and the failure is said)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    write_json(report_dir / "rollout.json", result)
    try:
        return render_rollout(report_dir)
    except HarnessError as exc:
        say(f"the HTML report failed ({exc}); rollout.json is in {report_dir}")
        return None
