"""What the host says a file will do before a machine is asked: the C host build of the
sensor's interpreter (`harness content check`), and the built harnessflt.sys under the kernel
emulator (`harness content check --target sys`) where that image is built.

An outcome maps to the verdict a boot should give (harness/content/fixture_set.py, the
fixture table): loaded -> healthy, rejected -> content-rejected, crash -> boot-loop (the
sample sensor loads at every boot, so a crash repeats), and a host timeout/hang -> hang.
A vendor's driver has no host build: no prediction, so it cannot disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from ..content.fixture_set import VERDICT_OF_OUTCOME
from ..content.sensor import check_file
from ..errors import HarnessError

EXPECTED_VERDICT: dict[str, str] = {**VERDICT_OF_OUTCOME, "timeout": "hang", "hang": "hang"}
Progress = Callable[[str], None]


class Predictor:
    """Predictions for one sensor build; `sys_tier` adds the emulated .sys when it is built
    (one emulator made once, forked per file: about 0.1 s a file here)."""

    def __init__(self, build: str, vendor: bool, sys_tier: bool, progress: Progress | None = None) -> None:
        self.build = build
        self.vendor = vendor
        self.say = progress or (lambda msg: print(f"harness: {msg}", file=sys.stderr, flush=True))
        self.zygote: Any = None
        self.sys_note: str | None = None
        if vendor:
            self.sys_note = "a vendor driver: no host build to predict with"
        elif sys_tier:
            self._start_sys_tier()
        else:
            self.sys_note = "--sys-tier off"

    def _start_sys_tier(self) -> None:
        try:
            from ..sys_tier.check import driver_path  # the emulator loads only when used
            from ..sys_tier.zygote import Zygote

            self.zygote = Zygote(driver_path(self.build))
        except (HarnessError, ImportError) as exc:
            self.sys_note = f"the .sys tier is off: {exc}"
            self.say(self.sys_note)

    @property
    def tiers(self) -> list[str]:
        if self.vendor:
            return []
        return ["host", "sys"] if self.zygote is not None else ["host"]

    def predict(self, path: Path) -> dict[str, Any]:
        """{tier: {outcome, reason_code, function, expected}} for the file at `path`."""
        if self.vendor:
            return {}
        out: dict[str, Any] = {}
        host = check_file(path, self.build)
        out["host"] = _entry(host.outcome, host.reason_code, (host.crash or {}).get("function"),
                             (host.crash or {}).get("region"))
        if self.zygote is not None:
            from ..sys_tier.check import check_file_sys

            report = check_file_sys(path, self.build, zygote=self.zygote)
            crash = report.get("crash") or {}
            out["sys"] = _entry(report["outcome"], report.get("reason_code"), crash.get("function"),
                                crash.get("region"))
        return out


def _entry(outcome: str, reason_code: str | None, function: str | None, region: str | None) -> dict[str, Any]:
    return {"outcome": outcome, "reason_code": reason_code, "function": function, "region": region,
            "expected": EXPECTED_VERDICT.get(outcome)}


def disagreeing_tiers(prediction: dict[str, Any], verdict: str) -> list[str]:
    """The tiers whose expected verdict is not the machine's (an infra-error judges nothing)."""
    if verdict == "infra-error":
        return []
    return [tier for tier, p in prediction.items() if p["expected"] != verdict]
