"""`harness campaign`: many content files through real machines (docs/campaign.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..config import select_profile
from ..content.sensor import BUILDS
from ..errors import InputFileError
from ..report import render_campaign

DEFAULT_FILES = 24


def register(groups: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = groups.add_parser("campaign", help="judge many mutated content files in machines; group the crashes, "
                                           "minimise each, list every file the host predicted wrong")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="the same seed gives the same files (default 0)")
    p.add_argument("--files", type=int, metavar="N", help=f"judge N files (default {DEFAULT_FILES})")
    p.add_argument("--minutes", type=float, metavar="M", help="judge files for M minutes instead of --files")
    p.add_argument("--faults", metavar="LIST", help="comma-separated mutations (default: all that apply: "
                   "well-formed, the fault catalogue of `harness content faults` and the byte-level "
                   "bytes-flip, bytes-set, bytes-truncate, bytes-insert, bytes-splice; a vendor driver: bytes-* only)")
    p.add_argument("--corpus", type=Path, metavar="DIR", help="content files to judge and mutate "
                   "(required for a profile with a vendor driver)")
    p.add_argument("--profile", help="profile name (default linux-ref)")
    p.add_argument("--config", type=Path, metavar="FILE", help="YAML file with profiles")
    p.add_argument("--sensor", choices=BUILDS, help="sensor build (default: the profile's)")
    p.add_argument("--workers", default="1", metavar="N|auto", help="judges side by side (auto: one per CPU)")
    p.add_argument("--out", type=Path, metavar="DIR", help="the campaign's state; rerun with it to continue "
                   "(default ./campaign-<seed>)")
    p.add_argument("--path", choices=("boot", "fast"), help="boot: a fresh machine per file; fast: a restored "
                   "snapshot per file (default: fast where available)")
    p.add_argument("--sys-tier", choices=("auto", "off"), default="auto",
                   help="also predict with the emulated harnessflt.sys when it is built (auto, ~0.1 s a file)")
    p.add_argument("--report", type=Path, metavar="DIR",
                   help="write campaign.json and its page index.html there (default: --out)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(run=cmd_campaign)


def _workers(text: str) -> int:
    if text == "auto":
        return os.cpu_count() or 1
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputFileError(f"--workers: {text!r}: give a number of workers (1 or more) or auto")
    return value


def _limits(args: argparse.Namespace) -> tuple[int | None, float | None]:
    if args.files is not None and args.minutes is not None:
        raise InputFileError("--files and --minutes: give one of them (a number of files or a time budget), not both")
    if args.files is not None and args.files < 1:
        raise InputFileError(f"--files: {args.files}: give 1 or more files")
    if args.minutes is not None and not args.minutes > 0:
        raise InputFileError(f"--minutes: {args.minutes}: give a positive number of minutes")
    if args.minutes is not None:
        return None, args.minutes
    return args.files if args.files is not None else DEFAULT_FILES, None


def cmd_campaign(args: argparse.Namespace) -> int:
    from .crashes import CrashKeeper  # the VM stack loads only for this command
    from .path_choice import choose_path, judge_factory
    from .predict import Predictor
    from .runner import Campaign, Limits
    from .source import SAMPLE_MUTATIONS, VENDOR_MUTATIONS, FileSource, check_mutations
    from .state import CampaignState
    from .summary import summarize, write_summary

    files, minutes = _limits(args)
    workers = _workers(args.workers)
    profile = select_profile(args.config, args.profile)
    vendor = profile.driver is not None
    names = [n.strip() for n in args.faults.split(",") if n.strip()] if args.faults is not None else list(
        VENDOR_MUTATIONS if vendor else SAMPLE_MUTATIONS)
    mutations = check_mutations(names, vendor)
    source = FileSource(args.seed, mutations, args.corpus, vendor)
    build = args.sensor or profile.sensor
    config = str(args.config.resolve()) if args.config else None
    params: dict[str, Any] = {"seed": args.seed, "files": files, "minutes": minutes, "faults": list(mutations),
                              "corpus": str(args.corpus.resolve()) if args.corpus else None,
                              "profile": profile.name, "config": config, "sensor": build}
    out = (args.out or Path(f"campaign-{args.seed}")).resolve()
    path = choose_path(args.path, profile)
    state = CampaignState(out)
    resuming = state.open(params)
    state.repair_tail()

    def say(msg: str) -> None:
        print(f"harness: campaign: {msg}", file=sys.stderr, flush=True)

    if resuming:
        say(f"continuing {out}: {len(state.judged_indices())} file(s) judged before")
    predictor = Predictor(build, vendor, args.sys_tier == "auto", say)
    campaign = Campaign(state, source, predictor, judge_factory(path, profile, args.sensor, say),
                        Limits(files, minutes), workers, path, say)
    result = campaign.run()
    rerun_flags = ["--profile", profile.name, *(["--config", config] if config else []), "--sensor", build]
    keeper = CrashKeeper(state.crashes, build, rerun_flags, vendor)
    summary = summarize(state, keeper, files, {
        "seed": args.seed, "profile": profile.name, "sensor": build, "path": path, "workers": workers,
        "predicted_by": predictor.tiers, **({"prediction_note": predictor.sys_note} if predictor.sys_note else {}),
        "complete": not result.interrupted and result.infra_stop is None, "judged_this_run": result.judged_now,
        **({"stopped": result.infra_stop} if result.infra_stop else {})})
    written = write_summary(summary, args.report or out)
    page = render_campaign(written.parent)  # the same page `harness report` makes of it
    if args.json:
        print(json.dumps(summary))
    else:
        v = ", ".join(f"{k} {n}" for k, n in summary["verdicts"].items() if n)
        print(f"judged {summary['files']} file(s) ({summary['files_per_min']} per minute): {v}")
        for crash in summary["unique_crashes"]:
            print(f"crash x{crash['count']}: {crash['title']}\n  reproducer: {crash['reproducer']}\n"
                  f"  minimized:  {crash['minimized'] or crash.get('minimized_note')}\n  rerun:      {crash['rerun']}")
        print(f"disagreements: {len(summary['disagreements'])}")
        print(f"summary: {written}\npage:    {page}")
    if result.infra_stop:
        print(f"harness: campaign: stopped: {result.infra_stop}", file=sys.stderr)
        return 3
    if result.interrupted:
        say(f"stopped; continue with the same command (--out {out})")
        return 130
    return 0
