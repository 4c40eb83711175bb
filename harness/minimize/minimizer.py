"""One minimisation: judge the original, pick the oracle, run the passes, confirm in a VM.

The oracle decision:
- the host build and the VM agree the original crashes (same function): the host build
  judges every step (milliseconds each) and one VM boot confirms the result, so a file the
  host build predicts costs 2 VM boots (the original and the result), 1 with `trust_host`;
- the host build cannot decide (no crash on the host, a crash in the VM; or no host build
  for this driver): VM boots judge every step, within `max_vm_boots`;
- the VM rejects the host's result (a different crash or none): the host stopped agreeing
  with the VM somewhere on the way, so the passes run again from the original with the VM
  as the oracle.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Profile
from ..content.files import read_content_file, write_content_file
from ..content.format import FILE_NAME, ChannelFile, file_name
from ..content.sensor import BUILDS
from ..errors import InputFileError
from .culprit import describe
from .ddmin import BudgetExhausted
from .oracle import Crash, HostOracle, VmOracle, same_crash
from .passes import FORMAT_PASSES, byte_ddmin, parsable

Progress = Callable[[str], None]
BYTE_PASS_HOST_RUNS = 4000  # ~20 s of host runs: the byte pass after the format passes is a polish


class Judge:
    """`interesting(data)` for one oracle and one target crash: memoised, counted, and it
    remembers the smallest interesting file seen (what a pass cut short by a budget keeps)."""

    def __init__(self, oracle: HostOracle | VmOracle, target: Crash, best: bytes,
                 max_runs: int | None = None) -> None:
        self.oracle = oracle
        self.target = target
        self.best = best
        self.max_runs = max_runs
        self.memo: dict[bytes, Crash | None] = {}

    def crash_of(self, data: bytes) -> Crash | None:
        key = hashlib.sha256(data).digest()
        if key not in self.memo:
            if self.max_runs is not None and self.oracle.runs >= self.max_runs:
                raise BudgetExhausted()
            self.memo[key] = self.oracle.run(data)
        return self.memo[key]

    def __call__(self, data: bytes) -> bool:
        hit = same_crash(self.crash_of(data), self.target)
        if hit and len(data) < len(self.best):
            self.best = data
        return hit


@dataclass
class Minimized:
    input: Path
    output: Path
    input_bytes: int
    output_bytes: int
    seconds: float
    vm_boots: int  # machines booted
    guest_boots: int  # boots their guests went through (1 each: a boot-loop threshold of one)
    host_runs: int
    oracle: str  # host | vm: what judged the steps
    crash: Crash  # the result's crash in the VM
    culprit: dict[str, Any]
    confirmed: str  # how the VM confirmed the result
    passes: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"input": str(self.input), "output": str(self.output), "input_bytes": self.input_bytes,
                "output_bytes": self.output_bytes, "vm_boots": self.vm_boots, "guest_boots": self.guest_boots, "seconds": round(self.seconds, 3),
                "host_runs": self.host_runs, "oracle": self.oracle, "confirmed": self.confirmed,
                "culprit": self.culprit, "title": self.crash.title, "function": self.crash.function,
                "crash": self.crash.to_json(), "passes": self.passes, "notes": self.notes}


class Minimizer:
    def __init__(self, profile: Profile, sensor: str | None = None, trust_host: bool = False,
                 max_vm_boots: int = 40, artifacts_root: Path | None = None,
                 progress: Progress | None = None) -> None:
        self.profile = profile
        self.build = sensor or profile.sensor
        self.trust_host = trust_host
        self.max_vm_boots = max_vm_boots
        self.artifacts_root = artifacts_root
        self.say = progress or (lambda msg: print(f"harness: minimize: {msg}", file=sys.stderr, flush=True))
        self.host_ok = profile.driver is None and self.build in BUILDS

    def run(self, path: Path, output: Path) -> Minimized:
        started = time.monotonic()
        data = read_content_file(path)
        if output.is_dir() or not output.parent.is_dir():
            raise InputFileError(f"{output}: give an output file in an existing directory (-o DIR/NAME.sys)")
        name = path.name if FILE_NAME.match(path.name) else file_name(291, 0, 1)
        with tempfile.TemporaryDirectory(prefix="harness-minimize-") as tmp:
            host = HostOracle(self.build, Path(tmp), name) if self.host_ok else None
            vm = VmOracle(self.profile, self.build, Path(tmp), name, self.artifacts_root, self.say)
            result = self._minimize(path, data, host, vm)
        write_content_file(output, result[0])
        final, crash, oracle, confirmed, passes, notes = result
        original = parsable(data)
        return Minimized(path, output, len(data), len(final), time.monotonic() - started, vm.runs,
                         vm.boots, host.runs if host else 0, oracle, crash, describe(final, crash, original), confirmed,
                         passes, notes)

    def _minimize(self, path: Path, data: bytes, host: HostOracle | None,
                  vm: VmOracle) -> tuple[bytes, Crash, str, str, list[dict[str, Any]], list[str]]:
        notes: list[str] = []
        passes: list[dict[str, Any]] = []
        host_crash = host.run(data) if host else None
        if host_crash:
            self.say(f"{path}: the {self.build} host build crashes in {host_crash.function} ({host_crash.region})")
        vm_judge: Judge | None = None
        if self.trust_host and host_crash:
            notes.append("--trust-host: the original was not booted; the result's VM crash is compared "
                         "with the host build's function")
        else:
            vm_judge = self._judge_original(path, data, vm, host_crash)
            if host is None:
                notes.append("no host build for this profile's sensor: the VM judges every step")
            elif host_crash is None:
                notes.append(f"the {self.build} host build does not crash on the original but the VM does: "
                             "it cannot decide, so the VM judges every step")
            elif host_crash.function != vm_judge.target.function:
                notes.append(f"the host build crashes in {host_crash.function}, the VM in "
                             f"{vm_judge.target.function}: the VM judges every step")
                host_crash = None
        if host_crash is not None:
            assert host is not None
            final = run_passes(data, Judge(host, host_crash, data), passes, self.say)
            confirm = vm_judge.crash_of(final) if vm_judge else vm.run(final)
            if vm_judge is not None and same_crash(confirm, vm_judge.target):
                assert confirm is not None
                return final, confirm, "host", "the result crashes the VM with the original's title and " \
                    "function", passes, notes
            if vm_judge is None and confirm is not None and confirm.function == host_crash.function:
                return final, confirm, "host", "the result crashes the VM in the host build's function " \
                    "(--trust-host: the original was not booted)", passes, notes
            seen = f"{confirm.title} in {confirm.function}" if confirm else "no crash"
            notes.append(f"the VM disagrees with the host build on the result ({seen}): the passes run again "
                         f"from the original with the VM as the oracle")
            self.say(notes[-1])
            if vm_judge is None:
                vm_judge = self._judge_original(path, data, vm, host_crash)
        assert vm_judge is not None
        vm_judge.max_runs = vm.runs + self.max_vm_boots
        final = run_passes(data, vm_judge, passes, self.say)
        crash = vm_judge.crash_of(final)
        assert crash is not None
        return final, crash, "vm", "every step was a VM boot", passes, notes

    def _judge_original(self, path: Path, data: bytes, vm: VmOracle, host_crash: Crash | None) -> Judge:
        """Boot the original once: its VM crash is the target; no crash is bad input."""
        vm_crash = vm.run(data)
        if vm_crash is None:
            disagree = (f"; the host build predicts a crash in {host_crash.function}, the VM disagrees"
                        if host_crash else "")
            raise InputFileError(
                f"{path}: does not crash on the {vm.build} sensor: nothing to minimise (the VM: "
                f"{vm.last_verdict}{disagree}); give a file that crashes it (check: harness reproduce {path})")
        self.say(f"{path}: the VM crashes: {vm_crash.title} (in {vm_crash.function})")
        judge = Judge(vm, vm_crash, data, self.max_vm_boots)
        judge.memo[hashlib.sha256(data).digest()] = vm_crash
        return judge


def run_passes(data: bytes, judge: Judge, log: list[dict[str, Any]], say: Progress) -> bytes:
    """The format passes (two rounds with the host oracle), then byte-level ddmin."""
    rounds = 2 if judge.oracle.source == "host" else 1
    model = parsable(data)
    for round_ in range(1, rounds + 1 if model is not None else 1):
        size = len(data)
        for p in FORMAT_PASSES:
            name = p.name if round_ == 1 else f"{p.name} (round {round_})"
            data, model = _one(name, data, judge, log, say, lambda m=model, p=p: p.run(m, judge).to_bytes())
            if model is None:
                break
        if len(data) == size or model is None:
            break
    if judge.oracle.source == "host" or model is None:
        cap = judge.max_runs
        if judge.oracle.source == "host":
            judge.max_runs = judge.oracle.runs + BYTE_PASS_HOST_RUNS
        data, model = _one("byte ddmin", data, judge, log, say, lambda d=data: byte_ddmin(d, judge))
        judge.max_runs = cap
    return data


def _one(name: str, data: bytes, judge: Judge, log: list[dict[str, Any]], say: Progress,
     step: Callable[[], bytes]) -> tuple[bytes, ChannelFile | None]:
    before, runs = len(data), judge.oracle.runs
    t0 = time.monotonic()
    stopped = False
    try:
        out = step()
    except BudgetExhausted:
        out, stopped = judge.best, True
    if len(out) > len(data) or not judge(out):
        out = data  # never keep a candidate the oracle did not accept
    used = judge.oracle.runs - runs
    say(f"{name}: {before} -> {len(out)} bytes, {used} {judge.oracle.source} run(s), "
        f"{time.monotonic() - t0:.1f} s" + (" (budget reached)" if stopped else ""))
    log.append({"pass": name, "oracle": judge.oracle.source, "bytes_before": before, "bytes_after": len(out),
                "runs": used, "budget_reached": stopped})
    return out, parsable(out)


@dataclass
class HostMinimized:
    data: bytes
    crash: Crash
    host_runs: int
    passes: list[dict[str, Any]]
    culprit: dict[str, Any]


def minimize_on_host(data: bytes, build: str = "vulnerable", progress: Progress | None = None) -> HostMinimized:
    """Minimise with the host build as the only oracle (no VM): what the tests and a campaign's
    quick path use.  Raises InputFileError when the host build does not crash on `data`."""
    say = progress or (lambda msg: None)
    with tempfile.TemporaryDirectory(prefix="harness-minimize-") as tmp:
        host = HostOracle(build, Path(tmp), file_name(291, 0, 1))
        target = host.run(data)
        if target is None:
            raise InputFileError(f"<{len(data)} bytes>: does not crash the {build} host build: nothing to minimise")
        passes: list[dict[str, Any]] = []
        final = run_passes(data, Judge(host, target, data), passes, say)
        return HostMinimized(final, target, host.runs, passes, describe(final, target, parsable(data)))
