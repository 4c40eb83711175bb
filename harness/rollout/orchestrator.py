"""The rollout: boot the fleet with the baseline, then ring by ring deliver the update online,
watch, bake; halt at the first signal of the `--halt-on` set, roll the halted ring back and
recover what crashed; measure the blast radius.

Every machine runs in its own thread. A halt is a flag set under the rollout's lock the moment a
machine's watcher reports the signal; every delivery asks the same lock first (the gate), so no
machine receives the update once the flag is set, and each delivery's time is recorded.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Profile
from ..errors import HarnessError, InfraError
from ..vm.hosts import check_shared_paths
from ..vm.registry import family_plugin
from .blast import blast_radius, unstaged_estimate, unstaged_total
from .content import ContentSet
from .fleet import FleetMachine
from .node import Node, NodeContext
from .record import MachineRecord, RolloutLog
from .unstaged import measure_unstaged

HALT_SIGNALS = ("crash", "boot-loop", "hang", "rejected")
_VERDICT_SIGNAL = {"crashed": "crash", "boot-loop": "boot-loop", "hang": "hang", "content-rejected": "rejected"}
STOP_WAIT_S = 5.0  # after Ctrl-C: how long machine threads get to finish a boot() under way


@dataclass
class RolloutPlan:
    profiles: dict[str, Profile]  # fleet profile name -> profile
    counts: dict[str, int]
    machines: list[FleetMachine]  # with their rings
    rings: list[int]
    content: ContentSet
    run_id: str
    run_dir: Path
    bake_boots: int = 1
    bake_s: float = 0.0
    halt_on: tuple[str, ...] = HALT_SIGNALS
    recover: str = "auto"
    measure_unstaged: bool = False
    max_boots: int = 4  # boots at once (2 cores: more only slows each one down)
    slot_prefix: str = ""  # before each machine's name in its domain name
    before_delivery: Callable[[Any], None] | None = None  # a test's fault on each machine, before its delivery


@dataclass
class Halt:
    ring: int
    reason: str  # crash | boot-loop | hang | rejected
    machine: str
    signal_t: float
    halt_t: float
    detail: str


@dataclass
class RolloutState:
    log: RolloutLog
    halt: Halt | None = None
    first_delivery_t: float | None = None
    interrupted: bool = False
    infra_error: str | None = None
    unstaged_measured: dict[str, Any] | None = None


class Rollout:
    def __init__(self, plan: RolloutPlan, say: Callable[[str], None], on_change: Callable[[], None] | None = None):
        self.plan = plan
        self.say = say
        self.state = RolloutState(RolloutLog(on_change))
        self.lock = threading.Lock()
        self.stop = threading.Event()  # Ctrl-C: no new boots, no new deliveries
        self.halted = threading.Event()
        self.stopping = threading.Event()  # a halt or Ctrl-C: bakes end, no new bake boot
        self.nodes: list[Node] = []
        self._threads: list[threading.Thread] = []

    @property
    def log(self) -> RolloutLog:
        return self.state.log

    # ------------------------------------------------------------------ the run

    def run(self) -> RolloutState:
        """The whole rollout; Ctrl-C stops it, tears every machine down and re-raises."""
        try:
            self._run()
        except KeyboardInterrupt:
            self.state.interrupted = True
            self.stop.set()
            self.stopping.set()
            self.say("interrupted: stopping deliveries and tearing the fleet down")
            raise
        finally:
            self._teardown()
        return self.state

    def _run(self) -> None:
        plan = self.plan
        contexts = self._prepare()
        per_profile: dict[str, int] = {}
        for fm in plan.machines:
            profile = plan.profiles[fm.profile]
            index = per_profile.get(fm.profile, 0)
            per_profile[fm.profile] = index + 1
            profile = dataclasses.replace(profile, uri=profile.hosts[index % len(profile.hosts)], network="user")
            record = MachineRecord(fm.name, fm.profile, fm.ring, host=profile.uri)
            self.log.add(record)
            self.nodes.append(Node(record, profile, contexts[fm.profile]))
        self._all(self.nodes, lambda node: node.start(self.stop))
        started = [n for n in self.nodes if n.record.baseline_verdict == "healthy"]
        if not started:
            raise InfraError(f"no machine of the fleet booted healthy with the baseline "
                             f"(artifacts: {plan.run_dir})")
        for ring in range(len(plan.rings)):
            members = [n for n in started if n.record.ring == ring]
            self.say(f"ring {ring}: delivering to {len(members)} machine(s)")
            self._all(members, self._ring_member)
            if self.halted.is_set():
                self.say(f"ring {ring}: halted ({self.state.halt.reason if self.state.halt else ''}); rolling back")
                # Every machine that has the update gives it back: the halted ring's, and those of
                # rings that passed their bake before.
                self._all([n for n in started if n.record.deliveries], lambda n: n.rollback(plan.recover))
                break
        for node in started:  # machines that kept their last verdict (never reached, or passed)
            record = node.record
            if record.final_verdict is None:
                record.final_verdict = record.verdict or record.baseline_verdict
                if record.final_verdict == "healthy" and record.healthy_t is None:
                    record.healthy_t = self.log.now()
        if plan.measure_unstaged and not self.stop.is_set():
            self.state.unstaged_measured = measure_unstaged(self.nodes, contexts, plan.run_dir, self.stop, self._all,
                                                            self.say)

    def _prepare(self) -> dict[str, NodeContext]:
        """What each profile's machines boot (built or checked once), after the hosts answered
        and what killed runs left on them was swept; a remote host must see the guest's files
        and the run directory at the same paths."""
        from ..sweep import sweep_hosts

        plan = self.plan
        hosts = tuple(dict.fromkeys(uri for p in plan.profiles.values() for uri in p.hosts))
        swept = sweep_hosts(hosts, "harness")
        if swept.unreachable:
            raise InfraError("; ".join(swept.unreachable.values()))
        boots = threading.Semaphore(plan.max_boots)
        contexts = {}
        for name, profile in plan.profiles.items():
            plugin = family_plugin(profile.family)
            guest, sensor = plugin.prepare(profile, None, self.say)
            for uri in profile.hosts:  # a remote host reads the domain's paths: the same files there
                check_shared_paths(uri, plugin.shared_files(guest), [plan.run_dir])
            contexts[name] = NodeContext(guest, sensor, plan.run_id, plan.run_dir, plan.content, self.log, boots,
                                         self._machine_say, plan.slot_prefix, plan.before_delivery, self.stop)
        return contexts

    def _machine_say(self, message: str) -> None:
        pass  # the machines' own lines are in their artifacts; the progress line tells the states

    # ------------------------------------------------------------------ a ring

    def _ring_member(self, node: Node) -> None:
        if not node.deliver(self._gate, self._on_signal):
            return
        verdict = node.judge()
        self._verdict_signal(node, verdict.verdict)
        if verdict.verdict != "healthy" or self.halted.is_set():
            return
        verdict = node.bake(self.plan.bake_boots, self.stopping)
        if verdict is not None:
            self._verdict_signal(node, verdict.verdict)
        delivered = node.record.delivered_at or 0.0
        left = delivered + self.plan.bake_s - self.log.now()
        if left > 0:
            self.stopping.wait(left)  # a halt anywhere ends the bake at once

    def _gate(self) -> float | None:
        """May a delivery start now? The time it starts at, or None once halted or stopped."""
        with self.lock:
            if self.halted.is_set() or self.stop.is_set():
                return None
            t = self.log.now()
            if self.state.first_delivery_t is None:
                self.state.first_delivery_t = t
            return t

    def _on_signal(self, node: Node, kind: str, t: float, detail: str) -> None:
        if kind in self.plan.halt_on:
            self._halt(node, kind, t, detail)

    def _verdict_signal(self, node: Node, verdict: str) -> None:
        kind = _VERDICT_SIGNAL.get(verdict)
        if kind is not None and kind in self.plan.halt_on:
            self._halt(node, kind, self.log.now(), f"verdict {verdict}")

    def _halt(self, node: Node, kind: str, signal_t: float, detail: str) -> None:
        with self.lock:
            if self.halted.is_set():
                return
            self.halted.set()
            self.stopping.set()
            self.state.halt = Halt(node.record.ring, kind, node.name, signal_t, self.log.now(), detail)
        self.say(f"HALT at ring {node.record.ring}: {kind} on {node.name} ({detail})")

    # ------------------------------------------------------------------ threads

    def _all(self, nodes: list[Node], job: Callable[[Node], Any]) -> None:
        """Run `job` for every node side by side; an error of one machine is recorded on it."""
        threads = [threading.Thread(target=self._guarded, args=(job, n), daemon=True, name=f"rollout-{n.name}")
                   for n in nodes]
        self._threads.extend(threads)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _guarded(self, job: Callable[[Node], Any], node: Node) -> None:
        try:
            job(node)
        except HarnessError as exc:
            if self.stop.is_set():
                return
            self.say(f"{node.name}: {exc}")
            node.record.final_verdict = node.record.final_verdict or "infra-error"
            self.log.state(node.name, "infra-error", str(exc))
        except Exception as exc:  # noqa: BLE001 - one machine's bug must not hang the rollout
            if self.stop.is_set():
                return
            self.say(f"{node.name}: unexpected {type(exc).__name__}: {exc}")
            node.record.final_verdict = "infra-error"
            self.log.state(node.name, "infra-error", f"{type(exc).__name__}: {exc}")

    def _teardown(self) -> None:
        """Every machine's domain destroyed and disks removed. After Ctrl-C the machines are closed
        at once (a thread waiting for a verdict would wait for its deadline); a thread that was
        creating a domain at that moment gets a few seconds to finish, then every machine's
        domain is destroyed by name, so none is left behind."""
        from ..vm import teardown
        from ..vm.connection import destroy_by_name

        for node in self.nodes:
            node.close()
        left = teardown.drain(120.0)
        if self.stop.is_set():
            deadline = time.monotonic() + STOP_WAIT_S
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            for node in self.nodes:
                if node.machine is not None:
                    destroy_by_name(node.profile.uri, node.machine.name)
        if left:
            self.say(f"{left} machine teardown(s) still running; `harness clean` removes what they leave")

    # ------------------------------------------------------------------ results

    def blast(self) -> tuple[int, int, dict[str, Any]]:
        records = list(self.log.machines.values())
        if self.state.unstaged_measured is not None:
            measured = self.state.unstaged_measured
            return blast_radius(records), int(measured["blast_radius"]), measured
        per_profile = unstaged_estimate(records, self.plan.counts)
        return blast_radius(records), unstaged_total(per_profile), {"method": "estimated", "profiles": per_profile}
