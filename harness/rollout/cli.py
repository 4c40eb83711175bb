"""`harness rollout CONTENT... --fleet SPEC --rings LIST`: rehearse a staged content rollout on a
fleet of test machines (docs/rollout.md). Exit 0 whatever the rollout found, 3 for an
infrastructure failure, 2 for bad input."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InfraError

RECOVER_CHOICES = ("auto", "safe-mode", "recovery-env")


def register(groups: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = groups.add_parser("rollout", help="roll content out ring by ring over a fleet of test machines: halt, "
                          "rollback, recovery, blast radius")
    p.add_argument("content", type=Path, nargs="+", metavar="CONTENT", help="the update's content file(s)")
    p.add_argument("--fleet", help="machines per profile, e.g. vuln:6,hard:2 (default: the config's fleet:)")
    p.add_argument("--rings", required=True, help="ring sizes: machines or cumulative percentages, e.g. 2,50%%,100%%")
    p.add_argument("--config", type=Path, help="YAML file with profiles (and a fleet: mapping)")
    p.add_argument("--bake-boots", type=int, default=1, metavar="N",
                   help="reboots each machine of a ring must pass with the update (default 1)")
    p.add_argument("--bake", type=float, default=0.0, metavar="SECONDS",
                   help="seconds a ring runs with the update before the next ring gets it (default 0)")
    p.add_argument("--halt-on", default="crash,boot-loop,hang,rejected",
                   help="signals that halt the rollout: crash,boot-loop,hang,rejected (or none)")
    p.add_argument("--recover", choices=RECOVER_CHOICES, default="auto",
                   help="how crashed machines come back (auto: safe mode, then the recovery environment)")
    p.add_argument("--baseline", type=Path, nargs="+", action="extend", metavar="FILE",
                   help="the content every machine runs before the update (default: the sample's good file)")
    p.add_argument("--measure-unstaged", action="store_true",
                   help="measure the unstaged push on a second copy of the fleet instead of estimating it")
    p.add_argument("--seed", type=int, default=0, help="seed of the ring assignment (default 0)")
    p.add_argument("--artifacts", type=Path, help="artifacts root (default $HARNESS_ARTIFACTS, else ./artifacts)")
    p.add_argument("--report", type=Path, metavar="DIR",
                   help="where rollout.json (and the HTML page) go (default: the run's artifacts directory)")
    p.add_argument("--max-boots", type=int, default=0, metavar="N",
                   help="boots at once (default: twice the cores, at least 2)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(run=cmd_rollout)


def cmd_rollout(args: argparse.Namespace) -> int:
    from .session import RolloutRequest, run_rollout

    # Ctrl-C (also when started with SIGINT ignored, as a background job) and SIGTERM (a CI job
    # cancelled) stop the rollout the same way: machines destroyed, the partial result written.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)

    for name in ("bake_boots", "max_boots"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')}: {getattr(args, name)}; give 0 or more")
    if args.bake < 0:
        raise ConfigError(f"--bake: {args.bake}; give 0 or more seconds")
    request = RolloutRequest(
        content=list(args.content), fleet=args.fleet, rings=args.rings, config=args.config,
        bake_boots=args.bake_boots, bake_s=args.bake, halt_on=args.halt_on, recover=args.recover,
        baseline=args.baseline, measure_unstaged=args.measure_unstaged, seed=args.seed,
        artifacts_root=args.artifacts, report_dir=args.report,
        max_boots=args.max_boots or max(2, 2 * (os.cpu_count() or 1)), quiet=args.quiet)
    try:
        outcome = run_rollout(request)
    except InfraError as exc:
        print(f"harness: infrastructure failure: {exc}", file=sys.stderr)
        return 3
    result = outcome.result
    if args.json:
        print(json.dumps(result))
    else:
        _summary(result, outcome.page)
    return 3 if outcome.infra_failure else 0


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _summary(result: dict[str, Any], page: Path | None) -> None:
    halted = (f"halted at ring {result['halted_ring']} ({result['halt_reason']}), "
              f"{result['seconds_to_halt']} s after the first delivery") if result["halted"] else "not halted"
    print(f"fleet:      {result['fleet']} machines {result['profiles']}, rings {result['rings']}")
    print(f"rollout:    {halted}")
    print(f"delivered:  {result['delivered']} machine(s), {result['delivered_past_halted_ring']} past the halted ring, "
          f"{result['failed_deliveries']} failed")
    print(f"blast:      {result['blast_radius']} crashed, against {result['unstaged_blast_radius']} unstaged "
          f"({result['unstaged']['method']})")
    print(f"healthy:    {result['healthy_at_end']} of {result['fleet']} at the end"
          + (f", {result['seconds_to_healthy_fleet']} s from the first delivery"
             if result["seconds_to_healthy_fleet"] is not None else ""))
    for m in result["machines"]:
        extra = f"  {m['crash_title']}" if m["crash_title"] else ""
        rec = f"  recovered by {m['rollback']}" if m["rollback"] not in (None, "online") else (
            "  rolled back online" if m["rollback"] == "online" else "")
        print(f"  ring {m['ring']}  {m['name']:<10} {m['profile']:<8} delivered={str(m['delivered']).lower():<5} "
              f"{m['verdict'] or '-':<16} -> {m['final_verdict'] or '-'}{rec}{extra}")
    print(f"report:     {result['report_dir']}/rollout.json" + (f", {page}" if page else ""))
