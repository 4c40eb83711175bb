"""The named outcome of a boot (or of a stretch of a machine's life)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..crash.report import CrashReport

VerdictName = Literal["healthy", "content-rejected", "crashed", "boot-loop", "hang", "infra-error"]
VERDICTS: tuple[VerdictName, ...] = ("healthy", "content-rejected", "crashed", "boot-loop", "hang",
                                     "infra-error")


@dataclass
class BootSummary:
    index: int
    started_s: float
    crashed: bool
    complete: bool
    sensor: str | None  # "loaded", "skipped" or None
    crash_title: str | None
    rejected: list[dict[str, str]]
    loaded: list[str]
    crashed_event: bool = False
    error: str | None = None
    recovery_rc: int | None = None
    opened_by: str = "start"  # what opened the boot: start, banner, firmware (Windows), crash (Windows)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Verdict:
    verdict: VerdictName
    reason: str
    boots: int  # boots seen in the window judged
    crashing_boots: int
    elapsed_s: float
    crash: CrashReport | None = None  # the first crash of the window
    crashes: list[CrashReport] = field(default_factory=list)
    findings: list[CrashReport] = field(default_factory=list)  # non-fatal reports: the machine ran on
    boot_log: list[BootSummary] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)

    @property
    def crash_title(self) -> str | None:
        return self.crash.title if self.crash else None

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict, "reason": self.reason, "boots": self.boots,
            "crashing_boots": self.crashing_boots, "elapsed_s": round(self.elapsed_s, 3),
            "crash": self.crash.to_json() if self.crash else None,
            "crashes": [c.to_json() for c in self.crashes],
            "findings": [f.to_json() for f in self.findings],
            "boot_log": [b.to_json() for b in self.boot_log],
            "events": self.events,
        }

    def one_line(self) -> str:
        crash = f", crash: {self.crash.title}" if self.crash else ""
        return f"{self.verdict} after {self.boots} boot(s){crash} ({self.reason})"
