#!/usr/bin/env python3
"""Campaign throughput: the snapshot fast path against the boot path, on the same files in the same run.

Targets (issue 12):  speedup (fast files/min per worker over boot files/min per worker) >= 5;
                     the crash verdict from a restored snapshot <= 1.0 s median;
                     scaling of the fast path from 1 to 2 workers >= 0.9 (rate_2 / (2 x rate_1)).
  A fixed batch of content files (--files, default 6: good, cf291-field21, zeroed,
  body-len-overflow, cf291-wildcard, truncated, then round again), each judged as
  C-00000291-00000000-000000NN.sys:
  (a) boot path, 1 worker:  harness.campaign.judge.BootJudge (a fresh machine booted per file);
  (b) fast path, 1 worker:  harness.fastpath.SnapshotJudge (a restored snapshot per file);
  (c) fast path, 2 workers: two threads, a judge each, one shared queue.
  By default every crash file's verdict is its first crash on both paths (boot_loop_threshold 1,
  SnapshotJudge(confirm_loop=False)); --confirm-loop judges with the profile's threshold (2) on
  both, each crash then confirmed by a real reboot. A batch is timed from its first file to its
  last verdict plus the background teardown of its last machines. The snapshot itself is made (or
  found in the cache) before, untimed, and reported. The crash verdict is one judge() call on a
  crash file (the first crash: confirm_loop=False), against `restore_s`, the restore alone
  (virDomainRestoreFlags): the limit of a verdict that restores on the file's time. The judge
  restores each file's machine ahead, while the last file runs (harness/fastpath/ahead.py), so
  a verdict can take less than the restore.

    python3 bench/campaign.py [--runs N] [--files N] [--confirm-loop] [--json] [--artifacts DIR]
                              [--no-warmup] [--strict] [-v]
"""

from __future__ import annotations

import dataclasses
import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402
import libvirt  # noqa: E402
from harness.campaign.judge import BootJudge  # noqa: E402
from harness.content.format import file_name  # noqa: E402
from harness.fastpath import SnapshotJudge  # noqa: E402
from harness.paths import CONTENT_FIXTURES  # noqa: E402
from harness.vm import teardown  # noqa: E402

TARGET_SPEEDUP = 5.0
TARGET_CRASH_S = 1.0
TARGET_SCALING = 0.9
FIXTURES = ["good.sys", "cf291-field21.sys", "zeroed.sys", "body-len-overflow.sys", "cf291-wildcard.sys",
            "truncated.sys"]
EXPECTED = {"good.sys": "healthy", "cf291-field21.sys": "boot-loop", "zeroed.sys": "content-rejected",
            "body-len-overflow.sys": "boot-loop", "cf291-wildcard.sys": "healthy", "truncated.sys": "boot-loop"}
CRASH_RUNS_CONFIRMED = 3  # with --confirm-loop: crash verdicts measured apart, on a judge that stops at the first crash


@dataclasses.dataclass
class Batch:
    path: str  # boot | fast
    workers: int
    run: int
    wall_s: float
    rate_per_worker: float  # files per minute per worker
    files: list[dict[str, Any]]


def items(n: int) -> list[tuple[int, str]]:
    return [(i, FIXTURES[i % len(FIXTURES)]) for i in range(n)]


def run_batch(path: str, judges: list[Any], n_files: int, run: int, root: Path) -> Batch:
    """Judge the batch with one thread per judge over a shared queue; time it to the last
    verdict and the last background teardown."""
    tasks: queue.Queue[tuple[int, str] | None] = queue.Queue()
    for item in items(n_files):
        tasks.put(item)
    for _ in judges:
        tasks.put(None)
    files: list[dict[str, Any]] = []
    lock = threading.Lock()
    errors: list[str] = []

    def worker(wid: int, judge: Any) -> None:
        while (item := tasks.get()) is not None:
            index, fixture = item
            data = (CONTENT_FIXTURES / fixture).read_bytes()
            t = time.monotonic()
            try:
                verdict = judge.judge(file_name(291, 0, index + 1), data,
                                      root / f"{path}-w{len(judges)}-r{run}" / f"{index:02d}-{fixture.removesuffix('.sys')}")
                out = {"verdict": verdict.verdict, "reason": verdict.reason, "boots": verdict.boots}
            except Exception as exc:  # reported as a problem; the batch goes on
                out = {"verdict": "-", "reason": f"{type(exc).__name__}: {exc}", "boots": 0}
                with lock:
                    errors.append(out["reason"])
            end = time.monotonic()
            last = getattr(judge, "last", {}) if path == "fast" else {}
            record = {"index": index, "fixture": fixture, "worker": wid, "judge_s": end - t,
                      "restore_s": last.get("restore_s"), "fast_path": last.get("path"), **out}
            with lock:
                files.append(record)
            mark = "" if out["verdict"] == EXPECTED[fixture] else f"  UNEXPECTED ({out['reason']})"
            c.say(f"  {path} w{wid}: {fixture}: {out['verdict']} in {end - t:.2f} s{mark}")

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w, j), name=f"bench-{path}-{w}", daemon=True)
               for w, j in enumerate(judges)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    teardown.drain(c.BOOT_TIMEOUT_S)  # the last machines' destroys: part of what the batch costs
    wall = time.monotonic() - start
    rate = len(files) / wall * 60.0 / len(judges) if wall > 0 else 0.0
    return Batch(path, len(judges), run, wall, rate, sorted(files, key=lambda f: f["index"]))


class JudgeActivity(c.Activity):
    """Other sessions' QEMU processes (the judges' own domains are named after their run ids)."""

    def __init__(self, cleanup: c.Cleanup, run_id: str, ours: list[str]) -> None:
        super().__init__(cleanup, run_id)
        self.ours = ours

    def check(self, step: str) -> None:
        others = [q for q in c.foreign_qemu(self.cleanup, self.run_id) if not any(o in q for o in self.ours)]
        if others:
            self.seen.append({"step": step, "qemu": others})
            c.say(f"warning: other QEMU running during '{step}': {len(others)} process(es) (numbers noisy)")


def sweep(uri: str, prefixes: list[str]) -> None:
    """Destroy any domain of this benchmark's judges still running (after an error or Ctrl-C)."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return
    try:
        for dom in conn.listAllDomains():
            if any(dom.name().startswith(p) for p in prefixes):
                c.say(f"sweep: destroying leftover domain {dom.name()}")
                try:
                    dom.destroy()
                except libvirt.libvirtError:
                    pass
    finally:
        conn.close()


def body(cleanup: c.Cleanup) -> int:
    parser = c.common_args(__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=len(FIXTURES), help=f"files per batch (default {len(FIXTURES)})")
    parser.add_argument("--confirm-loop", action="store_true",
                        help="confirm each crash by a real reboot on both paths (the profile's threshold, 2)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if args.runs < 1 or args.files < 1:
        parser.error("--runs and --files must be at least 1")
    setup = c.prepare(args, "campaign")
    profile = c.bench_profile(threshold=2 if args.confirm_loop else 1)
    cleanup.uri = profile.uri
    log: Callable[[str], None] = (lambda m: c.say(f"    {m}")) if args.verbose else (lambda _m: None)
    c.say(f"campaign: {args.files} files per batch, boot path against fast path, "
          f"{'crashes confirmed by a reboot' if args.confirm_loop else 'the first crash is the verdict'}")
    t = time.monotonic()
    fast = [SnapshotJudge(profile, "vulnerable", log, confirm_loop=args.confirm_loop) for _ in range(2)]
    snapshot_s = time.monotonic() - t
    c.say(f"fast path: 2 judges ready in {snapshot_s:.1f} s (snapshot {fast[0].snapshot.key[:12]}, made in "
          f"{fast[0].snapshot.built_s:.1f} s when it was built)")
    boot = BootJudge(profile, "vulnerable", log)
    crash_judge = SnapshotJudge(profile, "vulnerable", log, confirm_loop=False) if args.confirm_loop else None
    judges: list[Any] = [*fast, boot, *([crash_judge] if crash_judge else [])]
    prefixes = [f"{profile.name_prefix}-{j.run_id}" for j in judges]
    activity = JudgeActivity(cleanup, setup.run_id, [j.run_id for j in judges])
    batches: list[Batch] = []
    crash_extra: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        if not args.no_warmup:
            c.say("warm-up: one file on each path (not counted)")
            for j in (fast[0], boot):
                j.judge(file_name(291, 0, 99), c.GOOD, setup.root / "warmup" / type(j).__name__)
            teardown.drain(c.BOOT_TIMEOUT_S)
        plan = [("boot", [boot]), ("fast", [fast[0]]), ("fast", fast)]
        for run in range(1, args.runs + 1):
            for path, js in (plan if run % 2 else list(reversed(plan))):
                label = f"{path} path, {len(js)} worker(s)"
                c.say(f"run {run}/{args.runs}: {label} ...")
                activity.check(label)
                b = run_batch(path, js, args.files, run, setup.root)
                activity.check(label)
                bad = [f for f in b.files if f["verdict"] != EXPECTED[f["fixture"]]]
                problems += [f"run {run} {label}: {f['fixture']}: expected {EXPECTED[f['fixture']]}, got "
                             f"{f['verdict']} ({f['reason']})" for f in bad]
                if bad or len(b.files) != args.files:
                    c.say(f"run {run}: {label}: UNEXPECTED results; batch left out")
                    continue
                batches.append(b)
                c.say(f"run {run}/{args.runs}: {label}: {b.wall_s:.2f} s, {b.rate_per_worker:.1f} files/min per worker")
            if crash_judge is not None:
                for k in range(CRASH_RUNS_CONFIRMED):
                    t = time.monotonic()
                    v = crash_judge.judge(c.CRASH_NAME, c.CF291, setup.root / f"crash-r{run}-{k}")
                    crash_extra.append({"judge_s": time.monotonic() - t, "restore_s": crash_judge.last.get("restore_s"),
                                        "verdict": v.verdict, "fast_path": crash_judge.last.get("path")})
    finally:
        for j in judges:
            try:
                j.close()
            except Exception as exc:
                c.say(f"warning: closing a judge: {exc}")
        teardown.drain(c.BOOT_TIMEOUT_S)
        sweep(profile.uri, prefixes)

    med = c.median
    rate = {key: med([b.rate_per_worker for b in batches if (b.path, b.workers) == key])
            for key in (("boot", 1), ("fast", 1), ("fast", 2))}
    boot_rate, fast_rate, fast2 = rate[("boot", 1)], rate[("fast", 1)], rate[("fast", 2)]
    speedup = fast_rate / boot_rate if fast_rate and boot_rate else None
    scaling = fast2 / fast_rate if fast2 and fast_rate else None  # per-worker rate at 2 over at 1
    # The crash verdict and the restore: one worker's files (two workers share the cores).
    one_worker_fast = [f for b in batches if (b.path, b.workers) == ("fast", 1) for f in b.files]
    fast_files = [f for f in one_worker_fast if f["fast_path"] == "snapshot"]
    crashes = crash_extra if args.confirm_loop else [f for f in fast_files if EXPECTED[f["fixture"]] == "boot-loop"]
    crash_s = med([f["judge_s"] for f in crashes if f["verdict"] == "boot-loop"])
    restore_s = med([f["restore_s"] for f in [*fast_files, *crash_extra] if f.get("restore_s") is not None])
    results = {
        "speedup": speedup, "fast_files_per_min": fast_rate, "boot_files_per_min": boot_rate,
        "fast_files_per_min_2_workers": fast2, "scaling": scaling, "crash_verdict_median_s": crash_s,
        "restore_median_s": restore_s, "crash_over_restore": crash_s / restore_s if crash_s and restore_s else None,
        "fast_judge_median_s": med([f["judge_s"] for f in one_worker_fast]),
        "boot_judge_median_s": med([f["judge_s"] for b in batches if b.path == "boot" for f in b.files]),
        "targets": {"speedup": TARGET_SPEEDUP, "crash_verdict_median_s": TARGET_CRASH_S, "scaling": TARGET_SCALING},
        "pass": {"speedup": speedup is not None and speedup >= TARGET_SPEEDUP,
                 "crash_verdict": crash_s is not None and crash_s <= TARGET_CRASH_S,
                 "scaling": scaling is not None and scaling >= TARGET_SCALING},
        "confirm_loop": args.confirm_loop, "files": args.files, "runs": args.runs,
        "snapshot_key": fast[0].snapshot.key[:16], "snapshot_built_s": fast[0].snapshot.built_s,
        "judges_ready_s": snapshot_s, "domain_type": setup.domain_type, "host": c.host_description(),
        "artifacts": str(setup.root), "problems": problems, "shared_host": activity.seen,
        "batches": [dataclasses.asdict(b) for b in batches], "crash_runs": crash_extra,
    }
    (setup.root / "campaign.json").write_text(json.dumps(results, indent=1) + "\n")
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print_report(results, args)
    c.say(f"done; results in {setup.root / 'campaign.json'}")
    if problems:
        return 1
    return 1 if args.strict and not all(results["pass"].values()) else 0


def print_report(r: dict[str, Any], args: Any) -> None:
    def num(v: float | None, fmt: str = "{:.1f}") -> str:
        return "-" if v is None else fmt.format(v)

    print()
    print(f"campaign: {args.runs} run(s) of {args.files} files, domain type {r['domain_type']}, "
          f"{'crashes confirmed by a reboot' if args.confirm_loop else 'the first crash is the verdict'}; "
          f"artifacts: {r['artifacts']}")
    print()
    print(c.table([["boot path, 1 worker", num(r["boot_files_per_min"]), c.fmt_s(r["boot_judge_median_s"])],
                   ["fast path, 1 worker", num(r["fast_files_per_min"]), c.fmt_s(r["fast_judge_median_s"])],
                   ["fast path, 2 workers", num(r["fast_files_per_min_2_workers"]), "-"]],
                  ["batch (medians)", "files/min per worker", "one file"]))
    print()
    verdict = lambda ok: "PASS" if ok else "FAIL (missed)"  # noqa: E731
    print(f"speedup {num(r['speedup'], '{:.2f}')}x against target >= {TARGET_SPEEDUP}: {verdict(r['pass']['speedup'])}")
    print(f"crash verdict {c.fmt_s(r['crash_verdict_median_s'])} median (restore alone {c.fmt_s(r['restore_median_s'])}) "
          f"against target <= {TARGET_CRASH_S} s: {verdict(r['pass']['crash_verdict'])}")
    print(f"scaling 1 -> 2 workers {num(r['scaling'], '{:.3f}')} against target >= {TARGET_SCALING}: "
          f"{verdict(r['pass']['scaling'])}")
    for p in r["problems"]:
        print(f"problem: {p}")
    if r["shared_host"]:
        print(f"warning: other sessions' QEMU processes shared the cores during {len(r['shared_host'])} step(s): "
              "the numbers are noisy")


if __name__ == "__main__":
    sys.exit(c.main_wrapper(body))
