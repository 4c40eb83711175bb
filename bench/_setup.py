"""The guest, content and profile every VM benchmark uses, and the run's artifacts directory."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import _repo  # noqa: F401  (the checkout on sys.path)
from _report import say

from harness.artifacts import default_root, new_run_id
from harness.config import Profile, Timeouts
from harness.content.format import file_name
from harness.guest.linux_ref import ReferenceGuest, build_reference_guest
from harness.paths import CONTENT_FIXTURES
from harness.vm.accel import choose_domain_type

CRASH_NAME = file_name(291, 0, 32)  # C-00000291-00000000-00000032.sys
GOOD_NAME = file_name(291, 0, 31)
CF291 = (CONTENT_FIXTURES / "cf291-field21.sys").read_bytes()
GOOD = (CONTENT_FIXTURES / "good.sys").read_bytes()
assert CRASH_NAME == "C-00000291-00000000-00000032.sys", CRASH_NAME

PANIC = "Kernel panic - not syncing"
SENSOR_CRASH_FUNCTION = "chf_match_criterion"  # where the vulnerable sensor faults on cf291-field21
BANNER = "Linux version "
BOOT_TIMEOUT_S = 120.0  # per boot (or boot loop); a slow host still ends
HANG_TIMEOUT_S = 45.0


@dataclasses.dataclass
class Setup:
    guest: ReferenceGuest
    domain_type: str
    accel_reason: str
    run_id: str
    root: Path  # artifacts/bench-<run id>


def prepare(args: argparse.Namespace, kind: str) -> Setup:
    say("guest: build_reference_guest() (cached after the first build)")
    guest = build_reference_guest(progress=lambda msg: say(msg))
    domain_type, why = choose_domain_type(Profile().accel)
    run_id = f"bench-{new_run_id()}"
    root = (args.artifacts or default_root()) / run_id
    root.mkdir(parents=True, exist_ok=True)
    say(f"{kind}: domain type {domain_type} ({why}); artifacts in {root}")
    return Setup(guest, domain_type, why, run_id, root)


def bench_profile(threshold: int = 2) -> Profile:
    """The built-in profile, with this boot-loop threshold and bounded timeouts."""
    return dataclasses.replace(Profile(), boot_loop_threshold=threshold,
                               timeouts=Timeouts(boot=BOOT_TIMEOUT_S, hang=HANG_TIMEOUT_S))
