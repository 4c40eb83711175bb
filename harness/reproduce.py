"""`harness reproduce FILE`: boot a fresh VM with that content and name what happens."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .artifacts import default_root, new_run_id, test_dir, write_atomic
from .config import Profile
from .content.files import read_content_file
from .content.format import FILE_NAME, file_name
from .errors import InfraError
from .guest.linux_ref import build_reference_guest
from .monitor.verdict import Verdict
from .vm.machine import Machine, MachineSpec

Progress = Callable[[str], None]


def guest_file_name(path: Path) -> str:
    """The name the sensor will see: the file's own when it is a channel file name (a
    C-00000292-... file is then ignored by the channel-291 sensor, as it would be on a
    real machine), else the first sequence of channel 291."""
    return path.name if FILE_NAME.match(path.name) else file_name(291, 0, 1)


@dataclass
class Reproduction:
    verdict: Verdict
    artifacts: Path
    content_name: str
    sensor: str
    profile: str
    rerun: str
    attempts: int

    def to_json(self) -> dict[str, Any]:
        v = self.verdict
        crash = None
        if v.crash is not None:
            crash = {**v.crash.to_json()}
        return {"verdict": v.verdict, "reason": v.reason, "boots": v.boots, "crashing_boots": v.crashing_boots,
                "crash": crash, "artifacts": str(self.artifacts), "serial_log": str(self.artifacts / "serial.log"),
                "content_name": self.content_name, "sensor": self.sensor, "profile": self.profile,
                "elapsed_s": round(v.elapsed_s, 3), "attempts": self.attempts, "rerun": self.rerun}


def reproduce(content: Path, profile: Profile, sensor: str | None = None, artifacts_root: Path | None = None,
              keep: bool = False, progress: Progress | None = None) -> Reproduction:
    """Boot a fresh machine with `content`; an infrastructure failure is retried once."""
    say = progress or (lambda msg: print(f"harness: {msg}", file=sys.stderr, flush=True))
    data = read_content_file(content)
    name = guest_file_name(content)
    guest = build_reference_guest(progress=lambda msg: say(msg))
    run_id = new_run_id()
    build = sensor or profile.sensor
    rerun = f"harness reproduce {content} --profile {profile.name} --sensor {build}"
    for attempt in (1, 2):
        directory = test_dir(artifacts_root or default_root(), run_id, f"reproduce-{attempt}")
        write_atomic(directory / "repro.txt", rerun + "\n")
        machine = Machine(MachineSpec(profile=profile, guest=guest, artifacts=directory, run_id=run_id,
                                      test_id=f"reproduce {content.name}", slot=f"r{attempt}", sensor=build),
                          progress=say)
        try:
            machine.install_content({name: data})
            machine.boot()
            verdict = machine.wait_verdict()
        except InfraError:
            if attempt == 2:
                raise
            say(f"infrastructure failure, retrying once (artifacts: {directory})")
            continue
        finally:
            machine.close(keep=keep)
        if verdict.verdict != "infra-error" or attempt == 2:
            return Reproduction(verdict, directory, name, build, profile.name, rerun, attempt)
        say(f"infra-error ({verdict.reason}), retrying once (artifacts: {directory})")
    raise AssertionError("unreachable")
