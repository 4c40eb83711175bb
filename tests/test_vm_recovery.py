"""Recovery as a test outcome, on real VMs: a machine caught in a boot loop by a bad
content update is brought back by safe mode or by the recovery environment, with a
script that deletes the file the harness names as the bad update."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.content.format import file_name
from harness.paths import CONTENT_FIXTURES
from harness.recovery import stopped_unannounced
from harness.vm.connection import destroy_by_name
from harness.vm.machine import Machine

from .conftest import run_harness

pytestmark = [pytest.mark.vm, pytest.mark.family("linux")]

GOOD = (CONTENT_FIXTURES / "good.sys").read_bytes()
CF291 = (CONTENT_FIXTURES / "cf291-field21.sys").read_bytes()
GOOD_NAME = file_name(291, 0, 31)  # the last good update
BAD_NAME = file_name(291, 0, 32)  # the 04:09 UTC one
PATHS = ("safe-mode", "recovery-env")


def looping(vm: Machine) -> Machine:
    vm.install_content({GOOD_NAME: GOOD})
    vm.install_content({BAD_NAME: CF291}, bad_update=True)
    vm.boot()
    assert vm.wait_verdict().verdict == "boot-loop"
    return vm


@pytest.mark.parametrize("path", PATHS)
def test_recovery_brings_a_looping_machine_back_and_keeps_the_last_good_file(vm: Machine, path: str,
                                                                            request: pytest.FixtureRequest) -> None:
    request.applymarker(pytest.mark.expect_recovery(path))
    result = looping(vm).recover(path)  # type: ignore[arg-type]
    assert result.result == "recovered", result.reason
    assert result.removed == [BAD_NAME] and result.boots == 2 and result.script_rc == 0
    assert result.final is not None and result.final.verdict == "healthy"
    assert result.final.boot_log[-1].loaded == [GOOD_NAME]  # the sensor runs again, on the good file
    assert result.seconds_from_first_crash is not None and result.seconds_from_first_crash > result.seconds
    assert (vm.artifacts / f"recovery-{path}" / "removed" / BAD_NAME).read_bytes() == CF291
    recorded = json.loads((vm.artifacts / "verdict.json").read_text())["recovery"][path]
    assert recorded["result"] == "recovered" and recorded["removed"] == [BAD_NAME]


@pytest.mark.expect_boot_loop
@pytest.mark.parametrize("path", PATHS)
def test_a_script_that_deletes_nothing_leaves_the_machine_looping(vm: Machine, path: str, tmp_path: Path) -> None:
    script = tmp_path / "noop.sh"
    script.write_text("#!/bin/sh\necho 'looked, changed nothing'\nexit 0\n")
    result = looping(vm).recover(path, script=script)  # type: ignore[arg-type]
    assert result.result == "failed"
    assert result.removed == []
    assert result.final is not None and result.final.verdict == "boot-loop"
    # The recovery boot, then a normal boot loop of boot_loop_threshold crashing boots: counted.
    assert result.boots == 1 + vm.profile.boot_loop_threshold == 1 + result.final.crashing_boots
    assert result.final.crash is not None and result.final.crash.function == "chf_match_criterion"
    assert "looked, changed nothing" in (vm.artifacts / "serial.log").read_text()


@pytest.mark.expect_boot_loop
def test_a_recovery_environment_that_hangs_is_reported_as_hang(vm: Machine, tmp_path: Path) -> None:
    script = tmp_path / "stuck.sh"
    script.write_text("#!/bin/sh\nsleep 600\n")
    vm.profile = dataclasses.replace(vm.profile, timeouts=dataclasses.replace(vm.profile.timeouts, hang=8))
    result = looping(vm).recover("recovery-env", script=script)
    assert result.result == "failed" and result.stage == "hang"
    assert result.removed == [] and result.final is None and result.boots == 1


def test_a_stop_whose_event_never_arrives_is_found_by_asking_libvirt(vm: Machine) -> None:
    """Seen once in CI: a recovery environment powered off, libvirtd stopped QEMU, and no
    lifecycle event reached the harness. Here the events are really lost (the machine's recorder
    deregistered) and the domain stopped from outside: asking libvirt finds the stop."""
    vm.install_content({GOOD_NAME: GOOD})
    vm.boot()
    assert vm.wait_verdict().verdict == "healthy"
    assert not stopped_unannounced(vm) and vm.monitor.stopped is None  # running: nothing to find
    assert vm.events is not None
    vm.events.close()
    vm.events = None
    assert destroy_by_name(vm.profile.uri, vm.name)
    assert vm.monitor.stopped is None  # no event came
    assert stopped_unannounced(vm) and vm.monitor.stopped == "lifecycle:stopped:shutdown"


def test_reproduce_recover_all_reports_each_path(tmp_path: Path) -> None:
    content = tmp_path / BAD_NAME
    content.write_bytes(CF291)
    proc = run_harness("reproduce", content, "--recover", "all", "--json", "--artifacts", tmp_path / "a",
                       timeout=400)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "boot-loop"
    for path in PATHS:
        assert report["recovery"][path]["result"] == "recovered", report["recovery"][path]
        assert report["recovery"][path]["final_verdict"] == "healthy"
        assert report["recovery"][path]["boots"] == 2

    noop = tmp_path / "noop.sh"
    noop.write_text("#!/bin/sh\nexit 0\n")
    proc = run_harness("reproduce", content, "--recover", "all", "--recovery-script", noop, "--json",
                       "--artifacts", tmp_path / "b", timeout=400)
    report = json.loads(proc.stdout)
    assert {path: report["recovery"][path]["result"] for path in PATHS} == dict.fromkeys(PATHS, "failed")
    assert {path: report["recovery"][path]["boots"] for path in PATHS} == dict.fromkeys(PATHS, 3)
