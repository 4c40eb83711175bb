"""One harness machine driven as a test drives it, timed phase by phase; the warm-up."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import _repo  # noqa: F401  (the checkout on sys.path)
from _cleanup import Cleanup
from _instrument import REC, instrumented
from _qemu_proc import cpu_cgroup, qemu_pid_of_domain, vcpu_seconds
from _raw_qemu import warm_raw
from _report import say
from _setup import BANNER, CF291, CRASH_NAME, PANIC, Setup, bench_profile

from harness.vm.machine import Machine, MachineSpec

@dataclasses.dataclass
class HarnessRun:
    verdict: str
    reason: str
    boots: int
    crashing_boots: int
    crash_function: str | None  # where the first crash of the verdict happened
    total_s: float  # before Machine() -> wait_verdict() returned
    boot_call_s: float  # before Machine() -> boot() returned (the harness's bring-up)
    phases: dict[str, float]  # seconds in each wrapped call during boot(); close:* during close()
    ctor_s: float
    install_s: float
    create_begin_s: float  # offsets from the start
    create_end_s: float
    boot_return_s: float
    banners: list[float]  # offsets at which the monitor got each banner line
    panics: list[float]
    teardown_s: float
    artifacts: str
    events: list[dict[str, Any]]
    vcpu_s: float | None = None  # CPU seconds of QEMU's vCPU thread at the verdict (guest paused)
    exec_s: float | None = None  # createXML called -> libvirt starts QEMU ("starting up" in domain.log)
    cpu_cgroup: str | None = None  # QEMU's cgroup in the cpu controller's hierarchy


def qemu_started_wall(domain_log: Path) -> float | None:
    """The wall-clock time (ms resolution) at which libvirt started QEMU: the first line of its
    domain log, "2026-12-03 06:51:47.531+0000: starting up libvirt version: ..."."""
    try:
        with domain_log.open(errors="replace") as f:
            first = f.readline()
    except OSError:
        return None
    stamp, _, rest = first.partition(": ")
    if not rest.startswith("starting up"):
        return None
    try:
        return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f%z").timestamp()
    except ValueError:
        return None


def run_harness(setup: Setup, cleanup: Cleanup, slot: str, content: dict[str, bytes], threshold: int,
                wait: bool, verbose: bool = False, background_close: bool = False) -> HarnessRun:
    """One machine, end to end, as a test drives it: Machine(), install_content(), boot(),
    then (if `wait`) wait_verdict(); closed (domain destroyed, disk removed) in any case; with
    `background_close` as the vm fixture closes it (teardown_s is then what the caller waited
    for, and the destroy goes on in the background: drain harness.vm.teardown to wait for it)."""
    directory = setup.root / slot
    directory.mkdir(parents=True, exist_ok=True)
    progress = (lambda msg: say(f"  harness: {msg}")) if verbose else None
    REC.reset()
    banners: list[float] = []
    panics: list[float] = []
    t0 = time.monotonic()
    m = Machine(MachineSpec(profile=bench_profile(threshold), guest=setup.guest, artifacts=directory,
                            run_id=setup.run_id, test_id=slot, slot=slot), progress=progress)
    cleanup.machine(m)
    t_ctor = time.monotonic()
    try:
        original = m._on_line

        def on_line(line: str) -> None:  # the monitor's own input, timed as it arrives
            now = time.monotonic() - t0
            if BANNER in line:
                banners.append(now)
            if PANIC in line:
                panics.append(now)
            original(line)

        m._on_line = on_line  # type: ignore[method-assign]  # boot() hands self._on_line to the console
        m.install_content(content)
        t_inst = time.monotonic()
        REC.active = True
        try:
            m.boot()
        finally:
            REC.active = False
        t_boot = time.monotonic()
        verdict = None
        vcpu = cgroup = None
        if wait:
            verdict = m.wait_verdict()
        t_end = time.monotonic()
        pid = qemu_pid_of_domain(m.name)
        if pid is not None:
            vcpu, cgroup = vcpu_seconds(pid), cpu_cgroup(pid)
    finally:
        t_close = time.monotonic()
        REC.active = True  # times the parts of close() too (close:* phases)
        try:
            cleanup.close_machine(m, background=background_close)
        finally:
            REC.active = False
        teardown = time.monotonic() - t_close
    events = []
    events_file = directory / "events.jsonl"
    if events_file.exists():
        events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    marks = REC.marks
    started = qemu_started_wall(directory / "domain.log")
    exec_s = started - marks["create_begin_wall"] if started and "create_begin_wall" in marks else None
    return HarnessRun(
        verdict=verdict.verdict if verdict else "-", reason=verdict.reason if verdict else "",
        boots=verdict.boots if verdict else 0, crashing_boots=verdict.crashing_boots if verdict else 0,
        crash_function=verdict.crash.function if verdict and verdict.crash else None,
        total_s=t_end - t0, boot_call_s=t_boot - t0, phases=dict(REC.phases),
        ctor_s=t_ctor - t0, install_s=t_inst - t_ctor,
        create_begin_s=marks.get("create_begin", t0) - t0, create_end_s=marks.get("create_end", t0) - t0,
        boot_return_s=t_boot - t0, banners=banners, panics=panics, teardown_s=teardown,
        artifacts=str(directory), events=events, vcpu_s=vcpu if wait else None, cpu_cgroup=cgroup,
        exec_s=exec_s)


def warm_up(setup: Setup, cleanup: Cleanup, disk: Path | None) -> None:
    """Untimed: page cache (kernel, initrd, QEMU), libvirt's event loop thread, lazy imports."""
    if disk is None:
        say("warm-up: one harness bring-up (not counted)")
    else:
        say("warm-up: raw QEMU to the kernel banner, one harness bring-up (not counted)")
        warm_raw(setup.guest, setup.domain_type, cleanup, disk)
    with instrumented():
        run_harness(setup, cleanup, "warmup", {CRASH_NAME: CF291}, 1, wait=False)
