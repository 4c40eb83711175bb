"""Crashes seen by a running machine's monitor, asked outside wait_verdict(): by a transport
or the guest agent while a command runs (a probe), and by the pytest plugin after a test.

Both wait on the machine's condition (woken by every console line and event) and, for a
crash still being reported, until the report is whole (the monitor's grace window).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..crash.report import CrashReport
from ..monitor.monitor import Monitor
from .transport import CrashProbe, event_only_report

Clock = Callable[[], float]


def crash_probe(cond: threading.Condition, monitor: Monitor, now: Clock) -> CrashProbe:
    """A probe: crashes that start from now on count (see transport.CrashProbe)."""
    with cond:
        since = now()

    def probe(seconds: float) -> CrashReport | None:
        with cond:
            deadline = now() + seconds
            while True:
                t = now()
                monitor.poll(t)
                crashed = [b for b in monitor.boots if b.crashed and b.crash_t is not None and b.crash_t >= since]
                if crashed:
                    boot = crashed[0]
                    if boot.report_done or boot.report_deadline is None:
                        return boot.report or event_only_report()
                    wake = boot.report_deadline  # the report is still arriving: let it finish
                elif t >= deadline:
                    return None
                else:
                    wake = deadline
                cond.wait(max(0.01, wake - t))

    return probe


def crash_titles(cond: threading.Condition, monitor: Monitor, now: Clock, grace_s: float,
                 running: Callable[[], bool]) -> list[str]:
    """The title of every crash the monitor saw, a report still arriving given its grace
    window (while the machine runs)."""
    with cond:
        while True:
            t = now()
            monitor.poll(t)
            pending = [b.report_deadline for b in monitor.boots
                       if b.crashed and not b.report_done and b.report_deadline is not None]
            if not pending or min(pending) <= t or not running():
                break
            cond.wait(min(min(pending) - t, grace_s) + 0.01)
        return [boot.report.title if boot.report else "crash (its report is incomplete)"
                for boot in monitor.boots if boot.crashed]
