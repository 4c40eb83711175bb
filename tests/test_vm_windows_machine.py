"""The Windows machine path, end to end on real QEMU, with a stand-in golden image.

A profile of family windows boots a qcow2 overlay of a read-only golden image under
OVMF, reads COM1 (EMS/SAC) and COM2 (the harness markers) live, and judges with the
Windows family: healthy on the startup task's markers; a boot loop when every boot
bugchecks (the EMS BLUESCREEN record, the pvpanic CRASHED event). These stand-ins
print the SAC banner too (SAC enriches, it must not double the boot count); the ones
without SAC are in test_vm_windows_standins.py.
What speaks on the ports is OVMF's UEFI shell, not Windows: tests/windows_standin.py
says why and what that leaves unproven.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from harness.config import Profile

from .conftest import require_tool
from .windows_standin import BUGCHECK_0X50, HEALTHY, build_standin_golden, standin_machine

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def standin_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_tool("mkfs.fat", "install dosfstools (make setup)")
    require_tool("mcopy", "install mtools (make setup)")
    directory = tmp_path_factory.mktemp("golden")
    return {"healthy": build_standin_golden(directory, "healthy", HEALTHY),
            "bugcheck": build_standin_golden(directory, "bugcheck", BUGCHECK_0X50)}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_windows_machine_boots_an_overlay_and_is_judged_healthy_from_com1_and_com2(
        reference_guest: object, harness_profile: Profile, standin_images: dict[str, Path], artifacts_dir: Path,
        harness_run_id: str) -> None:
    image = standin_images["healthy"]
    before = sha256(image)
    machine = standin_machine(harness_profile, image, artifacts_dir, harness_run_id, "healthy")
    try:
        machine.boot()
        verdict = machine.wait_verdict()
        assert verdict.verdict == "healthy", verdict.one_line()
        assert verdict.boots == 1 and verdict.crash is None
        overlay = artifacts_dir / "disk.qcow2"
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(overlay)],
                                         capture_output=True, text=True, check=True).stdout)
        assert info["format"] == "qcow2" and Path(info["backing-filename"]) == image.resolve()
        assert (artifacts_dir / "OVMF_VARS.fd").is_file()  # the machine's own variable store
    finally:
        machine.close()
    saved = json.loads((artifacts_dir / "verdict.json").read_text())
    assert saved["family"] == "windows" and saved["serial_log"].endswith("com1.log")
    assert "Computer is booting, SAC started and initialized." in (artifacts_dir / "com1.log").read_text()
    assert "HARNESS-BOOT-COMPLETE" in (artifacts_dir / "com2.log").read_text()  # the marker port, logged too
    assert not (artifacts_dir / "disk.qcow2").exists() and not (artifacts_dir / "OVMF_VARS.fd").exists()
    assert sha256(image) == before  # the golden image is never written


@pytest.mark.expect_boot_loop
def test_a_windows_machine_that_bugchecks_at_every_boot_is_a_boot_loop_with_the_stop_code(
        reference_guest: object, harness_profile: Profile, standin_images: dict[str, Path], artifacts_dir: Path,
        harness_run_id: str) -> None:
    machine = standin_machine(harness_profile, standin_images["bugcheck"], artifacts_dir, harness_run_id, "loop")
    try:
        machine.boot()
        verdict = machine.wait_verdict()
    finally:
        machine.close()
    assert verdict.verdict == "boot-loop", verdict.one_line()
    # SAC's banner and the firmware's line of one boot are one boot: two crashes, two boots
    assert verdict.boots == verdict.crashing_boots == 2
    assert [b.opened_by for b in verdict.boot_log] == ["start", "firmware"]
    assert verdict.crash is not None
    assert verdict.crash.title.startswith("PAGE_FAULT_IN_NONPAGED_AREA (0x50)"), verdict.crash.title
    assert verdict.events.get("lifecycle:crashed:panicked", 0) >= 2  # pvpanic, seen by libvirt each time
    assert all(report.title == verdict.crash.title for report in verdict.crashes)


INNER = '''
import pytest


@pytest.mark.family("windows")
def test_a_windows_story(vm):
    vm.boot()
    assert vm.wait_verdict().verdict == "healthy"


@pytest.mark.family("linux")
def test_a_linux_story(vm):
    raise AssertionError("a linux story must not run on a windows profile")
'''


def test_a_windows_profile_gives_the_vm_fixture_a_windows_machine_and_runs_only_windows_stories(
        pytester: pytest.Pytester, reference_guest: object, standin_images: dict[str, Path]) -> None:
    config = pytester.path / "harness.yaml"
    config.write_text(f"profiles:\n  standin:\n    family: windows\n    edition: win10\n"
                      f"    image: {standin_images['healthy']}\n    memory_mib: 512\n    vcpus: 1\n")
    pytester.makepyfile(test_inner=INNER)
    artifacts = pytester.path / "artifacts"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--harness-config={config}",
                                "--harness-profile=standin", f"--harness-artifacts={artifacts}", "-v")
    result.assert_outcomes(passed=1, deselected=1)
    [run] = artifacts.iterdir()
    verdict = json.loads((run / "test_inner.py--test_a_windows_story" / "verdict.json").read_text())
    assert verdict["family"] == "windows" and verdict["profile"] == "standin"


def test_doctor_checks_a_windows_profiles_golden_image_against_its_manifest(
        tmp_path: Path, reference_guest: object, standin_images: dict[str, Path]) -> None:
    from .conftest import run_harness

    config = tmp_path / "harness.yaml"
    config.write_text(f"profiles:\n  standin:\n    family: windows\n    edition: win10\n"
                      f"    image: {standin_images['healthy']}\n")
    proc = run_harness("doctor", "--config", config, "--profile", "standin")
    assert "[ok ] golden image:" in proc.stdout and "sha256 matches its manifest" in proc.stdout, proc.stdout
    assert "[ok ] firmware: OVMF" in proc.stdout

    writable = tmp_path / "writable.img"  # a golden image anyone may write is refused, with the fix
    writable.write_bytes(standin_images["healthy"].read_bytes())
    (tmp_path / "writable.img.golden.json").write_text(
        standin_images["healthy"].with_name("healthy.img.golden.json").read_text())
    config.write_text(f"profiles:\n  standin:\n    family: windows\n    edition: win10\n    image: {writable}\n")
    proc = run_harness("doctor", "--config", config, "--profile", "standin")
    assert proc.returncode != 0
    assert f"golden image: {writable}: a golden image must be read-only (chmod 0444 {writable})" in proc.stdout
