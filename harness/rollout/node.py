"""One machine of the fleet through a rollout: a healthy boot with the baseline, the update
delivered online (put, then reload), the bake reboots, and the rollback (online, or by the
recovery path for a machine that no longer runs).

The per-machine states (record.State) go to the shared log as they change. A watcher thread
waits on the machine's condition, which every console line and libvirt event notifies, and
reports the first crash and the first rejection after the delivery at once: the orchestrator
halts on that signal, not on the verdict that comes seconds later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Profile
from ..errors import CrashDetected, HarnessError, InfraError
from ..monitor.verdict import Verdict
from ..recovery import RecoverableMachine
from ..vm.machine import MachineSpec
from .content import ContentSet
from .record import Delivery, MachineRecord, RolloutLog

Signal = Callable[["Node", str, float, str], None]  # node, kind (crash | rejected), rollout time, detail
Gate = Callable[[], "float | None"]  # the time a delivery may start at, or None: halted
RECOVERY_ORDER = {"auto": ("safe-mode", "recovery-env"), "safe-mode": ("safe-mode",),
                  "recovery-env": ("recovery-env",)}


@dataclass
class NodeContext:
    guest: Any  # what the profile's family boots (its plugin's prepare())
    sensor: str
    run_id: str
    run_dir: Path
    content: ContentSet
    log: RolloutLog
    boots: threading.Semaphore  # boots running at once (bake reboots share the cores)
    say: Callable[[str], None]
    slot_prefix: str = ""  # keeps domain names apart when one run id holds several rollouts
    before_delivery: Callable[[RecoverableMachine], None] | None = None  # a test's fault, on the real machine
    stop: threading.Event = field(default_factory=threading.Event)  # Ctrl-C: no machine boots any more


class FleetMachine(RecoverableMachine):
    """A fleet machine that refuses to boot once the rollout is stopping (Ctrl-C): a thread in
    the middle of a bake or a recovery must not start a domain after the teardown."""

    stop: threading.Event | None = None

    def boot(self, mode: str = "normal") -> None:
        if self.stop is not None and self.stop.is_set():
            raise HarnessError(f"{self.name}: the rollout is stopping; no new boot (artifacts: {self.artifacts})")
        super().boot(mode)


class Node:
    def __init__(self, record: MachineRecord, profile: Profile, ctx: NodeContext) -> None:
        self.record = record
        self.profile = profile
        self.ctx = ctx
        self.machine: RecoverableMachine | None = None
        self._watch_stop = False
        self._watcher: threading.Thread | None = None
        self.closed = False

    @property
    def name(self) -> str:
        return self.record.name

    def _state(self, state: Any, detail: str = "", t: float | None = None) -> None:
        self.ctx.log.state(self.name, state, detail, t)

    def _rollout_t(self, machine_t: float) -> float:
        assert self.machine is not None
        return self.ctx.log.at(self.machine.t0 + machine_t)

    # ------------------------------------------------------------------ baseline

    def start(self, stop: threading.Event) -> bool:
        """Boot healthy with the baseline; a machine lost to the infrastructure (or not healthy)
        is replaced once by a fresh one."""
        for attempt in (0, 1):
            if stop.is_set():
                return False
            suffix = f"-r{attempt}" if attempt else ""
            directory = self.ctx.run_dir / f"{self.name}{suffix}"
            directory.mkdir(parents=True, exist_ok=True)
            machine = FleetMachine(MachineSpec(
                profile=self.profile, guest=self.ctx.guest, artifacts=directory, run_id=self.ctx.run_id,
                test_id=f"rollout {self.name}", slot=f"{self.ctx.slot_prefix}{self.name}{suffix}",
                sensor=self.ctx.sensor, network=True), progress=self.ctx.say)
            machine.stop = self.ctx.stop
            self.machine = machine
            self.record.artifacts = str(directory)
            self.record.serial_log = str(machine.serial_log)
            machine.install_content(dict(self.ctx.content.baseline))
            self._state("booting", f"baseline boot{' (replacement)' if attempt else ''}")
            why = ""
            try:
                with self.ctx.boots:
                    if stop.is_set():
                        return False
                    machine.boot()
                    verdict = machine.wait_verdict()
                why = verdict.one_line()
                if verdict.verdict == "healthy":
                    self.record.baseline_verdict = "healthy"
                    self.record.healthy_t = self.ctx.log.now()
                    self._state("healthy", "baseline: " + verdict.reason)
                    return True
            except InfraError as exc:
                why = str(exc)
            self.record.baseline_verdict = "infra-error"
            machine.close(background=True)
            self.machine = None
            if attempt == 0 and not stop.is_set():
                self.record.replaced += 1
                self._state("infra-error", f"baseline boot: {why}; replaced by a fresh machine")
        self._state("infra-error", f"baseline boot: {why}")
        self.record.final_verdict = "infra-error"
        return False

    # ------------------------------------------------------------------ update

    def deliver(self, gate: Gate, on_signal: Signal) -> bool:
        """The update, online: each file put into the running machine's content directory, then a
        reload. A failed delivery (SSH down) is tried once more, then it stays a failed delivery,
        never a crash. `gate` is asked before each attempt: after a halt it says no."""
        machine = self.machine
        assert machine is not None
        if self.ctx.before_delivery is not None:
            self.ctx.before_delivery(machine)
        for _attempt in (1, 2):
            t = gate()
            if t is None:
                return False
            since = machine.now()
            self.watch(since, on_signal)
            try:
                for name, data in self.ctx.content.update.items():
                    machine.put_content_online(name, data, bad_update=True)
            except CrashDetected as exc:  # the machine crashed under the put: the file is (partly) there
                self.record.deliveries.append(Delivery(t, True, f"crashed during the delivery: {exc}"))
                self._state("updated", "delivered; crashed during the transfer", t)
                return True
            except HarnessError as exc:
                self.stop_watching()
                self.record.deliveries.append(Delivery(t, False, str(exc)))
                self.ctx.say(f"{self.name}: delivery failed: {exc}")
                continue
            self.record.deliveries.append(Delivery(t, True))
            if self._reload():
                self._state("updated", ", ".join(self.ctx.content.update), t)
                return True
            self.stop_watching()
            return False  # a failed delivery, not a crash: the rollback still removes the file
        return False

    def _reload(self) -> bool:
        """The driver picks the update up (a crash here is the monitor's to see). A reload that
        cannot be asked for is tried once more, then the delivery counts as failed."""
        machine = self.machine
        assert machine is not None
        for attempt in (1, 2):
            try:
                machine.reload_content()
                return True
            except CrashDetected:
                return True
            except HarnessError as exc:
                if attempt == 2:
                    delivery = self.record.deliveries[-1]
                    delivery.ok, delivery.error = False, f"the file was put, but the reload failed: {exc}"
        return False

    def watch(self, since: float, on_signal: Signal) -> None:
        """Report the first crash and the first rejection from machine time `since` on."""
        self.stop_watching()
        self._watch_stop = False
        self._watcher = threading.Thread(target=self._watch, args=(since, on_signal), daemon=True,
                                         name=f"rollout-watch-{self.name}")
        self._watcher.start()

    def _watch(self, since: float, on_signal: Signal) -> None:
        machine = self.machine
        assert machine is not None
        seen: set[str] = set()
        while len(seen) < 2:
            found: list[tuple[str, float, str]] = []
            with machine.cond:
                while not found:
                    if self._watch_stop:
                        return
                    boots = machine.monitor.boots
                    if "crash" not in seen:
                        crash = next((b for b in boots if b.crashed and b.crash_t is not None
                                      and b.crash_t >= since), None)
                        if crash is not None:
                            found.append(("crash", crash.crash_t or since, f"crash at boot {crash.index}"))
                    if "rejected" not in seen:
                        rejected = next(((t, n, r) for b in boots for t, n, r in b.rejected if t >= since), None)
                        if rejected is not None:
                            found.append(("rejected", rejected[0], f"rejected {rejected[1]}: {rejected[2]}"))
                    if not found:
                        # woken by every console line and event, and by stop_watching(); the
                        # timeout only bounds the wait, the loop looks again either way
                        machine.cond.wait(self.profile.timeouts.boot)
            for kind, t, detail in found:
                seen.add(kind)
                if kind == "crash":
                    self._state("crashed", detail, self._rollout_t(t))
                if self.record.signal_t is None:
                    self.record.signal_t = self._rollout_t(t)
                on_signal(self, kind, self._rollout_t(t), detail)

    def stop_watching(self) -> None:
        self._watch_stop = True
        if self.machine is not None:
            with self.machine.cond:
                self.machine.cond.notify_all()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(5)
        self._watcher = None

    def judge(self) -> Verdict:
        """The verdict after the reload (a crash, then the boot loop with the file on disk)."""
        assert self.machine is not None
        return self._take(self.machine.wait_verdict())

    def _take(self, verdict: Verdict) -> Verdict:
        """Keep the worst verdict after the update; put it on the timeline."""
        rank = ("healthy", "content-rejected", "infra-error", "hang", "crashed", "boot-loop")
        record = self.record
        if record.verdict is None or rank.index(verdict.verdict) > rank.index(record.verdict):
            record.verdict, record.verdict_reason = verdict.verdict, verdict.reason
        if verdict.crash_title and record.crash_title is None:
            record.crash_title = verdict.crash_title
        state = {"boot-loop": "looping", "crashed": "crashed", "hang": "crashed",
                 "infra-error": "infra-error"}.get(verdict.verdict, "updated")
        self._state(state, f"{verdict.verdict}: {verdict.reason}")
        if verdict.verdict == "healthy":
            record.healthy_t = self.ctx.log.now()
        return verdict

    def bake(self, boots: int, stop: threading.Event) -> Verdict | None:
        """Reboot `boots` times with the update on disk; the last verdict (None: stopped)."""
        machine = self.machine
        assert machine is not None
        verdict = None
        for _ in range(boots):
            if stop.is_set():
                return None
            with self.ctx.boots:
                machine.destroy()
                self._state("booting", "bake reboot with the update on disk")
                machine.boot()
                verdict = self._take(machine.wait_verdict())
            if verdict.verdict != "healthy":
                return verdict
        return verdict

    # ------------------------------------------------------------------ rollback

    def rollback(self, recover: str) -> None:
        """Withdraw the update: online (delete or restore, then reload) on a machine that still
        runs; else, or when that fails, the recovery paths. Ends with the final verdict."""
        self.stop_watching()
        machine = self.machine
        assert machine is not None
        verdict = machine.verdict
        if verdict is not None and verdict.verdict == "infra-error":
            self.record.final_verdict = "infra-error"
            self._state("infra-error", "lost during the update: " + verdict.reason)
            return
        running = machine.dom is not None and verdict is not None and (
            verdict.verdict in ("healthy", "content-rejected")
            or verdict.verdict == "crashed" and bool(verdict.boot_log) and verdict.boot_log[-1].complete
            and not verdict.boot_log[-1].crashed)
        if running:
            try:
                final = self._online_rollback()
                if final.verdict == "healthy":
                    self.record.rollback = "online"
                    self.record.final_verdict = "healthy"
                    self.record.healthy_t = self.ctx.log.now()
                    self._state("rolled-back", "update withdrawn online; " + final.reason)
                    return
                why = final.one_line()
            except HarnessError as exc:
                why = str(exc)
            self.ctx.say(f"{self.name}: online rollback failed ({why}); recovering")
        self._recover(recover)

    def _online_rollback(self) -> Verdict:
        machine = self.machine
        assert machine is not None
        self._wait_ssh_ready()
        for name, data in self.ctx.content.rollback_actions():
            if data is None:
                _delete_online(machine, name)
            else:
                machine.put_content_online(name, data)
        machine.reload_content()
        return machine.wait_verdict()

    def _wait_ssh_ready(self) -> None:
        """SSH answers in the running boot (machine.ssh() trusts the console's first marker)."""
        machine = self.machine
        assert machine is not None
        limit = self.profile.timeouts.boot
        with machine.cond:
            deadline = machine.now() + limit
            while not (machine.monitor.boots and machine.monitor.boots[-1].ssh_ready):
                left = deadline - machine.now()
                if left <= 0:
                    raise InfraError(f"{self.name}: SSH not ready within {limit:.0f} s "
                                     f"(artifacts: {machine.artifacts})")
                machine.cond.wait(left)

    def _recover(self, recover: str) -> None:
        machine = self.machine
        assert machine is not None
        result = None
        for path in RECOVERY_ORDER[recover]:
            self._state("recovering", path)
            try:
                result = machine.recover(path)  # type: ignore[arg-type]
            except HarnessError as exc:
                self.record.recovery = {"path": path, "result": "failed", "reason": str(exc)}
                self._state("recovering", f"{path} failed: {exc}")
                continue
            self.record.recovery = {"path": path, **result.to_json()}
            if result.result == "recovered":
                self.record.rollback = path
                self.record.final_verdict = result.final.verdict if result.final else "healthy"
                self.record.healthy_t = self.ctx.log.now()
                self._state("recovered", f"{path}: {result.reason}")
                return
            self._state("recovering", f"{path} failed: {result.reason}")
        self.record.final_verdict = result.final.verdict if result and result.final else (
            machine.verdict.verdict if machine.verdict else "hang")
        self._state("crashed", "every recovery path failed")

    def close(self) -> None:
        """Tear the domain down in the background (idempotent)."""
        self.stop_watching()
        if self.machine is not None and not self.closed:
            self.closed = True
            self.machine.close(background=True)


def _delete_online(machine: RecoverableMachine, name: str) -> None:
    """Remove one content file from the running guest's content directory."""
    if machine.backend.family.name == "windows":
        from ..windows.powershell import content_path

        shell = machine.transport()
        try:
            shell.sftp().remove(content_path(name))
        finally:
            shell.close()
        return
    from ..guest.linux_backend import CONTENT_DIR

    result = machine.run(f"rm -f {CONTENT_DIR}/{name} && sync")
    if result.rc != 0:
        raise InfraError(f"{machine.name}: removing {name} failed (rc {result.rc}): {result.stderr.strip()} "
                         f"(artifacts: {machine.artifacts})")
