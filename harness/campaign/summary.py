"""The campaign's one JSON object (what `--json` prints and campaign.json holds), built by
streaming the log: counts and the disagreements, never every verdict at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..monitor.verdict import VERDICTS
from .crashes import CrashKeeper, group_crashes
from .state import CampaignState


def disagreement(entry: dict[str, Any]) -> dict[str, Any]:
    """One file where a host tier's prediction and the machine's verdict differ: both results."""
    return {"index": entry["index"], "file": entry["file"], "name": entry["name"], "origin": entry["origin"],
            "tiers": entry["disagree"], "predicted": entry["prediction"],
            "vm": {"verdict": entry["verdict"], "reason": entry["reason"], "crash": entry.get("crash")},
            "serial_log": entry.get("serial_log"), "artifacts": entry.get("artifacts")}


def summarize(state: CampaignState, keeper: CrashKeeper, planned: int | None, extra: dict[str, Any]) -> dict[str, Any]:
    files = 0
    verdicts = dict.fromkeys(VERDICTS, 0)
    disagreements: list[dict[str, Any]] = []
    for entry in state.final_entries():
        files += 1
        verdicts[entry["verdict"]] = verdicts.get(entry["verdict"], 0) + 1
        if entry.get("disagree"):
            disagreements.append(disagreement(entry))
    elapsed = max((float(e.get("elapsed_s", 0.0)) for e in state.entries()), default=0.0)
    crashes = [keeper.record(n, group) for n, group in enumerate(group_crashes(state.final_entries()), 1)]
    return {"files": files, "planned": planned,
            "files_per_min": round(files / (elapsed / 60.0), 2) if elapsed > 0 else None,
            "judging_s": round(elapsed, 1), "verdicts": verdicts, "unique_crashes": crashes,
            "disagreements": disagreements, "out": str(state.out), **extra}


def write_summary(summary: dict[str, Any], directory: Path) -> Path:
    from ..artifacts import write_json

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "campaign.json"
    write_json(path, summary)
    return path
