#!/usr/bin/env python3
"""A staged rollout over a 16-machine fleet: a bad file (CF291) and a good file, against one
machine's boot measured in the same run.

  (a) one machine: a Machine with good.sys, before Machine() -> wait_verdict() "healthy".
  (b) bad rollout: `harness rollout` (run_rollout, in process) of cf291-field21.sys over
      vuln:12,hard:4 with --rings 2,50%,100%: the fleet boots healthy, the canary ring gets the
      file online, the first crash halts it, rollback and recovery, the fleet healthy again.
  (c) good rollout: the same fleet with a new well-formed file: every ring, bake reboot each.
Printed: wall time of each rollout and its ratio to (a), time to halt (from the first
delivery), the halt's latency after the crash signal, time to a healthy fleet, deliveries past
the halted ring, and the harness process's peak RSS during each rollout (VmHWM, reset before
each). Targets (issue 13): the bad rollout under 3 minutes, halt within 1 s of the signal, no
delivery past the halting ring, the harness under 300 MB.

    python3 bench/rollout.py [--fleet SPEC] [--rings LIST] [--json] [--artifacts DIR] [--strict] [-v]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as c  # noqa: E402
from harness.content.generate import new_channel_file  # noqa: E402
from harness.paths import CONTENT_FIXTURES  # noqa: E402
from harness.rollout.session import RolloutRequest, run_rollout  # noqa: E402

TARGET_BAD_S = 180.0
TARGET_HALT_LATENCY_S = 1.0
TARGET_RSS_MB = 300.0


def reset_peak_rss() -> None:
    """Start VmHWM afresh (Linux: writing 5 to clear_refs resets the peak resident size)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def one_rollout(setup: c.Setup, label: str, content: Path, args: Any) -> dict[str, Any]:
    c.say(f"{label} rollout: {content.name} over {args.fleet}, rings {args.rings} ...")
    reset_peak_rss()
    t = time.monotonic()
    outcome = run_rollout(RolloutRequest(content=[content], fleet=args.fleet, rings=args.rings,
                                         run_id=setup.run_id, run_dir=setup.root / label,
                                         quiet=not args.verbose))
    wall = time.monotonic() - t
    r = outcome.result
    out = {"wall_s": wall, "peak_rss_mb": peak_rss_mb(), "infra_failure": outcome.infra_failure,
           "report": str(outcome.report_dir / "rollout.json"),
           **{k: r[k] for k in ("fleet", "rings", "halted", "halted_ring", "halt_reason", "blast_radius",
                                "unstaged_blast_radius", "seconds_to_halt", "seconds_to_healthy_fleet",
                                "healthy_at_end", "delivered", "delivered_past_halted_ring", "failed_deliveries",
                                "infra_errors", "first_delivery_t")},
           "halt_latency_s": (r["halt_signal"] or {}).get("latency_s")}
    c.say(f"{label} rollout: {wall:.1f} s, halted={r['halted']} blast {r['blast_radius']}/"
          f"{r['unstaged_blast_radius']}, healthy {r['healthy_at_end']}/{r['fleet']}, peak RSS "
          f"{out['peak_rss_mb']:.0f} MB")
    return out


def main(cleanup: c.Cleanup) -> int:
    parser = c.common_args(__doc__.split("\n\n")[0])
    parser.add_argument("--fleet", default="vuln:12,hard:4", help="fleet spec (default vuln:12,hard:4)")
    parser.add_argument("--rings", default="2,50%,100%", help="ring sizes (default 2,50%%,100%%)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    setup = c.prepare(args, "rollout")
    activity = c.Activity(cleanup, setup.run_id)
    good_update = setup.root / "good-update.sys"
    good_update.write_bytes(new_channel_file(instances=6, seed=2024).to_bytes())

    c.say("one machine: boot with good.sys to its verdict ...")
    activity.check("one boot")
    boot = c.run_harness(setup, cleanup, "boot-1", {c.GOOD_NAME: c.GOOD}, 2, wait=True, verbose=args.verbose)
    c.say(f"one machine: {boot.verdict} in {boot.total_s:.2f} s")
    activity.check("bad rollout")
    bad = one_rollout(setup, "bad", CONTENT_FIXTURES / "cf291-field21.sys", args)
    activity.check("good rollout")
    good = one_rollout(setup, "good", good_update, args)
    activity.check("end")

    problems = []
    if boot.verdict != "healthy":
        problems.append(f"the single boot was {boot.verdict} ({boot.reason})")
    if not (bad["halted"] and bad["halted_ring"] == 0 and bad["healthy_at_end"] == bad["fleet"]):
        problems.append(f"bad rollout: halted={bad['halted']} ring {bad['halted_ring']}, healthy "
                        f"{bad['healthy_at_end']}/{bad['fleet']} ({bad['report']})")
    if good["halted"] or good["healthy_at_end"] != good["fleet"] or good["delivered"] != good["fleet"]:
        problems.append(f"good rollout: halted={good['halted']}, delivered {good['delivered']}, healthy "
                        f"{good['healthy_at_end']}/{good['fleet']} ({good['report']})")
    rss = max(x for x in (bad["peak_rss_mb"], good["peak_rss_mb"]) if x is not None)
    checks = {
        "bad_rollout_under_180_s": bad["wall_s"] < TARGET_BAD_S,
        "halt_within_1_s": bad["halt_latency_s"] is not None and bad["halt_latency_s"] < TARGET_HALT_LATENCY_S,
        "no_delivery_past_halted_ring": bad["delivered_past_halted_ring"] == 0,
        "harness_under_300_mb": rss < TARGET_RSS_MB,
    }
    report = {"benchmark": "rollout", "host": c.host_description(), "artifacts": str(setup.root),
              "one_boot_s": boot.total_s, "bad": bad, "good": good,
              "bad_over_one_boot": bad["wall_s"] / boot.total_s, "good_over_one_boot": good["wall_s"] / boot.total_s,
              "peak_rss_mb": rss, "targets": checks, "problems": problems, "shared_host": activity.seen}
    (setup.root / "rollout.json").write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print()
        print(f"rollout: fleet {args.fleet}, rings {args.rings}, {c.host_description()['cores']} cores; "
              f"artifacts: {setup.root}")
        rows = [["one machine's boot", c.fmt_s(boot.total_s), "1.000x", "-", "-", "-", "-"]]
        for label, r in (("bad file (CF291)", bad), ("good file", good)):
            rows.append([label, c.fmt_s(r["wall_s"]), c.fmt_ratio(r["wall_s"] / boot.total_s),
                         c.fmt_s(r["seconds_to_halt"]), c.fmt_s(r["halt_latency_s"]),
                         c.fmt_s(r["seconds_to_healthy_fleet"]), f"{r['peak_rss_mb']:.0f} MB"])
        print(c.table(rows, ["run", "wall", "x one boot", "to halt", "halt latency", "to healthy fleet",
                             "peak RSS"]))
        for name, ok in checks.items():
            print(f"{name}: {'PASS' if ok else 'FAIL'}")
        for p in problems:
            print(f"problem: {p}")
        if activity.summary():
            print(f"warning: {activity.summary()}")
    c.say(f"done; results in {setup.root / 'rollout.json'}")
    if problems:
        return 1
    return 1 if args.strict and not all(checks.values()) else 0


if __name__ == "__main__":
    sys.exit(c.main_wrapper(main))
