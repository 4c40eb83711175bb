"""Adversarial Windows stand-ins: boots counted from what every boot produces, not from SAC.

Each test is a real QEMU/OVMF boot through libvirt of a stand-in golden image
(tests/windows_standin.py: OVMF's UEFI shell runs a startup.nsh) under a
`family: windows` profile. None of them prints the SAC banner: a boot-start driver
bugchecks before SAC starts, and Windows 10/11 do not install SAC. The harness
counts boots from OVMF's `BdsDxe: ... Boot000N` lines on COM1 and libvirt's CRASHED
and REBOOT events, and takes the STOP code from the EMS record when one was printed.

The two boot loops run through the pytest plugin's `vm` fixture (an inner pytest
session with a harness.yaml profile), as a user's test would; the others through
`Machine`. Measured here under TCG on 2 cores shared with other runs: one stand-in
boot takes 9-12 s from reset to its crash (5 s of it the shell's startup.nsh
countdown, about 4 s OVMF before its first BdsDxe line), a two-boot loop is judged
21-24 s after the start (the reset loop 3 s later: no crash event ends its report's
grace window), an inner pytest session takes 26-35 s, this whole file about 2 min.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.config import Profile

from .conftest import require_tool
from .windows_standin import (
    BUGCHECK_BEFORE_SAC,
    BUGCHECK_THEN_RESET,
    HANG_SILENT,
    HEALTHY_NO_SAC,
    PVPANIC_ONLY,
    build_standin_golden,
    standin_machine,
)

pytestmark = pytest.mark.vm

SAC_BANNER = "SAC started and initialized"
LOOP_LIMIT_S = 120.0  # what issue 11 asks: a boot loop judged well within two minutes


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_tool("mkfs.fat", "install dosfstools (make setup)")
    require_tool("mcopy", "install mtools (make setup)")
    directory = tmp_path_factory.mktemp("golden")
    scripts = {"ems-loop": BUGCHECK_BEFORE_SAC, "pvpanic-loop": PVPANIC_ONLY, "reset-loop": BUGCHECK_THEN_RESET,
               "hang": HANG_SILENT, "healthy": HEALTHY_NO_SAC}
    return {name: build_standin_golden(directory, name, script) for name, script in scripts.items()}


# --- through the pytest plugin's vm fixture --------------------------------------------------

INNER = '''
import pytest


@pytest.mark.family("windows")
@pytest.mark.expect_boot_loop
def test_the_bad_content_loops_the_machine(vm):
    vm.boot()
    verdict = vm.wait_verdict()
    assert verdict.verdict == "boot-loop", verdict.one_line()
'''


def run_loop_through_the_vm_fixture(pytester: pytest.Pytester, image: Path) -> tuple[dict, Path, float]:
    """One inner pytest session on a `family: windows` profile of `image`: its verdict.json,
    its artifacts directory and the session's wall time."""
    config = pytester.path / "harness.yaml"
    config.write_text(f"profiles:\n  standin:\n    family: windows\n    edition: win10\n    image: {image}\n"
                      "    memory_mib: 512\n    vcpus: 1\n    boot_loop_threshold: 2\n"
                      "    timeouts: {boot: 240, hang: 60}\n")
    pytester.makepyfile(test_inner=INNER)
    artifacts = pytester.path / "artifacts"
    started = time.monotonic()
    result = pytester.runpytest("-p", "no:cacheprovider", f"--harness-config={config}",
                                "--harness-profile=standin", f"--harness-artifacts={artifacts}")
    wall = time.monotonic() - started
    result.assert_outcomes(passed=1)
    [test_dir] = artifacts.glob("*/test_inner.py--test_the_bad_content_loops_the_machine")  # <run id>/<test>
    return json.loads((test_dir / "verdict.json").read_text()), test_dir, wall


def assert_a_loop_without_sac(verdict: dict, test_dir: Path, wall: float) -> None:
    judged = f"{verdict['verdict']} ({verdict['reason']}), boots {verdict['boot_log']}, " \
             f"events {verdict['events']}, {verdict['elapsed_s']} s, session {wall:.1f} s: {test_dir}"
    assert verdict["family"] == "windows" and verdict["profile"] == "standin", judged
    assert verdict["verdict"] == "boot-loop", judged
    assert verdict["boots"] == verdict["crashing_boots"] == 2, judged  # judged at the threshold, not the deadline
    assert verdict["elapsed_s"] < LOOP_LIMIT_S and wall < LOOP_LIMIT_S, judged
    assert verdict["events"].get("lifecycle:crashed:panicked", 0) == 2, judged  # pvpanic, seen by libvirt
    assert [boot["opened_by"] for boot in verdict["boot_log"]] == ["start", "firmware"], judged
    com1 = (test_dir / "com1.log").read_text(errors="replace")
    assert SAC_BANNER not in com1  # nothing of SAC: the boots were counted without it
    assert com1.count('BdsDxe: loading Boot0002 "EFI Internal Shell"') >= 2, judged  # what did count them


def test_a_bugcheck_before_sac_at_every_boot_is_a_boot_loop_with_the_stop_code_through_the_vm_fixture(
        pytester: pytest.Pytester, images: dict[str, Path]) -> None:
    verdict, test_dir, wall = run_loop_through_the_vm_fixture(pytester, images["ems-loop"])
    assert_a_loop_without_sac(verdict, test_dir, wall)
    crash = verdict["crash"]
    assert crash["title"] == "PAGE_FAULT_IN_NONPAGED_AREA (0x50)" and crash["stop_code_hex"] == "0x50"
    assert [c["stop_code_hex"] for c in verdict["crashes"]] == ["0x50", "0x50"]


def test_a_bugcheck_with_only_the_pvpanic_write_is_a_boot_loop_of_unknown_bugchecks_through_the_vm_fixture(
        pytester: pytest.Pytester, images: dict[str, Path]) -> None:
    verdict, test_dir, wall = run_loop_through_the_vm_fixture(pytester, images["pvpanic-loop"])
    assert_a_loop_without_sac(verdict, test_dir, wall)
    assert [c["title"] for c in verdict["crashes"]] == ["BUGCHECK: unknown (pvpanic only)"] * 2
    assert verdict["crash"]["stop_code"] is None and verdict["crash"]["family"] == "windows"
    assert "BLUESCREEN" not in (test_dir / "com1.log").read_text(errors="replace")


# --- through Machine ---------------------------------------------------------------------------

@pytest.mark.expect_boot_loop
def test_a_bugcheck_that_resets_the_machine_itself_is_a_boot_loop_counted_from_reboot_events(
        reference_guest: object, harness_profile: Profile, images: dict[str, Path], artifacts_dir: Path,
        harness_run_id: str) -> None:
    """AutoReboot without a crash device: the EMS record, then a reset; libvirt raises REBOOT
    and no CRASHED event."""
    machine = standin_machine(harness_profile, images["reset-loop"], artifacts_dir, harness_run_id, "reset")
    try:
        machine.boot()
        verdict = machine.wait_verdict()
    finally:
        machine.close()
    assert verdict.verdict == "boot-loop", verdict.one_line()
    assert verdict.boots == verdict.crashing_boots == 2 and verdict.elapsed_s < LOOP_LIMIT_S
    assert verdict.crash is not None and verdict.crash.stop_code == 0x50
    assert verdict.events.get("reboot", 0) >= 1 and not any(n.startswith("lifecycle:crashed") for n in verdict.events)


def test_a_healthy_boot_without_sac_is_healthy_after_one_boot(
        reference_guest: object, harness_profile: Profile, images: dict[str, Path], artifacts_dir: Path,
        harness_run_id: str) -> None:
    machine = standin_machine(harness_profile, images["healthy"], artifacts_dir, harness_run_id, "healthy")
    try:
        machine.boot()
        verdict = machine.wait_verdict()
    finally:
        machine.close()
    assert verdict.verdict == "healthy", verdict.one_line()
    assert verdict.boots == 1 and verdict.crash is None and verdict.boot_log[0].sensor == "loaded"
    assert SAC_BANNER not in (artifacts_dir / "com1.log").read_text(errors="replace")


def test_a_hang_before_the_os_prints_anything_is_a_hang_of_one_boot(
        reference_guest: object, harness_profile: Profile, images: dict[str, Path], artifacts_dir: Path,
        harness_run_id: str) -> None:
    machine = standin_machine(harness_profile, images["hang"], artifacts_dir, harness_run_id, "hang", hang=10)
    try:
        machine.boot()
        # The firmware's line proves the machine ran to its silent shell; on a loaded host OVMF
        # itself may be quiet for the whole 10 s, so wait for it rather than race it.
        machine.expect(r"BdsDxe: starting Boot0002", timeout=90)
        verdict = machine.wait_verdict()
    finally:
        machine.close()
    assert verdict.verdict == "hang", verdict.one_line()
    assert "no console output and no event for 10 s" in verdict.reason
    assert verdict.boots == 1 and verdict.crashing_boots == 0 and verdict.crash is None
    com1 = (artifacts_dir / "com1.log").read_text(errors="replace")
    assert "BdsDxe: starting Boot0002" in com1 and "HARNESS-" not in com1 and SAC_BANNER not in com1
