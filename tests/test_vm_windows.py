"""Real Windows VMs: the stories of the sample sensor on a Windows golden image.

Selected by a profile of family windows (`make test-vms PROFILE=win11 CONFIG=...`,
docs/running-on-windows.md) on a KVM host with an image built by `harness image
build windows`. With any other profile these tests are deselected: no Windows image
exists on our machines, so they have NOT run here (the README's table says so). The
same harness code paths run here against a stand-in (tests/test_vm_windows_machine.py).

The driver's own load/reject lines never reach a serial port on Windows (DbgPrintEx),
so a content file the hardened sensor rejects is judged from the startup task's
markers as healthy-with-sensor-loaded, not content-rejected.
"""

from __future__ import annotations

import pytest

from harness.content.format import file_name
from harness.paths import CONTENT_FIXTURES
from harness.vm.machine import Machine

pytestmark = [pytest.mark.vm, pytest.mark.family("windows")]

GOOD = (CONTENT_FIXTURES / "good.sys").read_bytes()
CF291 = (CONTENT_FIXTURES / "cf291-field21.sys").read_bytes()
GOOD_NAME = file_name(291, 0, 31)
BAD_NAME = file_name(291, 0, 32)
# An invalid kernel read in a driver's system thread: PAGE_FAULT_IN_NONPAGED_AREA (0x50) as
# on 2024-07-19, or the exception bugchecks Windows raises for the same fault in other contexts.
INVALID_READ_STOP_CODES = {0x50, 0x7E, 0x1E, 0x3B, 0xD1}


def test_a_windows_machine_with_good_content_boots_healthy_with_the_sensor_loaded(vm: Machine) -> None:
    vm.install_content({GOOD_NAME: GOOD})  # offline, into the overlay's NTFS volume
    vm.boot()
    verdict = vm.wait_verdict()
    assert verdict.verdict == "healthy", verdict.one_line()
    assert verdict.boots == 1 and verdict.crash is None
    assert "HARNESS-SENSOR-LOADED" in (vm.artifacts / "com2.log").read_text(errors="replace")


def test_cf291_content_loops_the_vulnerable_sensor_and_is_survived_by_the_hardened_one(
        vm: Machine, request: pytest.FixtureRequest) -> None:
    """The image's own sensor build decides the story: the vulnerable one bugchecks at every
    boot; the hardened one refuses the file and the machine stays up."""
    vulnerable = vm.sensor == "vulnerable"
    if vulnerable:
        request.applymarker(pytest.mark.expect_boot_loop)
    vm.install_content({GOOD_NAME: GOOD, BAD_NAME: CF291})
    vm.boot()
    verdict = vm.wait_verdict()
    if not vulnerable:
        assert verdict.verdict in ("healthy", "content-rejected") and verdict.crash is None, verdict.one_line()
        return
    assert verdict.verdict == "boot-loop", verdict.one_line()
    assert verdict.crash is not None and verdict.crash.stop_code in INVALID_READ_STOP_CODES, verdict.crash
    assert verdict.events.get("lifecycle:crashed:panicked", 0) >= 2


@pytest.mark.parametrize("path", ("safe-mode", "recovery-env"))
def test_recovery_removes_the_bad_update_from_a_windows_machine(vm: Machine, path: str,
                                                                request: pytest.FixtureRequest) -> None:
    """Vulnerable image: the machine loops and recovery brings it back. Hardened image: the
    machine never loops, and the same recovery path still removes the bad update and boots
    healthy (the path itself is proven either way)."""
    request.applymarker(pytest.mark.expect_recovery(path))
    vm.install_content({GOOD_NAME: GOOD})
    vm.install_content({BAD_NAME: CF291}, bad_update=True)
    vm.boot()
    expected = ("boot-loop",) if vm.sensor == "vulnerable" else ("healthy", "content-rejected")
    assert vm.wait_verdict().verdict in expected
    result = vm.recover(path)  # type: ignore[arg-type]
    assert result.result == "recovered", result.reason
    assert result.removed == [BAD_NAME]
    assert result.final is not None and result.final.verdict == "healthy"
