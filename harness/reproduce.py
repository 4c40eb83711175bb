"""`harness reproduce FILE`: boot a fresh VM with that content and name what happens."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Callable

from .artifacts import default_root, new_run_id, test_dir, write_atomic
from .config import Profile
from .content.files import read_content_file
from .content.format import FILE_NAME, file_name
from .errors import InfraError, InputFileError
from .monitor.verdict import Verdict
from .recovery import RecoverableMachine
from .vm.machine import MachineSpec
from .vm.registry import family_plugin

Progress = Callable[[str], None]


def guest_file_name(path: Path, profile: Profile) -> str:
    """The name the driver will see. A vendor's driver: the file's own. The sample sensor: the
    file's own when it is a channel file name (a C-00000292-... file is then ignored by the
    channel-291 sensor, as it would be on a real machine), else the first sequence of
    channel 291."""
    if profile.driver is not None or FILE_NAME.match(path.name):
        return path.name
    return file_name(291, 0, 1)


@dataclass
class Reproduction:
    verdict: Verdict
    artifacts: Path
    content_name: str
    sensor: str
    profile: str
    rerun: str
    attempts: int
    recovery: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        v = self.verdict
        crash = None
        if v.crash is not None:
            crash = {**v.crash.to_json()}
        return {"verdict": v.verdict, "reason": v.reason, "boots": v.boots, "crashing_boots": v.crashing_boots,
                "crash": crash, "findings": [f.to_json() for f in v.findings],
                "artifacts": str(self.artifacts), "serial_log": str(self.artifacts / "serial.log"),
                "content_name": self.content_name, "sensor": self.sensor, "profile": self.profile,
                "elapsed_s": round(v.elapsed_s, 3), "attempts": self.attempts, "rerun": self.rerun,
                **({"recovery": self.recovery} if self.recovery else {})}


def reproduce(content: Path, profile: Profile, sensor: str | None = None, artifacts_root: Path | None = None,
              keep: bool = False, progress: Progress | None = None, recover_paths: Sequence[str] = (),
              recovery_script: Path | None = None) -> Reproduction:
    """Boot a fresh machine with `content` (an infrastructure failure is retried once); after a
    boot loop, run each recovery path in `recover_paths` on a fresh copy of the looping machine."""
    say = progress or (lambda msg: print(f"harness: {msg}", file=sys.stderr, flush=True))
    data = read_content_file(content)
    if recovery_script is not None and not recovery_script.is_file():
        raise InputFileError(f"{recovery_script}: no such recovery script")
    name = guest_file_name(content, profile)
    guest, build = _guest(profile, sensor, say)
    run_id = new_run_id()
    root = artifacts_root or default_root()
    rerun = f"harness reproduce {content} --profile {profile.name} --sensor {build}" + (
        f" --recover {','.join(recover_paths)}" if recover_paths else "")
    for attempt in (1, 2):
        directory = test_dir(root, run_id, f"reproduce-{attempt}")
        write_atomic(directory / "repro.txt", rerun + "\n")
        machine = RecoverableMachine(MachineSpec(profile=profile, guest=guest, artifacts=directory, run_id=run_id,
                                      test_id=f"reproduce {content.name}", slot=f"r{attempt}", sensor=build),
                          progress=say)
        try:
            machine.install_content({name: data}, bad_update=True)
            machine.boot()
            verdict = machine.wait_verdict()
        except InfraError:
            machine.close(keep=keep, background=True)
            if attempt == 2:
                raise
            say(f"infrastructure failure, retrying once (artifacts: {directory})")
            continue
        if verdict.verdict == "infra-error" and attempt == 1:
            machine.close(keep=keep, background=True)
            say(f"infra-error ({verdict.reason}), retrying once (artifacts: {directory})")
            continue
        result = Reproduction(verdict, directory, name, build, profile.name, rerun, attempt)
        try:
            machine.destroy()
            first_crash = machine.monitor.first_crash_t()
            crash_offset = machine.now() - first_crash if first_crash is not None else 0.0
            for path in recover_paths:
                if verdict.verdict != "boot-loop":
                    result.recovery[path] = {"result": "not-needed", "boots": 0,
                                             "reason": f"the machine did not loop ({verdict.verdict})"}
                    continue
                result.recovery[path] = _recover_copy(machine, path, recovery_script, root, run_id, crash_offset,
                                                      keep, say)
        finally:
            machine.close(keep=keep, background=True)
        return result
    raise AssertionError("unreachable")


def _guest(profile: Profile, sensor: str | None, say: Progress) -> tuple[Any, str]:
    """What the profile's machines boot, and the sensor build they run, from its guest family
    (the reference guest with either build; a Windows golden image with the build installed)."""
    return family_plugin(profile.family).prepare(profile, sensor, say)


def _recover_copy(looping: RecoverableMachine, path: str, script: Path | None, root: Path, run_id: str,
                  crash_offset: float, keep: bool, say: Progress) -> dict[str, Any]:
    """Run one recovery path on a fresh copy of the looping machine's disk."""
    directory = test_dir(root, run_id, f"recover-{path}")
    spec = looping.spec
    copy = RecoverableMachine(MachineSpec(profile=spec.profile, guest=spec.guest, artifacts=directory, run_id=run_id,
                               test_id=f"{spec.test_id} recover {path}", slot=f"{path}", sensor=looping.sensor,
                               disk_from=looping.disk), progress=say)
    copy.delivered.update(looping.delivered)
    copy.bad_update.update(looping.bad_update)
    try:
        return copy.recover(path, script=script, crash_offset_s=crash_offset).to_json()  # type: ignore[arg-type]
    finally:
        copy.close(keep=keep, background=True)
