#!/usr/bin/env python3
"""Per-test reset: the harness's own time to bring up a fresh machine, against a 0.3 s budget.

Target 2:  bringing up a machine for the next test costs under 0.3 s of harness time.
  A reset is what a test does before its guest runs: Machine(), install_content(),
  boot() (data disk build, domain XML render and write, libvirt connection, createXML,
  event recorder, console stream, resume).  Harness-own time = that wall time minus the
  time spent inside libvirt's createXML (QEMU being started; measured separately).
  Each run also boots one plain machine with good.sys to its healthy verdict, the
  baseline the reset is compared with.  The teardown (close(): console, events,
  domain destroy, disk removal) is timed too, step by step; and each run makes one more
  reset closed as the vm fixture closes it (close(background=True)): what a test pays
  in all is its bring-up plus what that close() makes it wait for, the domain's destroy
  going on in a background worker (timed until it is done, for information).

    python3 bench/vm_reset.py [--runs N] [--resets K] [--json] [--artifacts DIR] [--no-warmup] [-v]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402
from harness.vm import teardown as background_teardown  # noqa: E402

BUDGET_S = 0.3
BOOT_PHASES = ["build_data_disk", "render_xml", "write_domain_xml", "open_connection", "event_recorder",
               "console_open", "resume"]
CLOSE_PHASES = ["close:console.stop", "close:events.close", "close:dom.destroy", "close:conn.close"]


def own_time(r: c.HarnessRun) -> float:
    return r.boot_call_s - r.phases.get("createXML", 0.0)


def phase_rows(resets: list[c.HarnessRun]) -> list[list[str]]:
    med = c.median
    rows = [["Machine() (profile, accel choice, monitor)", c.fmt_s(med([r.ctor_s for r in resets]), 4)],
            ["install_content() (copies to artifacts, fsync)", c.fmt_s(med([r.install_s for r in resets]), 4)]]
    for name in BOOT_PHASES:
        note = " (libvirt call)" if name in ("resume", "open_connection") else ""
        rows.append([f"boot(): {name}{note}", c.fmt_s(med([r.phases.get(name, 0.0) for r in resets]), 4)])
    other = [r.boot_call_s - r.ctor_s - r.install_s - sum(r.phases.get(n, 0.0) for n in [*BOOT_PHASES, "createXML"])
             for r in resets]
    rows.append(["boot(): the rest (progress, close callback, start event)", c.fmt_s(med(other), 4)])
    rows.append(["= harness-own time", c.fmt_s(med([own_time(r) for r in resets]), 4)])
    rows.append(["libvirt createXML (excluded: QEMU starting)", c.fmt_s(med([r.phases.get("createXML", 0.0)
                                                                            for r in resets]), 4)])
    return rows


def close_rows(runs: list[c.HarnessRun]) -> list[list[str]]:
    med = c.median
    rows = [[f"close(): {name.removeprefix('close:')}", c.fmt_s(med([r.phases.get(name, 0.0) for r in runs]), 4)]
            for name in CLOSE_PHASES]
    other = [r.teardown_s - sum(r.phases.get(n, 0.0) for n in CLOSE_PHASES) for r in runs]
    rows.append(["close(): the rest (disk removal)", c.fmt_s(med(other), 4)])
    rows.append(["= teardown", c.fmt_s(med([r.teardown_s for r in runs]), 4)])
    return rows


def body(cleanup: c.Cleanup) -> int:
    parser = c.common_args(__doc__.split("\n\n")[0])
    parser.add_argument("--resets", type=int, default=3, help="reset-only bring-ups per run (default 3)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()
    if args.runs < 1 or args.resets < 1:
        parser.error("--runs and --resets must be at least 1")
    setup = c.prepare(args, "vm_reset")
    if not args.no_warmup:
        c.warm_up(setup, cleanup, None)
    content = {c.GOOD_NAME: c.GOOD}
    resets: list[c.HarnessRun] = []
    fixture_resets: list[tuple[c.HarnessRun, float]] = []  # (closed in the background, the drain time)
    boots: list[c.HarnessRun] = []
    problems: list[str] = []
    activity = c.Activity(cleanup, setup.run_id)

    for i in range(args.runs):
        for k in range(args.resets):
            activity.check("reset")
            with c.instrumented():
                r = c.run_harness(setup, cleanup, f"reset-{i + 1}-{k + 1}", content, 2, wait=False,
                                  verbose=args.verbose)
            activity.check("reset")
            resets.append(r)
            c.say(f"run {i + 1}/{args.runs}: reset {k + 1}/{args.resets}: harness-own {own_time(r) * 1000:.1f} ms, "
                  f"createXML {r.phases.get('createXML', 0.0) * 1000:.0f} ms, teardown {r.teardown_s:.2f} s")
        activity.check("reset")
        with c.instrumented():
            r = c.run_harness(setup, cleanup, f"reset-{i + 1}-bg", content, 2, wait=False, verbose=args.verbose,
                              background_close=True)
        t = time.monotonic()
        background_teardown.drain(c.BOOT_TIMEOUT_S)
        fixture_resets.append((r, time.monotonic() - t))
        activity.check("reset")
        c.say(f"run {i + 1}/{args.runs}: reset closed as the vm fixture does: bring-up {r.boot_call_s:.3f} s, "
              f"close() returned in {r.teardown_s * 1000:.1f} ms, background destroy {fixture_resets[-1][1]:.2f} s")
        c.say(f"run {i + 1}/{args.runs}: full plain boot (good.sys) to its healthy verdict ...")
        activity.check("full boot")
        with c.instrumented():
            r = c.run_harness(setup, cleanup, f"boot-{i + 1}", content, 2, wait=True, verbose=args.verbose)
        activity.check("full boot")
        if r.verdict != "healthy":
            problems.append(f"{r.artifacts}: expected healthy, got {r.verdict} ({r.reason}); sample left out")
            c.say(f"run {i + 1}/{args.runs}: UNEXPECTED {r.verdict} ({r.reason}); left out")
        else:
            boots.append(r)
            c.say(f"run {i + 1}/{args.runs}: full plain boot: {r.total_s:.3f} s")

    med = c.median
    own = med([own_time(r) for r in resets])
    create = med([r.phases.get("createXML", 0.0) for r in resets])
    full = med([r.total_s for r in boots])
    teardown = med([r.teardown_s for r in [*resets, *boots]])
    pays = med([r.boot_call_s + r.teardown_s for r, _ in fixture_resets])  # bring-up + close() as the fixture
    fixture_close = med([r.teardown_s for r, _ in fixture_resets])
    background = med([drain for _, drain in fixture_resets])
    ratio_budget = own / BUDGET_S if own is not None else None
    ratio_full = own / full if own is not None and full else None
    ok = ratio_budget is not None and ratio_budget <= 1.0

    results: dict[str, Any] = {
        "target2_reset": {
            "harness_own_median_s": own, "createXML_median_s": create, "budget_s": BUDGET_S,
            "ratio_to_budget": ratio_budget, "pass": ok,
            "full_boot_median_s": full, "ratio_to_full_boot": ratio_full,
            "create_ratio_to_full_boot": create / full if create is not None and full else None,
            "teardown_median_s": teardown,
            "test_pays_median_s": pays, "fixture_close_median_s": fixture_close,
            "background_destroy_median_s": background,
            "harness_own_s": [own_time(r) for r in resets], "createXML_s": [r.phases.get("createXML", 0.0)
                                                                           for r in resets],
            "full_boot_s": [r.total_s for r in boots]},
    }
    report = {"benchmark": "vm_reset", "host": c.host_description(), "runs": args.runs, "resets": args.resets,
              "domain_type": setup.domain_type, "accel": setup.accel_reason, "artifacts": str(setup.root),
              "results": results, "problems": problems, "shared_host": activity.seen,
              "samples": {"resets": [dataclasses.asdict(r) for r in resets],
                          "full_boots": [dataclasses.asdict(r) for r in boots]}}
    (setup.root / "vm_reset.json").write_text(json.dumps(report, indent=1) + "\n")

    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print()
        print(f"vm_reset: {args.runs} run(s) x {args.resets} reset(s) + 1 full boot each, domain type "
              f"{setup.domain_type}, {c.host_description()['cores']} cores; artifacts: {setup.root}")
        print()
        print(c.table([
            ["2  harness-own reset time / 0.3 s budget", c.fmt_s(own, 4), c.fmt_ratio(ratio_budget),
             f"<= 1.00x ({BUDGET_S} s)", "PASS" if ok else "FAIL"],
            ["2  harness-own reset time / full plain boot", f"{c.fmt_s(own, 4)} / {c.fmt_s(full)}",
             c.fmt_ratio(ratio_full), "informational", "-"],
            ["   libvirt createXML / full plain boot", f"{c.fmt_s(create, 4)} / {c.fmt_s(full)}",
             c.fmt_ratio(create / full if create is not None and full else None), "informational", "-"],
            ["   teardown (close, waited for) / full plain boot", f"{c.fmt_s(teardown)} / {c.fmt_s(full)}",
             c.fmt_ratio(teardown / full if teardown is not None and full else None), "informational", "-"],
            ["   what a test pays: bring-up + close(background=True), as the vm fixture",
             f"{c.fmt_s(pays, 4)} (close {c.fmt_s(fixture_close, 4)})", "-", "informational", "-"],
            ["   the destroy that goes on in the background", c.fmt_s(background), "-", "informational", "-"],
        ], ["measurement (medians)", "time", "ratio", "target", "result"]))
        print()
        print(f"bring-up, step by step (medians of {len(resets)} resets):")
        print(c.table(phase_rows(resets), ["step", "time"]))
        print()
        print(f"teardown, step by step (medians of {len(resets) + len(boots)} closes):")
        print(c.table(close_rows([*resets, *boots]), ["step", "time"]))
        for p in problems:
            print(f"problem: {p}")
        if activity.summary():
            print(f"warning: {activity.summary()}")
    c.say(f"done; results in {setup.root / 'vm_reset.json'}")
    if problems:
        return 1
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(c.main_wrapper(body))
