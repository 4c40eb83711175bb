"""The judges of "does this file still crash the same way": the C host build and the VM.

The host oracle runs the sensor's real content interpreter (`harness content check`'s
checker) in a child process: milliseconds a run.  The VM oracle boots a fresh machine with
the file (`harness reproduce`'s path, a boot-loop threshold of one so a crash costs one
boot): seconds a run.  Both return a `Crash` (or None); `same_crash` compares one with the
target the minimiser keeps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Profile
from ..content.sensor import check_file
from ..crash.report import normalize_title
from ..errors import InfraError
from ..reproduce import reproduce

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Crash:
    """A crash as one oracle saw it.  The host has no title (it is not a kernel); it names the
    faulting function and the memory region (poisoned input slot, guard page...)."""

    source: str  # host | vm
    function: str | None
    title: str | None = None
    region: str | None = None
    reason: str = ""
    artifacts: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"source": self.source, "title": self.title, "function": self.function,
                "region": self.region, "reason": self.reason, "artifacts": self.artifacts}


def same_crash(seen: Crash | None, target: Crash) -> bool:
    """Same function, and the same title (normalised) or host region when both oracles give one."""
    if seen is None or seen.source != target.source or seen.function != target.function:
        return False
    if seen.source == "vm":
        return normalize_title(seen.title or "") == normalize_title(target.title or "")
    return seen.region == target.region


class HostOracle:
    """The `build` interpreter on this machine; candidates are written under `workdir`."""

    source = "host"

    def __init__(self, build: str, workdir: Path, name: str) -> None:
        self.build = build
        self.path = workdir / "host" / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.runs = 0

    def run(self, data: bytes) -> Crash | None:
        self.path.write_bytes(data)
        self.runs += 1
        result = check_file(self.path, self.build)
        if result.outcome == "timeout":
            raise InfraError(f"the {self.build} host build timed out on a candidate: {self.path}")
        if result.outcome != "crash" or not result.crash:
            return None
        return Crash("host", result.crash.get("function"), region=result.crash.get("region"),
                     reason=result.reason)


class VmOracle:
    """A fresh machine of `profile` running `build`, booted once per candidate."""

    source = "vm"

    def __init__(self, profile: Profile, build: str | None, workdir: Path, name: str,
                 artifacts_root: Path | None, progress: Progress) -> None:
        # One crashing boot is enough to name a crash; the boot loop is not what is minimised.
        self.profile = dataclasses.replace(profile, boot_loop_threshold=1)
        self.build = build
        self.path = workdir / "vm" / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.artifacts_root = artifacts_root
        self.say = progress
        self.runs = 0  # machines booted (an infrastructure retry is a machine of its own)
        self.boots = 0  # guest boots the monitor counted
        self.last_verdict = ""

    def run(self, data: bytes) -> Crash | None:
        self.path.write_bytes(data)
        result = reproduce(self.path, self.profile, sensor=self.build, artifacts_root=self.artifacts_root,
                           progress=self.say)
        self.runs += result.attempts
        self.boots += result.verdict.boots
        self.build = result.sensor
        verdict = result.verdict
        if verdict.verdict == "infra-error":
            raise InfraError(f"the VM run ended in infra-error ({verdict.reason}) (artifacts: {result.artifacts})")
        self.last_verdict = verdict.one_line()
        if verdict.verdict not in ("crashed", "boot-loop") or verdict.crash is None:
            return None
        c = verdict.crash
        return Crash("vm", c.function, title=c.title, reason=verdict.reason, artifacts=str(result.artifacts))
