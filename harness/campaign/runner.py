"""The campaign loop: N workers, one judge each, pulling the next unjudged file.

Planning (generating a file, writing it under <out>/files, the host predictions) runs under
one lock, so the emulator's fork happens from one thread at a time and files are planned in
index order; judging runs in parallel. Each judged file is appended to the log before the
next is taken. Ctrl-C (KeyboardInterrupt in the main thread) stops the workers: no new file
is taken, the judges are closed (their machines torn down), a file whose judgement was cut
short is not logged and is judged again by the rerun.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..content.files import write_content_file
from ..errors import InfraError
from ..monitor.verdict import Verdict
from .judge import FileJudge, verdict_serial_log
from .predict import Predictor, disagreeing_tiers
from .source import FileSource, PlannedFile
from .state import CampaignState

Progress = Callable[[str], None]
STOP_WAIT_S = 10.0  # how long Ctrl-C waits for a worker's judge to return before leaving it
# When a judge fails on infrastructure (after its own retry), the same file is judged again after
# these waits (a restarted libvirtd, a host under a burst of load); then it is logged as
# infra-error and a rerun judges it again. This many such files in a row stop the campaign.
INFRA_WAITS_S: tuple[float, ...] = (5.0, 20.0)
INFRA_STREAK_STOP = 3


class InfraStop(InfraError):
    """The machines failed file after file: the campaign stopped; a rerun continues."""


@dataclass
class Limits:
    files: int | None  # judge files 1..files
    minutes: float | None  # or judge until this much judging time has passed (over all sessions)


@dataclass
class RunResult:
    judged_now: int
    interrupted: bool
    infra_stop: str | None = None  # why the machines' failures stopped the campaign


class Campaign:
    def __init__(self, state: CampaignState, source: FileSource, predictor: Predictor,
                 make_judge: Callable[[], FileJudge], limits: Limits, workers: int, path: str,
                 progress: Progress) -> None:
        self.state = state
        self.source = source
        self.predictor = predictor
        self.make_judge = make_judge
        self.limits = limits
        self.workers = workers
        self.path = path
        self.say = progress
        self.stop = threading.Event()
        self._plan_lock = threading.Lock()
        self._judged = state.judged_indices()
        self._next = 1
        self._offset = max((float(e.get("elapsed_s", 0.0)) for e in state.entries()), default=0.0)
        self._started = time.monotonic()
        self._judged_now = 0
        self._errors: list[BaseException] = []
        self._infra_streak = 0

    def _elapsed(self) -> float:
        return self._offset + time.monotonic() - self._started

    def _take(self) -> tuple[PlannedFile, Path, dict[str, Any]] | None:
        """The next file to judge, planned and predicted; None when the campaign is done."""
        with self._plan_lock:
            while self._next in self._judged:
                self._next += 1
            index = self._next
            if self.stop.is_set():
                return None
            if self.limits.files is not None and index > self.limits.files:
                return None
            if self.limits.minutes is not None and self._elapsed() >= self.limits.minutes * 60:
                return None
            self._next += 1
            planned = self.source.plan(index)
            path = self.state.files / planned.stored
            path.parent.mkdir(parents=True, exist_ok=True)
            write_content_file(path, planned.data)
            return planned, path, self.predictor.predict(path)

    def _work(self, judge: FileJudge, worker: int) -> None:
        try:
            while (taken := self._take()) is not None:
                planned, path, prediction = taken
                artifacts = self.state.runs / f"{planned.index:04d}"
                t0 = time.monotonic()
                verdict = self._judge(judge, planned, artifacts)
                if self.stop.is_set():
                    return  # cut short by Ctrl-C (or another worker's stop): not judged, the rerun judges it
                self._log(planned, path, prediction, verdict, artifacts, time.monotonic() - t0, worker)
                self._count_infra(verdict)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises
            self._errors.append(exc)
            self.stop.set()

    def _judge(self, judge: FileJudge, planned: PlannedFile, artifacts: Path) -> Verdict:
        """The judge's verdict; an infrastructure failure is judged again after each INFRA_WAITS_S
        (an earlier attempt's run is set aside as NNNN.earlier-K)."""
        for wait in (*INFRA_WAITS_S, None):
            _set_aside(artifacts)
            t0 = time.monotonic()
            try:
                verdict = judge.judge(planned.name, planned.data, artifacts)
            except InfraError as exc:
                verdict = Verdict("infra-error", str(exc), 0, 0, time.monotonic() - t0)
            if verdict.verdict != "infra-error" or wait is None or self.stop.is_set():
                return verdict
            self.say(f"{planned.stored}: infrastructure failure ({verdict.reason}); judging it again in {wait:.0f} s")
            self.stop.wait(wait)
        raise AssertionError("unreachable")

    def _count_infra(self, verdict: Verdict) -> None:
        with self._plan_lock:
            self._infra_streak = self._infra_streak + 1 if verdict.verdict == "infra-error" else 0
            if self._infra_streak >= INFRA_STREAK_STOP:
                raise InfraStop(f"the machines failed {self._infra_streak} files in a row ({verdict.reason}); "
                                f"fix the host (harness doctor), then rerun with the same --out: those files are "
                                f"judged again: {self.state.out}")

    def _log(self, planned: PlannedFile, path: Path, prediction: dict[str, Any], verdict: Verdict,
             artifacts: Path, seconds: float, worker: int) -> None:
        crash = verdict.crash
        disagree = disagreeing_tiers(prediction, verdict.verdict)
        entry = {"index": planned.index, "name": planned.name, "file": str(path), "bytes": len(planned.data),
                 "sha256": planned.sha256, "origin": planned.origin, "prediction": prediction,
                 "verdict": verdict.verdict, "reason": verdict.reason, "boots": verdict.boots,
                 "crash": {"title": crash.title, "function": crash.function, "module": crash.module}
                 if crash else None,
                 "disagree": disagree, "artifacts": str(artifacts),
                 "serial_log": str(verdict_serial_log(artifacts)), "seconds": round(seconds, 3),
                 "elapsed_s": round(self._elapsed(), 3), "worker": worker, "path": self.path}
        self.state.append(entry)
        with self._plan_lock:
            self._judged_now += 1
            done = len(self._judged) + self._judged_now
        total = self.limits.files if self.limits.files is not None else "?"
        host = prediction.get("host", {}).get("expected", "nothing (no host build)")
        self.say(f"[{done}/{total}] {planned.stored}: {verdict.verdict}"
                 + (f" ({crash.title})" if crash else "") + f", predicted {host}, {seconds:.1f} s"
                 + (f"; DISAGREES with {', '.join(disagree)}" if disagree else ""))

    def run(self) -> RunResult:
        """Judge until the limit; a KeyboardInterrupt stops cleanly and is reported, not raised."""
        judges: list[FileJudge] = []
        threads: list[threading.Thread] = []
        interrupted = False
        if self.limits.files is not None and set(range(1, self.limits.files + 1)) <= self._judged:
            return RunResult(0, False)  # a finished campaign: no machine is needed
        try:
            for n in range(self.workers):
                judges.append(self.make_judge())
                thread = threading.Thread(target=self._work, args=(judges[-1], n), name=f"campaign-{n}", daemon=True)
                threads.append(thread)
                thread.start()
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(timeout=0.2)
        except KeyboardInterrupt:
            interrupted = True
            self.say("interrupted: closing the machines; the rerun with the same --out continues")
        finally:
            self.stop.set()
            for judge in judges:
                judge.close()
            deadline = time.monotonic() + STOP_WAIT_S
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        stops = [e for e in self._errors if isinstance(e, InfraStop)]
        if stops:
            return RunResult(self._judged_now, interrupted, infra_stop=str(stops[0]))
        if self._errors:
            raise self._errors[0]
        return RunResult(self._judged_now, interrupted)


def _set_aside(artifacts: Path) -> None:
    """A file judged again (after an interrupt or an infrastructure failure): the earlier run
    moves to NNNN.earlier-K (kept for a look, never mixed with the run that counts)."""
    if not artifacts.exists():
        return
    n = 1
    while (aside := artifacts.with_name(f"{artifacts.name}.earlier-{n}")).exists():
        n += 1
    artifacts.rename(aside)
