"""`harness reproduce`, `harness triage`, `harness guest build` and `harness doctor`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .config import select_profile
from .content.oracle import BUILDS
from .monitor.verdict import Verdict


def register(groups: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = groups.add_parser("reproduce", help="boot a fresh VM with a content file and name the outcome")
    p.add_argument("file", type=Path)
    p.add_argument("--profile", help="profile name (default linux-ref)")
    p.add_argument("--config", type=Path, help="YAML file with profiles")
    p.add_argument("--sensor", choices=BUILDS, help="sensor build (default: the profile's)")
    p.add_argument("--artifacts", type=Path, help="artifacts root (default $HARNESS_ARTIFACTS, else ./artifacts)")
    p.add_argument("--keep", action="store_true", help="keep the per-test disk image")
    p.add_argument("--recover", choices=("safe-mode", "recovery-env", "all"),
                   help="after a boot loop, bring a copy of the machine back by this path (or both)")
    p.add_argument("--recovery-script", type=Path,
                   help="recovery script for every path (default: the profile's, else the shipped sample)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_reproduce)

    p = groups.add_parser("triage", help="the crash report and verdict a saved serial log implies")
    p.add_argument("log", type=Path, nargs="?",
                   help="the serial console log (a libvirt domain log here is read as --domain-log)")
    p.add_argument("--domain-log", type=Path,
                   help="libvirt's /var/log/libvirt/qemu/<domain>.log: Windows bugchecks from the Hyper-V "
                        "crash MSRs, fused with the serial log's reports")
    p.add_argument("--family", choices=("auto", "linux", "windows"), default="auto",
                   help="guest family of the log (default: detected from the text)")
    p.add_argument("--boot-loop-threshold", type=int, default=2)
    p.add_argument("--config", type=Path, help="YAML file with profiles (with --profile: a vendor driver's "
                   "ready and rejected lines judge the log)")
    p.add_argument("--profile", help="the profile the log's machine ran (default linux-ref: the sample sensor)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_triage)

    p = groups.add_parser("bundle", help="one archive of a run's artifacts to send back (disk images and "
                          "secrets left out, listed in its MANIFEST.txt)")
    p.add_argument("artifacts", type=Path, help="a run's artifacts directory (artifacts/<run id>) or any part of it")
    p.add_argument("-o", "--output", type=Path, help="the archive (default: <dir>-bundle-<time>.tar.gz beside it)")
    p.set_defaults(run=cmd_bundle)

    guest = groups.add_parser("guest", help="guest images")
    sub = guest.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("build", help="build (or find cached) the Linux reference guest")
    p.add_argument("--force", action="store_true")
    p.set_defaults(run=cmd_guest_build)

    p = groups.add_parser("clean", help="destroy leaked VMs of killed runs and remove their disk images, "
                          "on every host of the profile")
    p.add_argument("--config", type=Path)
    p.add_argument("--profile")
    p.add_argument("--uri", action="append", metavar="URI",
                   help="a libvirt host to sweep instead of the profile's hosts (repeat for several)")
    p.add_argument("--artifacts", type=Path, help="artifacts root to scan for leftover disk images "
                   "(default $HARNESS_ARTIFACTS, else ./artifacts)")
    p.add_argument("--force", action="store_true", help="also destroy domains whose owner process still runs")
    p.set_defaults(run=cmd_clean)

    p = groups.add_parser("doctor", help="check this host and print the fix for each problem")
    p.add_argument("--config", type=Path)
    p.add_argument("--profile")
    p.set_defaults(run=cmd_doctor)


def _crash_line(verdict: Verdict) -> str:
    if verdict.crash is None:
        return "crash:     none"
    c = verdict.crash
    where = f" ({c.function} in {c.module})" if c.function and c.module else ""
    return f"crash:     {c.title}{where}"


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    profile = select_profile(args.config, args.profile)
    paths = {"all": ("safe-mode", "recovery-env"), None: ()}.get(args.recover, (args.recover,))
    result = reproduce(args.file, profile, sensor=args.sensor, artifacts_root=args.artifacts, keep=args.keep,
                       recover_paths=paths, recovery_script=args.recovery_script)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        v = result.verdict
        print(f"verdict:   {v.verdict} ({v.reason})")
        print(f"boots:     {v.boots} ({v.crashing_boots} crashing)")
        print(_crash_line(v))
        for path, rec in result.recovery.items():
            print(f"recovery:  {path}: {rec['result']} after {rec['boots']} boot(s) ({rec['reason']})")
        print(f"artifacts: {result.artifacts}")
        print(f"rerun:     {result.rerun}")
    return 3 if result.verdict.verdict == "infra-error" else 0


def cmd_triage(args: argparse.Namespace) -> int:
    from .triage import triage_files

    driver = select_profile(args.config, args.profile).driver if args.config or args.profile else None
    result = triage_files(args.log, args.domain_log, args.boot_loop_threshold, args.family, driver)
    verdict = result.verdict
    if args.json:
        out: dict[str, Any] = {"log": str(result.log) if result.log else None}
        if result.domain_log is not None or result.family != "linux":
            out.update(domain_log=str(result.domain_log) if result.domain_log else None, family=result.family)
        out.update(verdict.to_json())
        out.update(result.reports_json())  # every report in the log, in order, beside `crash`
        print(json.dumps(out))
    else:
        print(f"verdict:   {verdict.verdict} ({verdict.reason})")
        print(f"boots:     {verdict.boots} ({verdict.crashing_boots} crashing)")
        print(_crash_line(verdict))
        crash = verdict.crash
        if crash is not None and crash.stop_code is not None:
            params = f" ({', '.join(crash.parameters)})" if crash.parameters else ""
            print(f"stop:      0x{crash.stop_code:X} {crash.stop_name or '(unknown code)'}{params}")
        if crash is not None and crash.ip:
            print(f"ip:        {crash.ip}")
    return 0


def cmd_guest_build(args: argparse.Namespace) -> int:
    from .guest.linux_ref import build_reference_guest

    guest = build_reference_guest(force=args.force, progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"kernel {guest.kernel}\ninitrd {guest.initrd}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from .artifacts import default_root
    from .sweep import sweep_hosts

    profile = select_profile(args.config, args.profile)
    hosts = tuple(args.uri) if args.uri else profile.hosts
    result = sweep_hosts(hosts, profile.name_prefix, args.artifacts or default_root(), force=args.force,
                         progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"destroyed {len(result.destroyed)} domain(s) on {len(result.hosts)} host(s), removed "
          f"{len(result.removed_files)} disk image(s)"
          + (f"; left {len(result.in_use)} in use by running processes: {', '.join(result.in_use)}"
             if result.in_use else ""))
    if result.unreachable:
        print(f"not swept (unreachable, see above): {', '.join(result.unreachable)}", file=sys.stderr)
    return 3 if result.unreachable else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_checks

    profile = select_profile(args.config, args.profile)
    problems = 0
    for check in run_checks(profile):
        mark = "ok " if check.ok else "FAIL"
        print(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok:
            problems += 1
            print(f"       fix: {check.fix}")
    return 1 if problems else 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from .bundle import bundle

    out, kept, skipped = bundle(args.artifacts, args.output)
    for name, why in skipped:
        print(f"left out {name}: {why}", file=sys.stderr)
    print(f"{out}: {len(kept)} file(s), {len(skipped)} left out (listed in MANIFEST.txt)")
    return 0
