"""A rollout's `rollout.json` (written by `harness rollout --report DIR`), read and checked.

The object is the `--json` object of issue 13 plus what only the page needs: `started_at`
(unix time), `content` (file names), `timeline` (state changes, seconds since started_at) and,
per machine, `serial_log`, `crash_title` and `deliveries`. A partial report (a rollout
interrupted by Ctrl-C) may leave most fields null: only `machines` with their `name` and `ring`
are required.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fields import Fields, load_object, resolve

FIX = "write it with harness rollout --report DIR (docs/report.md lists the fields)"
TIMELINE_STATES = ("booting", "healthy", "updated", "crashed", "looping", "recovering", "recovered",
                   "rolled-back", "infra-error")
UNIX_EPOCH_FLOOR = 1e9  # a delivered_at above this is a unix time, not seconds since started_at


@dataclass(frozen=True)
class Change:
    machine: str
    t: float
    state: str
    detail: str


@dataclass(frozen=True)
class Delivery:
    t: float
    ok: bool
    error: str | None


@dataclass
class RolloutMachine:
    name: str
    profile: str
    ring: int
    delivered: bool
    delivered_at: float | None  # seconds since started_at
    verdict: str | None
    verdict_reason: str | None
    rollback: str | None  # how the content was withdrawn: online, safe-mode, recovery-env
    recovery: str | None  # "path: result" in words
    final_verdict: str | None
    serial_log: Path | None
    crash_title: str | None
    deliveries: list[Delivery]
    changes: list[Change] = field(default_factory=list)


@dataclass
class Rollout:
    path: Path
    fleet: int
    rings: list[int]
    halted: bool
    halted_ring: int | None
    halt_reason: str | None
    blast_radius: int | None
    unstaged_blast_radius: int | None
    unstaged_method: str | None  # estimated (from the rings' machines per profile) or measured
    seconds_to_halt: float | None
    halt_latency: float | None  # from the halting signal to the halt (halt_signal.latency_s)
    seconds_to_healthy_fleet: float | None
    healthy_at_end: int | None
    interrupted: bool
    started_at: float | None
    content: list[str]
    machines: list[RolloutMachine]
    timeline: list[Change]

    def first_delivery(self) -> float | None:
        times = [d.t for m in self.machines for d in m.deliveries]
        times += [m.delivered_at for m in self.machines if m.delivered_at is not None]
        return min(times) if times else None

    def end(self) -> float:
        """The last instant the page shows: the last event, or the healthy fleet if later."""
        times = [c.t for c in self.timeline] + [d.t for m in self.machines for d in m.deliveries]
        first = self.first_delivery() or 0.0
        for span in (self.seconds_to_halt, self.seconds_to_healthy_fleet):
            if span is not None:
                times.append(first + span)
        return max(times, default=0.0)


def _recovery_words(value: Any, where: Fields) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        words = ": ".join(str(value[k]) for k in ("path", "result") if value.get(k) is not None)
        reason = value.get("reason")
        return f"{words} ({reason})" if reason else (words or None)
    raise where.error("recovery", "an object with path and result, a string or null", value)


def load_rollout(report_dir: Path) -> Rollout:
    path = report_dir / "rollout.json"
    top = Fields(load_object(path, FIX), path, "", FIX)
    started_at = top.get("started_at", float)
    machines = []
    for m in top.objects("machines", required=True):
        delivered_at = m.get("delivered_at", float)
        if delivered_at is not None and delivered_at > UNIX_EPOCH_FLOOR and started_at is not None:
            delivered_at -= started_at
        deliveries = [Delivery(d.get("t", float, True), bool(d.get("ok", bool, True)), d.get("error", str))
                      for d in m.objects("deliveries")]
        machines.append(RolloutMachine(
            name=m.get("name", str, True), profile=m.get("profile", str) or "?", ring=m.get("ring", int, True),
            delivered=bool(m.get("delivered", bool)), delivered_at=delivered_at, verdict=m.get("verdict", str),
            verdict_reason=m.get("verdict_reason", str), rollback=m.get("rollback", str),
            recovery=_recovery_words(m.obj.get("recovery"), m), final_verdict=m.get("final_verdict", str),
            serial_log=resolve(report_dir, m.get("serial_log", str)), crash_title=m.get("crash_title", str),
            deliveries=deliveries))
    by_name = {m.name: m for m in machines}
    timeline = []
    for c in top.objects("timeline"):
        name, state = c.get("machine", str, True), c.get("state", str, True)
        if name not in by_name:
            raise c.error("machine", "the name of one of the machines", name)
        if state not in TIMELINE_STATES:
            raise c.error("state", "one of " + ", ".join(TIMELINE_STATES), state)
        change = Change(name, c.get("t", float, True), state, c.get("detail", str) or "")
        timeline.append(change)
        by_name[name].changes.append(change)
    timeline.sort(key=lambda ch: ch.t)
    for m in machines:
        m.changes.sort(key=lambda ch: ch.t)
    rings = top.get("rings", list) or []
    if not all(isinstance(r, int) and not isinstance(r, bool) for r in rings):
        raise top.error("rings", "a list of ring sizes (integers)", rings)
    content = top.get("content", list) or []
    unstaged = top.get("unstaged", dict)
    method = Fields(unstaged, path, "unstaged", FIX).get("method", str) if unstaged else None
    signal = top.get("halt_signal", dict)
    latency = Fields(signal, path, "halt_signal", FIX).get("latency_s", float) if signal else None
    return Rollout(
        path=path, fleet=top.get("fleet", int) or len(machines), rings=rings,
        halted=bool(top.get("halted", bool)), halted_ring=top.get("halted_ring", int),
        halt_reason=top.get("halt_reason", str), blast_radius=top.get("blast_radius", int),
        unstaged_blast_radius=top.get("unstaged_blast_radius", int), unstaged_method=method,
        seconds_to_halt=top.get("seconds_to_halt", float), halt_latency=latency,
        seconds_to_healthy_fleet=top.get("seconds_to_healthy_fleet", float),
        healthy_at_end=top.get("healthy_at_end", int), interrupted=bool(top.get("interrupted", bool)),
        started_at=started_at,
        content=[str(c) for c in content], machines=machines, timeline=timeline)
