#!/usr/bin/env python3
"""Throughput of content-file judgement with 1 worker against as many workers as cores.

Targets:   scaling efficiency (rate_N / rate_1 / N) at least 0.85 with N = os.cpu_count()
           workers, and the harness's memory under 200 MB per worker (peak RSS, VmHWM).
  A fixed batch of content files (--files, default 6: good, cf291-field21, zeroed,
  body-len-overflow, cf291-wildcard, truncated, then round again), each placed as
  C-00000291-00000000-000000NN.sys on a fresh Machine booted to its verdict
  (boot_loop_threshold=1 by default: every file is one boot; --threshold 2 judges crash files
  over two boots as `harness reproduce` does) and closed.
  (a) 1 worker:  one worker process takes the files from a queue, one after the other.
  (b) N workers: N worker processes (multiprocessing, spawn) take files from one shared queue,
                 each file on its own Machine with a unique slot (domain) name.
  Each machine is closed as the vm fixture closes it (the domain destroyed in the background,
  teardown.py), and a worker drains those teardowns before it reports done.
  Timed from the moment the ready workers are released until the last file is judged and every
  domain is destroyed; the worker
  start (spawn, imports) is measured but not counted.  Files per minute for each, speedup =
  rate_N / rate_1 (medians), efficiency = speedup / N.  Each worker reports its peak RSS
  (the worker process only: QEMU is libvirtd's child, not the worker's).

    python3 bench/throughput.py [--runs N] [--json] [--artifacts DIR] [--no-warmup] [-v]
                                [--files N] [--workers N] [--threshold 1|2] [--strict]
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import multiprocessing as mp
import os
import queue
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402
from harness.content.format import file_name  # noqa: E402
from harness.paths import CONTENT_FIXTURES  # noqa: E402
from harness.plugin import auto_workers  # noqa: E402
from harness.vm import teardown  # noqa: E402

TARGET_EFFICIENCY = 0.85
TARGET_RSS_MB = 200.0
# The batch, in queue order; --files N takes the first N of this list repeated.
FIXTURES = ["good.sys", "cf291-field21.sys", "zeroed.sys", "body-len-overflow.sys",
            "cf291-wildcard.sys", "truncated.sys"]
# The vulnerable sensor's verdicts (fixtures/content/expected.yaml); at threshold 1 a crash
# file's verdict is boot-loop too ("1 crashing boots in a row").
EXPECTED = {"good.sys": "healthy", "cf291-field21.sys": "boot-loop", "zeroed.sys": "content-rejected",
            "body-len-overflow.sys": "boot-loop", "cf291-wildcard.sys": "healthy",
            "truncated.sys": "boot-loop"}
RESULT_TIMEOUT_S = 4 * c.BOOT_TIMEOUT_S  # no result at all for this long: a worker is stuck
_PR_SET_PDEATHSIG = 1


def expected_verdict(fixture: str, threshold: int) -> str:
    return EXPECTED[fixture]


def peak_rss_kib() -> int:
    """This process's peak resident set (VmHWM), in KiB; ru_maxrss if /proc says nothing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --------------------------------------------------------------------------- worker process

def _worker_raise(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def worker(wid: int, setup: c.Setup, threshold: int, verbose: bool, tasks: Any, results: Any, go: Any) -> None:
    """One worker: take (index, slot, name, fixture) from `tasks` until None, judge each on a
    fresh Machine (c.run_harness, instrumented), put each result on `results`.  Its own
    Cleanup closes whatever machine is open on any exit; SIGTERM (also sent when the parent
    dies) and SIGINT end it through that cleanup."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _worker_raise)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass
    cleanup = c.Cleanup()
    try:
        results.put(("ready", wid, {"pid": os.getpid(), "t": time.monotonic(), "rss_kib": peak_rss_kib()}))
        go.wait()
        t_go = time.monotonic()
        busy = 0.0
        files = 0
        while True:
            item = tasks.get()
            if item is None:
                break
            index, slot, name, fixture = item
            t = time.monotonic()
            try:
                with c.instrumented():
                    r = c.run_harness(setup, cleanup, slot, {name: (CONTENT_FIXTURES / fixture).read_bytes()},
                                      threshold, wait=True, verbose=verbose, background_close=True)
                out = {"ok": True, "verdict": r.verdict, "reason": r.reason, "boots": r.boots,
                       "total_s": r.total_s, "boot_call_s": r.boot_call_s, "teardown_s": r.teardown_s,
                       "createXML_s": r.phases.get("createXML", 0.0),
                       "first_banner_s": r.banners[0] if r.banners else None, "artifacts": r.artifacts}
            except Exception as exc:  # reported by the parent as a problem; the worker goes on
                out = {"ok": False, "verdict": "-", "reason": f"{type(exc).__name__}: {exc}",
                       "artifacts": str(setup.root / slot)}
            end = time.monotonic()
            busy += end - t
            files += 1
            results.put(("file", wid, {"index": index, "slot": slot, "name": name, "fixture": fixture,
                                       "start": t, "end": end, "judge_s": end - t, **out}))
        teardown.drain(c.BOOT_TIMEOUT_S)  # the last machines' destroys: part of what the batch costs
        results.put(("done", wid, {"pid": os.getpid(), "files": files, "busy_s": busy,
                                   "t_go": t_go, "t_end": time.monotonic(), "peak_rss_kib": peak_rss_kib(),
                                   "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    except KeyboardInterrupt:
        pass
    finally:
        cleanup.run()


# --------------------------------------------------------------------------- one batch

@dataclasses.dataclass
class Batch:
    mode: str  # "1" or "N"
    workers: int
    run: int
    wall_s: float  # go -> the last file judged and every worker's background teardown done
    rate_per_min: float  # files judged (each with the expected verdict or not) per minute
    spawn_s: float  # Process.start() -> every worker ready (not counted)
    files: list[dict[str, Any]]
    workers_info: list[dict[str, Any]]


def batch_items(files: int, mode: str, run: int) -> list[tuple[int, str, str, str]]:
    items = []
    for i in range(files):
        fixture = FIXTURES[i % len(FIXTURES)]
        items.append((i, f"w{mode}-{run}-{i + 1:02d}", file_name(291, 0, i + 1), fixture))
    return items


def run_batch(setup: c.Setup, cleanup: c.Cleanup, mode: str, workers: int, run: int, args: Any,
              profile_prefix: str) -> Batch:
    ctx = mp.get_context("spawn")
    tasks = ctx.Queue()
    results = ctx.Queue()
    go = ctx.Event()
    items = batch_items(args.files, mode, run)
    for item in items:  # the sweep destroys any of these still defined, whatever happens
        cleanup.domain_names.add(f"{profile_prefix}-{setup.run_id}-{item[1]}")
        tasks.put(item)
    for _ in range(workers):
        tasks.put(None)
    procs = [ctx.Process(target=worker, args=(w, setup, args.threshold, args.verbose, tasks, results, go),
                         name=f"bench-worker-{w}", daemon=True) for w in range(workers)]
    t_spawn = time.monotonic()
    files: list[dict[str, Any]] = []
    info: list[dict[str, Any]] = []
    try:
        for p in procs:
            p.start()
        ready = 0
        while ready < workers:
            kind, wid, data = results.get(timeout=60)
            if kind == "ready":
                ready += 1
        spawn_s = time.monotonic() - t_spawn
        t_go = time.monotonic()
        go.set()
        while len(info) < workers:
            try:
                kind, wid, data = results.get(timeout=RESULT_TIMEOUT_S)
            except queue.Empty:
                raise TimeoutError(f"no worker result for {RESULT_TIMEOUT_S:.0f} s") from None
            if kind == "file":
                data["worker"] = wid
                data["start_s"] = data["start"] - t_go
                data["end_s"] = data["end"] - t_go
                files.append(data)
                exp = expected_verdict(data["fixture"], args.threshold)
                mark = "" if data["verdict"] == exp else f"  UNEXPECTED (expected {exp}: {data['reason']})"
                c.say(f"  worker {wid}: {data['fixture']} as {data['name']}: {data['verdict']} in "
                      f"{data['judge_s']:.3f} s ({len(files)}/{len(items)}){mark}")
            elif kind == "done":
                data["worker"] = wid
                info.append(data)
        # The batch ends when the last file is judged and every domain is gone (closes run in the
        # background as in the vm fixture, so their cost shows here and in the CPU they take).
        t_end = max([f["end"] for f in files] + [w["t_end"] for w in info]) if files else time.monotonic()
        for p in procs:
            p.join(timeout=30)
    finally:
        for p in procs:  # still alive after an error or Ctrl-C: SIGTERM runs the worker's cleanup
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=20)
            if p.is_alive():
                c.say(f"warning: worker pid {p.pid} did not exit 20 s after SIGTERM; killing it")
                p.kill()
                p.join(timeout=5)
    wall = t_end - t_go
    return Batch(mode, workers, run, wall, len(files) / wall * 60.0 if wall > 0 else 0.0, spawn_s,
                 sorted(files, key=lambda f: f["index"]), sorted(info, key=lambda w: w["worker"]))


# --------------------------------------------------------------------------- report

def phase_rows(b1: list[Batch], bn: list[Batch]) -> list[list[str]]:
    """Medians over every file of each mode: where a file's judgement time goes."""
    def med(batches: list[Batch], key: str) -> str:
        return c.fmt_s(c.median([f[key] for b in batches for f in b.files if f.get(key) is not None]))

    def derived(batches: list[Batch], fn: Any) -> str:
        return c.fmt_s(c.median([fn(f) for b in batches for f in b.files if f.get("ok")]))

    return [
        ["one file: worker takes it -> close() returned", med(b1, "judge_s"), med(bn, "judge_s")],
        ["  Machine() -> boot() returned (disk, XML, createXML, resume)", med(b1, "boot_call_s"),
         med(bn, "boot_call_s")],
        ["    of which libvirt createXML", med(b1, "createXML_s"), med(bn, "createXML_s")],
        ["  Machine() -> first kernel banner line", med(b1, "first_banner_s"), med(bn, "first_banner_s")],
        ["  boot() returned -> verdict (the guest runs)", derived(b1, lambda f: f["total_s"] - f["boot_call_s"]),
         derived(bn, lambda f: f["total_s"] - f["boot_call_s"])],
        ["  close(background=True): what the next file waits for", med(b1, "teardown_s"), med(bn, "teardown_s")],
    ]


def utilisation(b: Batch) -> float | None:
    """Busy worker-seconds over worker-seconds available (N x wall)."""
    busy = sum(w["busy_s"] for w in b.workers_info)
    return busy / (b.workers * b.wall_s) if b.wall_s > 0 and b.workers_info else None


def body(cleanup: c.Cleanup) -> int:
    parser = c.common_args(__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=len(FIXTURES),
                        help=f"content files per batch (default {len(FIXTURES)}, the fixture list repeated)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="workers of the parallel batch (default os.cpu_count())")
    parser.add_argument("--threshold", type=int, choices=(1, 2), default=1,
                        help="boot_loop_threshold: 1 = every file one boot (default); 2 = crash files "
                             "take two boots, as harness reproduce")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if args.runs < 1 or args.files < 1 or args.workers < 1:
        parser.error("--runs, --files and --workers must be at least 1")
    setup = c.prepare(args, "throughput")
    prefix = c.bench_profile().name_prefix
    cleanup.uri = c.bench_profile().uri
    n = args.workers
    c.say(f"throughput: {args.files} files per batch, 1 worker against {n} workers, threshold "
          f"{args.threshold}; auto_workers() would pick {auto_workers(c.bench_profile().memory_mib)}")
    if not args.no_warmup:
        c.warm_up(setup, cleanup, None)

    activity = c.Activity(cleanup, setup.run_id)
    batches: dict[str, list[Batch]] = {"1": [], "N": []}
    problems: list[str] = []

    def step(i: int, mode: str) -> None:
        workers = 1 if mode == "1" else n
        label = f"{workers} worker(s)"
        c.say(f"run {i + 1}/{args.runs}: {args.files} files with {label} ...")
        activity.check(label)
        b = run_batch(setup, cleanup, mode, workers, i + 1, args, prefix)
        activity.check(label)
        bad = [f for f in b.files if f["verdict"] != expected_verdict(f["fixture"], args.threshold)]
        for f in bad:
            problems.append(f"{f['artifacts']}: {f['fixture']} expected "
                            f"{expected_verdict(f['fixture'], args.threshold)}, got {f['verdict']} ({f['reason']})")
        if len(b.files) != args.files or bad:
            problems.append(f"run {i + 1} {label}: {len(b.files)}/{args.files} files judged, {len(bad)} "
                            "unexpected; batch left out")
            c.say(f"run {i + 1}/{args.runs}: {label}: UNEXPECTED results; batch left out")
            return
        batches[mode].append(b)
        rss = max(w["peak_rss_kib"] for w in b.workers_info) / 1024
        c.say(f"run {i + 1}/{args.runs}: {label}: {b.wall_s:.3f} s, {b.rate_per_min:.2f} files/min "
              f"(workers started in {b.spawn_s:.2f} s, not counted; peak RSS {rss:.1f} MB)")

    for i in range(args.runs):
        # Alternate the order, so a drift in host speed hits both sides alike.
        for mode in (["1", "N"] if i % 2 == 0 else ["N", "1"]):
            step(i, mode)

    med = c.median
    rate_1 = med([b.rate_per_min for b in batches["1"]])
    rate_n = med([b.rate_per_min for b in batches["N"]])
    speedup = rate_n / rate_1 if rate_1 and rate_n else None
    efficiency = speedup / n if speedup else None
    pass_eff = efficiency is not None and efficiency >= TARGET_EFFICIENCY
    peaks = [w["peak_rss_kib"] / 1024 for bs in batches.values() for b in bs for w in b.workers_info]
    max_rss = max(peaks) if peaks else None
    pass_rss = max_rss is not None and max_rss < TARGET_RSS_MB
    util_n = med([u for b in batches["N"] if (u := utilisation(b)) is not None])
    pair_eff = [bn.rate_per_min / b1.rate_per_min / n for b1, bn in zip(batches["1"], batches["N"])]

    results = {
        "rate_1_per_min": rate_1, "rate_n_per_min": rate_n, "workers": n, "speedup": speedup,
        "efficiency": efficiency, "target_efficiency": TARGET_EFFICIENCY, "pass_efficiency": pass_eff,
        "efficiency_per_run": pair_eff,
        "max_peak_rss_mb": max_rss, "target_rss_mb": TARGET_RSS_MB, "pass_rss": pass_rss,
        "wall_1_s": [b.wall_s for b in batches["1"]], "wall_n_s": [b.wall_s for b in batches["N"]],
        "utilisation_n": util_n, "auto_workers": auto_workers(c.bench_profile().memory_mib)}
    report = {"benchmark": "throughput", "host": c.host_description(), "runs": args.runs, "files": args.files,
              "threshold": args.threshold, "domain_type": setup.domain_type, "accel": setup.accel_reason,
              "artifacts": str(setup.root), "results": results, "problems": problems,
              "shared_host": activity.seen,
              "batches": {k: [dataclasses.asdict(b) for b in v] for k, v in batches.items()}}
    (setup.root / "throughput.json").write_text(json.dumps(report, indent=1) + "\n")

    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print()
        print(f"throughput: {args.runs} run(s) of {args.files} files, threshold {args.threshold}, domain type "
              f"{setup.domain_type}, {c.host_description()['cores']} cores; artifacts: {setup.root}")
        print()
        rows = [["1 worker", c.fmt_s(med(results["wall_1_s"])), f"{rate_1:.2f}" if rate_1 else "-", "1.000x", "-",
                 f"{len(batches['1'])}/{args.runs}"],
                [f"{n} workers", c.fmt_s(med(results["wall_n_s"])), f"{rate_n:.2f}" if rate_n else "-",
                 c.fmt_ratio(speedup), f"{efficiency:.3f}" if efficiency else "-", f"{len(batches['N'])}/{args.runs}"]]
        print(c.table(rows, ["batch (medians)", "wall", "files/min", "speedup", "efficiency", "good batches"]))
        print()
        print(f"scaling efficiency {efficiency:.3f} against target >= {TARGET_EFFICIENCY}: "
              f"{'PASS' if pass_eff else 'FAIL'}" if efficiency else "scaling efficiency: no data (FAIL)")
        print(f"peak worker RSS {max_rss:.1f} MB against target < {TARGET_RSS_MB:.0f} MB: "
              f"{'PASS' if pass_rss else 'FAIL'}" if max_rss else "peak RSS: no data (FAIL)")
        print(f"efficiency per run (paired): {', '.join(f'{e:.3f}' for e in pair_eff)}; "
              f"{n}-worker utilisation (busy / N x wall): {util_n:.3f}" if util_n else "")
        print()
        print("where a file's time goes (medians over every file):")
        print(c.table(phase_rows(batches["1"], batches["N"]), ["phase", "1 worker", f"{n} workers"]))
        for p in problems:
            print(f"problem: {p}")
        if activity.summary():
            print(f"warning: {activity.summary()}")
    c.say(f"done; results in {setup.root / 'throughput.json'}")
    if problems:
        return 1
    return 1 if args.strict and not (pass_eff and pass_rss) else 0


if __name__ == "__main__":
    sys.exit(c.main_wrapper(body))
