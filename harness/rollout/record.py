"""What a rollout records as it goes: every machine's state changes (the timeline), every
delivery with its time, and each machine's outcome. Written by many machine threads at once,
read by the progress line and the result; one lock guards it all.

Times are seconds since the rollout started (`started_at`, unix time, in the result).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["booting", "healthy", "updated", "crashed", "looping", "recovering", "recovered",
                "rolled-back", "infra-error"]
STATES: tuple[State, ...] = ("booting", "healthy", "updated", "crashed", "looping", "recovering", "recovered",
                             "rolled-back", "infra-error")
HIT_VERDICTS = ("crashed", "boot-loop", "hang")  # what counts in the blast radius (never infra-error)


@dataclass
class Delivery:
    t: float
    ok: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"t": round(self.t, 3), "ok": self.ok, "error": self.error}


@dataclass
class MachineRecord:
    name: str
    profile: str
    ring: int
    state: State = "booting"
    artifacts: str = ""
    serial_log: str = ""
    baseline_verdict: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    verdict: str | None = None  # after the update (the worst of the reload's and the bake boots')
    verdict_reason: str | None = None
    crash_title: str | None = None
    signal_t: float | None = None  # the first crash or rejection signal after the update
    rollback: str | None = None  # online | safe-mode | recovery-env | None
    recovery: dict[str, Any] | None = None
    final_verdict: str | None = None
    healthy_t: float | None = None  # when it was last judged healthy with its final content
    replaced: int = 0  # machines lost to infrastructure before the update and replaced
    host: str = ""  # the libvirt URI it ran on (a profile's uris: round robin)

    @property
    def delivered(self) -> bool:
        return any(d.ok for d in self.deliveries)

    @property
    def delivered_at(self) -> float | None:
        return next((d.t for d in self.deliveries if d.ok), None)

    @property
    def hit(self) -> bool:
        return self.verdict in HIT_VERDICTS


class RolloutLog:
    """The shared record: machine records, the timeline, the rollout's clock."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.lock = threading.RLock()
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self.machines: dict[str, MachineRecord] = {}
        self.timeline: list[dict[str, Any]] = []
        self.on_change = on_change or (lambda: None)

    def now(self) -> float:
        return time.monotonic() - self._t0

    def at(self, monotonic: float) -> float:
        """A time.monotonic() value on the rollout's clock."""
        return monotonic - self._t0

    def add(self, record: MachineRecord) -> None:
        with self.lock:
            self.machines[record.name] = record

    def state(self, name: str, state: State, detail: str = "", t: float | None = None) -> None:
        with self.lock:
            record = self.machines[name]
            record.state = state
            when = self.now() if t is None else t
            self.timeline.append({"machine": name, "t": round(when, 3), "state": state, "detail": detail})
        self.on_change()

    def sorted_timeline(self) -> list[dict[str, Any]]:
        with self.lock:
            return sorted(self.timeline, key=lambda e: e["t"])
