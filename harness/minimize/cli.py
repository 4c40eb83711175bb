"""`harness minimize FILE -o OUT`: shrink a crashing content file (docs/minimize.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import select_profile
from ..content.sensor import BUILDS
from ..errors import InfraError


def register(groups: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = groups.add_parser("minimize", help="shrink a crashing content file to a smaller one that crashes "
                                           "with the same title and function")
    p.add_argument("file", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="where to write the minimised file")
    p.add_argument("--profile", help="profile name (default linux-ref)")
    p.add_argument("--config", type=Path, help="YAML file with profiles")
    p.add_argument("--sensor", choices=BUILDS, help="sensor build (default: the profile's)")
    p.add_argument("--trust-host", action="store_true",
                   help="do not boot the original when the host build predicts its crash: one VM boot "
                        "(the result) instead of two")
    p.add_argument("--max-vm-boots", type=int, default=40, metavar="N",
                   help="VM boots allowed for steps the host build cannot decide (default 40)")
    p.add_argument("--artifacts", type=Path, help="artifacts root of the VM runs (default: the harness's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_minimize)


def cmd_minimize(args: argparse.Namespace) -> int:
    from .minimizer import Minimizer  # the VM stack loads only for this command

    if args.max_vm_boots < 1:
        print(f"harness: error: --max-vm-boots {args.max_vm_boots}: give at least 1", file=sys.stderr)
        return 2
    profile = select_profile(args.config, args.profile)
    minimizer = Minimizer(profile, sensor=args.sensor, trust_host=args.trust_host,
                          max_vm_boots=args.max_vm_boots, artifacts_root=args.artifacts)
    try:
        result = minimizer.run(args.file, args.output)
    except InfraError as exc:
        print(f"harness: infrastructure failure: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    print(f"wrote {result.output}: {result.output_bytes} bytes (from {result.input_bytes}), "
          f"{result.vm_boots} VM boot(s), {result.host_runs} host run(s), {result.seconds:.1f} s")
    print(f"crash:   {result.crash.title} (in {result.crash.function})")
    print(f"culprit: {result.culprit['summary']}")
    return 0
