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


@pytest.mark.expect_boot_loop
def test_the_vulnerable_sensor_with_cf291_content_bugchecks_at_every_boot(vm: Machine) -> None:
    if vm.sensor != "vulnerable":
        pytest.skip(f"the golden image has the {vm.sensor} sensor")
    vm.install_content({GOOD_NAME: GOOD, BAD_NAME: CF291})
    vm.boot()
    verdict = vm.wait_verdict()
    assert verdict.verdict == "boot-loop", verdict.one_line()
    assert verdict.crash is not None and verdict.crash.stop_code in INVALID_READ_STOP_CODES, verdict.crash
    assert verdict.events.get("lifecycle:crashed:panicked", 0) >= 2


@pytest.mark.parametrize("path", ("safe-mode", "recovery-env"))
def test_recovery_brings_a_bugchecking_windows_machine_back(vm: Machine, path: str,
                                                            request: pytest.FixtureRequest) -> None:
    if vm.sensor != "vulnerable":
        pytest.skip(f"the golden image has the {vm.sensor} sensor")
    request.applymarker(pytest.mark.expect_recovery(path))
    vm.install_content({GOOD_NAME: GOOD})
    vm.install_content({BAD_NAME: CF291}, bad_update=True)
    vm.boot()
    assert vm.wait_verdict().verdict == "boot-loop"
    result = vm.recover(path)  # type: ignore[arg-type]
    assert result.result == "recovered", result.reason
    assert result.removed == [BAD_NAME]
    assert result.final is not None and result.final.verdict == "healthy"
