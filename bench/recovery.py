#!/usr/bin/env python3
"""Time to recover one boot-looping machine by each recovery path, against one plain boot,
measured in the same run.

No target number was given: the ratios are informational.
  (a) plain boot: a Machine with good.sys only (C-00000291-00000000-00000031.sys);
      before Machine() -> wait_verdict() returned "healthy".
  (b) for each path (safe-mode, recovery-env): a Machine with good.sys and
      cf291-field21.sys as C-00000291-00000000-00000032.sys (bad_update=True), booted to
      its boot-loop verdict (timed separately, not part of the recovery), then
      vm.recover(path) timed from the call to its return: destroy the looping domain,
      build the recovery medium, boot the recovery mode, run the sample script, boot
      normally to the healthy verdict.  RecoveryResult.seconds and
      seconds_from_first_crash are recorded too.  A recovery that does not end
      "recovered" (with the bad file, and only it, removed) is reported and left out.
Printed: the medians, and recover() / plain boot for each path.

    python3 bench/recovery.py [--runs N] [--json] [--artifacts DIR] [--no-warmup] [-v]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402
import harness.guest.linux_backend as backend_mod  # noqa: E402
import harness.recovery as recovery_mod  # noqa: E402
from harness.guest.linux_ref import build_data_disk  # noqa: E402
from harness.recovery import RECOVERY_PATHS, RecoverableMachine, RecoveryResult  # noqa: E402

BAD_NAME = c.CRASH_NAME  # C-00000291-00000000-00000032.sys, the bad update
LOOP_THRESHOLD = 2  # the built-in profile's: the loop the recovery starts from is a real boot loop

# The steps of recover(), in the order harness/recovery.py takes them.  Each is the time of
# one wrapped call, or (marked "gap") the time between two of them.
STEPS = [
    ("destroy_loop", "destroy() the looping domain"),
    ("prepare", "read the data disk, build the recovery medium (gap)"),
    ("boot_recovery", "boot(mode) of the recovery mode (disk, XML, createXML, resume)"),
    ("run_recovery", "recovery mode: resume -> script done (safe: healthy; env: powered off)"),
    ("destroy_recovery", "destroy() the recovery-mode domain"),
    ("compare", "read the data disk again, keep the removed files (gap)"),
    ("boot_normal", "boot() normal (XML, createXML, resume)"),
    ("run_normal", "normal boot: resume -> healthy verdict"),
    ("rest", "the rest (verdict.json, progress)"),
]


@dataclasses.dataclass
class RecoverySample:
    path: str
    slot: str
    loop_verdict: str
    loop_reason: str
    loop_crashing_boots: int
    loop_crash_function: str | None
    loop_s: float  # before Machine() -> wait_verdict() returned boot-loop (not part of the recovery)
    recover_call_s: float | None  # vm.recover(path): the call -> its return
    result: str  # recovered | failed | "-" (not attempted)
    reason: str
    seconds: float | None  # RecoveryResult.seconds
    seconds_from_first_crash: float | None  # RecoveryResult.seconds_from_first_crash
    stage: str | None
    script_rc: int | None
    removed: list[str]
    recovery_boots: int
    final_verdict: str | None
    final_loaded: list[str]
    steps: dict[str, float]  # see STEPS
    medium_build_s: float  # build_recovery_medium, inside "prepare"
    content_read_s: float  # both read_content_dir calls (debugfs)
    createXML_s: float  # both libvirt createXML calls, inside boot_recovery and boot_normal
    dom_destroy_s: float  # both libvirt dom.destroy calls, inside destroy_loop and destroy_recovery
    poweroff_wait_s: float | None  # recovery-env: lifecycle:shutdown (the guest powered off) ->
    # lifecycle:stopped (QEMU gone, libvirt says so), inside run_recovery; from events.jsonl
    teardown_s: float  # close() after the recovery (not part of it)
    artifacts: str


# --------------------------------------------------------------------------- instrumentation

@contextmanager
def recover_timed(m: c.Machine) -> Iterator[list[tuple[str, float, float]]]:
    """Time the calls recover() makes: Machine.destroy/boot/wait_verdict/wait_recovery_env on
    this instance, and build_recovery_medium/read_content_dir in the Linux backend.  Yields the
    list of (name, start, end) it fills; everything is put back on exit."""
    calls: list[tuple[str, float, float]] = []

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                calls.append((name, t, time.monotonic()))
        return wrapper

    methods = ["destroy", "boot", "wait_verdict", "wait_recovery_env"]
    functions = ["build_recovery_medium", "read_content_dir"]
    saved = {n: getattr(backend_mod, n) for n in functions}
    try:
        for n in methods:  # instance attributes: recover() calls machine.<n>()
            setattr(m, n, wrap(n, getattr(m, n)))
        for n in functions:
            setattr(backend_mod, n, wrap(n, saved[n]))
        yield calls
    finally:
        for n in methods:
            m.__dict__.pop(n, None)
        for n, fn in saved.items():
            setattr(backend_mod, n, fn)


def split_steps(calls: list[tuple[str, float, float]], t_call: float, t_ret: float) -> dict[str, float]:
    """The STEPS of one recover() call from the wrapped calls it made (empty when it stopped
    early: a failed recovery boot has no normal boot)."""
    outer = [x for x in calls if x[0] in ("destroy", "boot", "wait_verdict", "wait_recovery_env")]
    names = [x[0] for x in outer]
    if len(outer) != 6 or names[0] != "destroy" or names[1] != "boot" or names[3] != "destroy" \
            or names[4] != "boot" or names[5] != "wait_verdict":
        return {}
    d1, b1, w1, d2, b2, w2 = outer
    steps = {"destroy_loop": d1[2] - d1[1], "prepare": b1[1] - d1[2], "boot_recovery": b1[2] - b1[1],
             "run_recovery": w1[2] - w1[1], "destroy_recovery": d2[2] - d2[1], "compare": b2[1] - d2[2],
             "boot_normal": b2[2] - b2[1], "run_normal": w2[2] - w2[1]}
    # the gaps between boot() returning and the wait starting are a few µs; they go to "rest"
    steps["rest"] = (t_ret - t_call) - sum(steps.values())
    return steps


# --------------------------------------------------------------------------- one recovery

def run_recovery(setup: c.Setup, cleanup: c.Cleanup, slot: str, path: str, verbose: bool) -> RecoverySample:
    """A looping machine (good + bad update), booted to its boot-loop verdict, then recovered
    by `path`; closed (domain destroyed, disk removed) in any case."""
    directory = setup.root / slot
    directory.mkdir(parents=True, exist_ok=True)
    progress = (lambda msg: c.say(f"  harness: {msg}")) if verbose else None
    t0 = time.monotonic()
    m = RecoverableMachine(c.MachineSpec(profile=c.bench_profile(LOOP_THRESHOLD), guest=setup.guest,
                                artifacts=directory, run_id=setup.run_id, test_id=slot, slot=slot),
                  progress=progress)
    cleanup.machine(m)
    result: RecoveryResult | None = None
    recover_s: float | None = None
    steps: dict[str, float] = {}
    calls: list[tuple[str, float, float]] = []
    phases: dict[str, float] = {}
    # Instrumented from the first boot on: the libvirt connection the machine opens then is the
    # one recover() uses, so its createXML and dom.destroy are timed (only while REC is active).
    with c.instrumented():
        try:
            m.install_content({c.GOOD_NAME: c.GOOD})
            m.install_content({BAD_NAME: c.CF291}, bad_update=True)
            m.boot()
            loop = m.wait_verdict()
            loop_s = time.monotonic() - t0
            looping = (loop.verdict == "boot-loop" and loop.crashing_boots == LOOP_THRESHOLD
                       and loop.crash is not None and loop.crash.function == c.SENSOR_CRASH_FUNCTION)
            if looping:
                c.say(f"  {slot}: boot-loop after {loop.crashing_boots} crashing boots, {loop_s:.3f} s; "
                      f"recovering by {path} ...")
                with recover_timed(m) as calls:
                    c.REC.reset()
                    c.REC.active = True
                    try:
                        t_call = time.monotonic()
                        result = m.recover(path)  # type: ignore[arg-type]
                        t_ret = time.monotonic()
                    finally:
                        c.REC.active = False
                        phases = dict(c.REC.phases)
                recover_s = t_ret - t_call
                steps = split_steps(calls, t_call, t_ret)
        finally:
            t_close = time.monotonic()
            cleanup.close_machine(m)
            teardown = time.monotonic() - t_close
    final = result.final if result else None
    return RecoverySample(
        path=path, slot=slot, loop_verdict=loop.verdict, loop_reason=loop.reason,
        loop_crashing_boots=loop.crashing_boots, loop_crash_function=loop.crash.function if loop.crash else None,
        loop_s=loop_s, recover_call_s=recover_s, result=result.result if result else "-",
        reason=result.reason if result else "not attempted: the machine did not loop as expected",
        seconds=result.seconds if result else None,
        seconds_from_first_crash=result.seconds_from_first_crash if result else None,
        stage=result.stage if result else None, script_rc=result.script_rc if result else None,
        removed=list(result.removed) if result else [], recovery_boots=result.boots if result else 0,
        final_verdict=final.verdict if final else None,
        final_loaded=list(final.boot_log[-1].loaded) if final and final.boot_log else [],
        steps=steps,
        medium_build_s=sum(e - s for n, s, e in calls if n == "build_recovery_medium"),
        content_read_s=sum(e - s for n, s, e in calls if n == "read_content_dir"),
        createXML_s=phases.get("createXML", 0.0), dom_destroy_s=phases.get("close:dom.destroy", 0.0),
        poweroff_wait_s=poweroff_wait(directory / "events.jsonl") if path == "recovery-env" else None,
        teardown_s=teardown, artifacts=str(directory))


def poweroff_wait(events_file: Path) -> float | None:
    """In a recovery-environment boot: from the guest's power-off (lifecycle:shutdown:*) to the
    stopped event wait_recovery_env() returns on (lifecycle:stopped:*)."""
    if not events_file.exists():
        return None
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    starts = [i for i, e in enumerate(events) if e["event"] == "harness:start" and e.get("mode") == "recovery"]
    if not starts:
        return None
    after = events[starts[-1]:]
    down = next((e["t"] for e in after if e["event"].startswith("lifecycle:shutdown")), None)
    stopped = next((e["t"] for e in after if e["event"].startswith("lifecycle:stopped")), None)
    return stopped - down if down is not None and stopped is not None else None


def sample_problem(r: RecoverySample) -> str | None:
    """Why this sample is not a good recovery (None when it is)."""
    if r.loop_verdict != "boot-loop" or r.loop_crashing_boots != LOOP_THRESHOLD \
            or r.loop_crash_function != c.SENSOR_CRASH_FUNCTION:
        return (f"{r.artifacts}: expected boot-loop after {LOOP_THRESHOLD} crashing boots in "
                f"{c.SENSOR_CRASH_FUNCTION}, got {r.loop_verdict} ({r.loop_reason}; crash in "
                f"{r.loop_crash_function}); no recovery attempted, sample left out")
    if r.result != "recovered":
        return f"{r.artifacts}: recovery by {r.path} ended {r.result}: {r.reason}; sample left out"
    if r.removed != [BAD_NAME] or r.final_verdict != "healthy" or r.final_loaded != [c.GOOD_NAME]:
        return (f"{r.artifacts}: recovery by {r.path} said recovered, but removed {r.removed}, final "
                f"verdict {r.final_verdict}, sensor loaded {r.final_loaded} (expected {BAD_NAME} "
                f"removed, healthy on {c.GOOD_NAME}); sample left out")
    return None


def warm_up_recovery(setup: c.Setup) -> None:
    """Untimed: the recovery initramfs into the page cache, mkfs/debugfs of the medium build and
    the content read (the machine bring-up is warmed by c.warm_up)."""
    assert setup.guest.recovery_initrd is not None, "the reference guest has no recovery initramfs"
    setup.guest.recovery_initrd.read_bytes()
    with tempfile.TemporaryDirectory(prefix="bench-recovery-warm-") as tmp:
        disk = Path(tmp) / "disk.img"
        build_data_disk(disk, {BAD_NAME: c.CF291})
        backend_mod.read_content_dir(disk)
        backend_mod.build_recovery_medium(Path(tmp) / "medium.img", backend_mod.SAMPLE_SCRIPT,
                                           recovery_mod.bad_update_list({BAD_NAME: c.CF291}))


# --------------------------------------------------------------------------- report

def step_rows(samples: dict[str, list[RecoverySample]]) -> list[list[str]]:
    med = c.median
    rows = []
    for key, label in STEPS:
        rows.append([label, *[c.fmt_s(med([r.steps[key] for r in samples[p] if r.steps]))
                              for p in RECOVERY_PATHS]])
        if key == "prepare":
            rows.append(["  of which build_recovery_medium", *[c.fmt_s(med([r.medium_build_s for r in samples[p]]))
                                                               for p in RECOVERY_PATHS]])
        if key == "run_recovery":
            rows.append(["  of which guest power-off -> libvirt's stopped event",
                         *[c.fmt_s(med([r.poweroff_wait_s for r in samples[p] if r.poweroff_wait_s is not None]))
                           for p in RECOVERY_PATHS]])
    rows.append(["= recover() call", *[c.fmt_s(med([r.recover_call_s for r in samples[p]]))
                                       for p in RECOVERY_PATHS]])
    rows.append(["libvirt createXML, both boots (inside the boot() rows)",
                 *[c.fmt_s(med([r.createXML_s for r in samples[p]])) for p in RECOVERY_PATHS]])
    rows.append(["libvirt dom.destroy, both (inside the destroy() rows)",
                 *[c.fmt_s(med([r.dom_destroy_s for r in samples[p]])) for p in RECOVERY_PATHS]])
    rows.append(["read_content_dir, both (debugfs; in the gaps)",
                 *[c.fmt_s(med([r.content_read_s for r in samples[p]])) for p in RECOVERY_PATHS]])
    return rows


def body(cleanup: c.Cleanup) -> int:
    parser = c.common_args(__doc__.split("\n\n")[0])
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    setup = c.prepare(args, "recovery")
    if setup.guest.recovery_initrd is None:
        c.say("error: the reference guest has no recovery initramfs; rebuild it (build_reference_guest)")
        return 1
    if not args.no_warmup:
        c.warm_up(setup, cleanup, None)
        warm_up_recovery(setup)

    plain: list[c.HarnessRun] = []
    good: dict[str, list[RecoverySample]] = {p: [] for p in RECOVERY_PATHS}
    every: list[RecoverySample] = []
    problems: list[str] = []
    activity = c.Activity(cleanup, setup.run_id)

    def step_plain(i: int) -> None:
        label = "plain boot (good.sys) to healthy"
        c.say(f"run {i + 1}/{args.runs}: {label} ...")
        activity.check(label)
        with c.instrumented():
            r = c.run_harness(setup, cleanup, f"boot-{i + 1}", {c.GOOD_NAME: c.GOOD}, LOOP_THRESHOLD,
                              wait=True, verbose=args.verbose)
        activity.check(label)
        if r.verdict != "healthy":
            problems.append(f"{r.artifacts}: expected healthy, got {r.verdict} ({r.reason}); sample left out")
            c.say(f"run {i + 1}/{args.runs}: {label}: UNEXPECTED {r.verdict} ({r.reason}); left out")
            return
        plain.append(r)
        c.say(f"run {i + 1}/{args.runs}: {label}: {r.total_s:.3f} s")

    def step_recover(i: int, path: str) -> None:
        label = f"recover by {path}"
        c.say(f"run {i + 1}/{args.runs}: looping machine, then {label} ...")
        activity.check(label)
        r = run_recovery(setup, cleanup, f"{path}-{i + 1}", path, args.verbose)
        activity.check(label)
        every.append(r)
        why = sample_problem(r)
        if why is not None:
            problems.append(why)
            c.say(f"run {i + 1}/{args.runs}: {label}: UNEXPECTED ({r.result}: {r.reason}); left out")
            return
        good[path].append(r)
        c.say(f"run {i + 1}/{args.runs}: {label}: recover() {r.recover_call_s:.3f} s "
              f"(RecoveryResult.seconds {r.seconds:.3f} s, from the first crash "
              f"{c.fmt_s(r.seconds_from_first_crash)}); boot loop before it {r.loop_s:.3f} s")

    steps: list[Callable[[int], None]] = [step_plain] + [
        (lambda i, p=p: step_recover(i, p)) for p in RECOVERY_PATHS]
    for i in range(args.runs):
        # Alternate the order, so a drift in host speed hits the baseline and the paths alike.
        for step in (steps if i % 2 == 0 else steps[::-1]):
            step(i)

    med = c.median
    plain_med = med([r.total_s for r in plain])
    results: dict[str, Any] = {
        "plain_boot": {"median_s": plain_med, "samples_s": [r.total_s for r in plain]},
        "informational": True,
    }
    rows = [["plain boot (good.sys): Machine() -> healthy", c.fmt_s(plain_med), "1.000x" if plain_med else "-",
             f"{len(plain)}/{args.runs}"]]
    detail = []
    for p in RECOVERY_PATHS:
        s = good[p]
        call = med([r.recover_call_s for r in s])
        secs = med([r.seconds for r in s])
        from_crash = med([r.seconds_from_first_crash for r in s if r.seconds_from_first_crash is not None])
        loop = med([r.loop_s for r in s])
        ratio = call / plain_med if call and plain_med else None
        results[p] = {
            "recover_call_median_s": call, "ratio_to_plain_boot": ratio,
            "result_seconds_median_s": secs, "seconds_from_first_crash_median_s": from_crash,
            "ratio_from_first_crash_to_plain_boot": from_crash / plain_med if from_crash and plain_med else None,
            "boot_loop_median_s": loop, "recovered": len(s), "attempted": args.runs,
            "recover_call_s": [r.recover_call_s for r in s], "result_seconds_s": [r.seconds for r in s],
            "seconds_from_first_crash_s": [r.seconds_from_first_crash for r in s],
            "boot_loop_s": [r.loop_s for r in s]}
        rows.append([f"recover by {p}: the recover() call", c.fmt_s(call), c.fmt_ratio(ratio),
                     f"{len(s)}/{args.runs}"])
        detail.append([p, c.fmt_s(secs), c.fmt_s(from_crash),
                       c.fmt_ratio(from_crash / plain_med if from_crash and plain_med else None), c.fmt_s(loop)])

    report = {"benchmark": "recovery", "host": c.host_description(), "runs": args.runs,
              "domain_type": setup.domain_type, "accel": setup.accel_reason, "artifacts": str(setup.root),
              "loop_threshold": LOOP_THRESHOLD, "results": results, "problems": problems,
              "shared_host": activity.seen,
              "samples": {"plain_boots": [dataclasses.asdict(r) for r in plain],
                          "recoveries": [dataclasses.asdict(r) for r in every]}}
    (setup.root / "recovery.json").write_text(json.dumps(report, indent=1) + "\n")

    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print()
        print(f"recovery: {args.runs} run(s), domain type {setup.domain_type}, "
              f"{c.host_description()['cores']} cores; artifacts: {setup.root}")
        print("(no target: the ratios are informational)")
        print()
        print(c.table(rows, ["measurement (medians)", "time", "/ plain boot", "recovered"]))
        print()
        print(c.table(detail, ["path", "RecoveryResult.seconds", "seconds_from_first_crash",
                               "from crash / plain boot", f"boot loop before ({LOOP_THRESHOLD} crashes)"]))
        print()
        print("where the time goes in recover() (medians):")
        print(c.table(step_rows(good), ["step", *RECOVERY_PATHS]))
        for p in problems:
            print(f"problem: {p}")
        if activity.summary():
            print(f"warning: {activity.summary()}")
    c.say(f"done; results in {setup.root / 'recovery.json'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(c.main_wrapper(body))
