"""Recovery as a test outcome: bring a boot-looping machine back by safe mode or by the
recovery environment, with the user's script, and prove it with a normal boot.

The machine moves through states (labgrid's strategy): booted (looping) -> off ->
safe_mode | recovery_env (the script runs there) -> off -> booted (normal). The
boot mode is changed through libvirt (the domain's initrd, command line and a
second disk holding the script), never by editing a golden image. Every file the
script removed is kept in the test's artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import libvirt

from .artifacts import write_atomic
from .bad_update import bad_update_list
from .errors import HarnessError
from .monitor.verdict import Verdict
from .vm.backend import RECOVERY_PATHS, RecoveryPath
from .vm.machine import Machine

__all__ = ["RECOVERY_PATHS", "RecoverableMachine", "RecoveryPath", "RecoveryResult", "bad_update_list", "recover"]
_MODE = {"safe-mode": "safe", "recovery-env": "recovery"}


@dataclass
class RecoveryResult:
    path: str
    result: Literal["recovered", "failed"]
    reason: str
    boots: int  # boots the machine went through from the start of recovery, as the monitor counted them
    seconds: float  # from the start of recovery to the final verdict
    seconds_from_first_crash: float | None  # from the machine's first crash to healthy
    stage: str  # how the recovery boot ended: done, hang, crashed, failed
    script_rc: int | None
    removed: list[str] = field(default_factory=list)
    final: Verdict | None = None
    artifacts: Path | None = None

    def to_json(self) -> dict[str, Any]:
        final = self.final
        return {
            "result": self.result, "reason": self.reason, "boots": self.boots,
            "seconds": round(self.seconds, 3),
            "seconds_from_first_crash": None if self.seconds_from_first_crash is None
            else round(self.seconds_from_first_crash, 3),
            "stage": self.stage, "script_rc": self.script_rc, "removed": self.removed,
            "final_verdict": final.verdict if final else None,
            "crash": final.crash.to_json() if final and final.crash else None,
            "artifacts": str(self.artifacts) if self.artifacts else None,
        }


class RecoverableMachine(Machine):
    """A Machine with recovery as one call (the `vm` fixture's, `harness reproduce`'s): the
    orchestration sits here, above the machine, which knows nothing of it."""

    def recover(self, path: RecoveryPath, script: Path | None = None,
                crash_offset_s: float = 0.0) -> RecoveryResult:
        """Bring the machine back by `path` (safe-mode or recovery-env) with the profile's script
        (or `script`), telling it the bad update (files given with bad_update=True)."""
        if not self.bad_update:
            raise HarnessError("recover() needs the bad update named: install_content(..., bad_update=True) "
                               "or put_content_online(..., bad_update=True)")
        return recover(self, path, {n: self.delivered[n] for n in self.bad_update}, script, crash_offset_s)


def recover(machine: Machine, path: RecoveryPath, bad_files: dict[str, bytes], script: Path | None = None,
            crash_offset_s: float = 0.0) -> RecoveryResult:
    """Run one recovery path on `machine` (running or not) and boot it normally after.

    `crash_offset_s` is how long before this machine's start its first crash happened
    (when it is a copy of a looping machine); it adds to `seconds_from_first_crash`.
    """
    if path not in RECOVERY_PATHS:
        raise HarnessError(f"unknown recovery path {path!r}; use one of {', '.join(RECOVERY_PATHS)}")
    script = script or Path(machine.profile.recovery_script(path) or machine.backend.sample_recovery_script(path))
    workdir = machine.artifacts / f"recovery-{path}"
    workdir.mkdir(exist_ok=True)
    say = machine.progress
    started = machine.now()
    first_crash = machine.monitor.first_crash_t()

    machine.destroy()  # -> off
    before = machine.backend.content_listing(machine)
    machine.backend.prepare_recovery(machine, path, workdir, script, bad_update_list(bad_files))
    write_atomic(workdir / f"script{script.suffix}", script.read_bytes())
    say(f"{machine.name}: recovery by {path}: script {script}, bad update "
        + ", ".join(sorted(bad_files)))

    machine.boot(mode=_MODE[path])  # -> safe_mode | recovery_env
    if path == "safe-mode":
        stage_verdict = machine.wait_verdict()
        # A Windows safe-mode script restarts the guest itself: its marker may be a boot behind.
        rc = next((b.recovery_rc for b in reversed(machine.monitor.window()) if b.recovery_rc is not None), None)
        if stage_verdict.verdict in ("healthy", "content-rejected"):
            stage, why = ("done", f"script exited {rc}") if rc is not None else (
                "failed", "safe mode booted but the script did not run")
        else:
            stage, why = stage_verdict.verdict, f"safe mode boot: {stage_verdict.reason}"
    else:
        stage, why = machine.wait_recovery_env()
        if stage == "hang" and stopped_unannounced(machine):
            stage, why = machine.wait_recovery_env()
        rc = machine.monitor.boots[-1].recovery_rc if machine.monitor.boots else None
    # Counted, not assumed: a Windows safe-mode script restarts the guest itself.
    stage_boots = sum(1 for boot in machine.monitor.boots if boot.started >= started)
    machine.destroy()  # -> off
    machine.backend.finish_recovery(machine, path)

    after = machine.backend.content_listing(machine)
    removed = sorted(name for name in before if after.get(name) != before[name])
    for name in removed:
        (workdir / "removed").mkdir(exist_ok=True)
        write_atomic(workdir / "removed" / name, before[name])

    def finish(result: Literal["recovered", "failed"], reason: str, final: Verdict | None) -> RecoveryResult:
        now = machine.now()
        boots = stage_boots + (final.boots if final else 0)  # a recovery that did not help loops again
        healthy_after_crash = None
        if result == "recovered" and first_crash is not None:
            healthy_after_crash = now - first_crash + crash_offset_s
        elif result == "recovered" and crash_offset_s:
            healthy_after_crash = now + crash_offset_s
        outcome = RecoveryResult(path, result, reason, boots, now - started, healthy_after_crash, stage, rc,
                                 removed, final, workdir)
        machine.recoveries[path] = outcome
        machine.write_verdict()
        say(f"{machine.name}: recovery by {path}: {result} ({reason})")
        return outcome

    if stage != "done":
        return finish("failed", f"{stage}: {why}", None)

    machine.boot(mode="normal")  # -> booted
    final = machine.wait_verdict()
    sensor = final.boot_log[-1].sensor if final.boot_log else None
    if final.verdict in ("healthy", "content-rejected") and sensor == "loaded":
        return finish("recovered", f"{why}; removed {', '.join(removed) or 'nothing'}; the next normal "
                      f"boot is {final.verdict} with the sensor loaded", final)
    return finish("failed", f"{why}; removed {', '.join(removed) or 'nothing'}; the next normal boot: "
                  f"{final.one_line()}", final)


def stopped_unannounced(machine: Machine) -> bool:
    """Whether the domain stopped without its lifecycle event reaching this process. Seen once in
    CI: the recovery environment powered off, libvirtd stopped QEMU, and no event came, so a
    quiet machine would be called a hang. libvirt is asked for the domain itself; a stop found
    that way is recorded (`harness:stopped-unannounced`) and observed as the event would be."""
    dom = machine.dom
    if dom is None:
        return False
    try:
        if dom.isActive():
            return False
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # a transient domain that stopped is gone
            return False
    if machine.events is not None:
        machine.events.record("harness:stopped-unannounced", {})
    with machine.cond:
        machine.monitor.observe_event("lifecycle:stopped:shutdown", machine.now())
        machine.cond.notify_all()
    return True
