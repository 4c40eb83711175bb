"""`--measure-unstaged`: the unstaged push, measured instead of estimated. A second copy of the
fleet (same profiles, same counts) boots healthy with the baseline, then every machine gets the
update at once; the machines it crashes are the unstaged blast radius. The copy is torn down
afterwards (nothing is recovered: it exists only to be counted)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .node import Node, NodeContext
from .record import MachineRecord, RolloutLog

RunAll = Callable[[list[Node], Callable[[Node], Any]], None]  # the orchestrator's side-by-side runner


def measure_unstaged(fleet: list[Node], contexts: dict[str, NodeContext], run_dir: Path, stop: threading.Event,
                     run_all: RunAll, say: Callable[[str], None]) -> dict[str, Any]:
    log = RolloutLog()
    copies: list[Node] = []
    for node in fleet:
        ctx = dataclasses.replace(contexts[node.record.profile], log=log, run_dir=run_dir / "unstaged")
        record = MachineRecord(f"u-{node.name}", node.record.profile, 0)
        log.add(record)
        copies.append(Node(record, node.profile, ctx))
    say(f"measuring the unstaged push on a copy of the fleet ({len(copies)} machines)")
    try:
        run_all(copies, lambda n: n.start(stop))
        live = [n for n in copies if n.record.baseline_verdict == "healthy"]
        run_all(live, lambda n: n.deliver(lambda: None if stop.is_set() else log.now(),
                                               lambda *_: None) and n.judge())
    finally:
        for node in copies:
            node.close()
    profiles: dict[str, dict[str, int]] = {}
    for node in copies:
        entry = profiles.setdefault(node.record.profile, {"machines": 0, "judged": 0, "hit": 0})
        entry["machines"] += 1
        if node.record.delivered and node.record.verdict not in (None, "infra-error"):
            entry["judged"] += 1
            entry["hit"] += int(node.record.hit)
    return {"method": "measured", "blast_radius": sum(p["hit"] for p in profiles.values()), "profiles": profiles}
