"""Real VMs: the Linux reference guest booted through libvirt and QEMU.

Each test tells one story of a machine running the sample sensor, and every
verdict comes from a guest that really booted (software emulation here)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
from pathlib import Path

import pytest

from harness.content.faults import fault
from harness.content.format import file_name
from harness.paths import CONTENT_FIXTURES
from harness.vm.connection import open_connection
from harness.vm.machine import Machine

from .conftest import REPO

pytestmark = [pytest.mark.vm, pytest.mark.family("linux")]

GOOD = (CONTENT_FIXTURES / "good.sys").read_bytes()
CF291 = (CONTENT_FIXTURES / "cf291-field21.sys").read_bytes()
GOOD_NAME = file_name(291, 0, 31)
BAD_NAME = file_name(291, 0, 32)


def events(vm: Machine) -> list[str]:
    return [json.loads(line)["event"] for line in (vm.artifacts / "events.jsonl").read_text().splitlines()]


def test_a_machine_with_good_content_boots_healthy(vm: Machine) -> None:
    vm.install_content({GOOD_NAME: GOOD})
    vm.boot()
    verdict = vm.wait_verdict()
    assert verdict.verdict == "healthy", verdict.one_line()
    assert verdict.boots == 1 and verdict.crash is None
    assert verdict.boot_log[0].loaded == [GOOD_NAME]
    serial = (vm.artifacts / "serial.log").read_text()
    assert "HARNESS-SENSOR-LOADED build=vulnerable files=1 loaded=1 rejected=0" in serial
    assert "HARNESS-BOOT-COMPLETE" in serial
    assert json.loads((vm.artifacts / "verdict.json").read_text())["verdict"] == "healthy"
    assert (vm.artifacts / "content" / GOOD_NAME).read_bytes() == GOOD
    assert "lifecycle:started:booted" in events(vm) or "lifecycle:resumed:unpaused" in events(vm)


@pytest.mark.expect_boot_loop
def test_the_vulnerable_sensor_with_cf291_content_loops_at_every_boot(vm: Machine) -> None:
    vm.install_content({GOOD_NAME: GOOD, BAD_NAME: CF291})
    vm.boot()
    verdict = vm.wait_verdict()
    assert verdict.verdict == "boot-loop", verdict.one_line()
    assert verdict.crashing_boots >= 2
    assert verdict.crash is not None
    assert verdict.crash.function == "chf_match_criterion"
    assert verdict.crash.module == "harness_sensor"
    assert all(report.title == verdict.crash.title for report in verdict.crashes)
    assert events(vm).count("lifecycle:crashed:panicked") >= 2  # pvpanic, fused with the console


def test_the_hardened_sensor_rejects_cf291_and_the_machine_stays_healthy(vm: Machine) -> None:
    vm.sensor = "hardened"
    vm.install_content({GOOD_NAME: GOOD, BAD_NAME: CF291})
    vm.boot()
    verdict = vm.wait_verdict()
    assert verdict.verdict == "content-rejected", verdict.one_line()
    [rejection] = verdict.boot_log[-1].rejected
    assert rejection["file"] == BAD_NAME and "[field-count]" in rejection["reason"]
    assert verdict.boot_log[-1].loaded == [GOOD_NAME]


def test_a_zeroed_file_is_rejected_by_the_vulnerable_sensor_too(vm: Machine) -> None:
    vm.install_content({BAD_NAME: fault("zeroed").apply(GOOD)})
    vm.boot()
    verdict = vm.wait_verdict()
    assert verdict.verdict == "content-rejected", verdict.one_line()
    assert "[bad-magic]" in verdict.boot_log[-1].rejected[0]["reason"]


@pytest.mark.expect_boot_loop
def test_an_online_update_crashes_the_running_machine_then_it_loops(vm: Machine) -> None:
    vm.enable_network()
    vm.install_content({GOOD_NAME: GOOD})
    vm.boot()
    assert vm.wait_verdict().verdict == "healthy"
    assert vm.run("ls /data/content").stdout.split() == [GOOD_NAME]

    vm.put_content_online(BAD_NAME, CF291)  # as the update agent did at 04:09 UTC
    vm.reload_content()
    verdict = vm.wait_verdict()
    assert verdict.verdict == "boot-loop", verdict.one_line()
    assert verdict.crash is not None and verdict.crash.function == "chf_match_criterion"
    assert (vm.artifacts / "content" / BAD_NAME).read_bytes() == CF291


def test_a_guest_that_goes_silent_is_a_hang_within_its_timeout(vm: Machine) -> None:
    vm.install_content({GOOD_NAME: GOOD})
    vm.backend.extra_cmdline = "harness.hang=1"  # the init stops talking right after BOOT-START
    vm.boot()
    verdict = vm.wait_verdict(timeout=60, hang_timeout=8)
    assert verdict.verdict == "hang", verdict.one_line()
    assert "no console output" in verdict.reason
    assert verdict.elapsed_s < 30


def test_qemu_killed_from_outside_is_an_infrastructure_error(vm: Machine) -> None:
    vm.install_content({GOOD_NAME: GOOD})
    vm.boot()
    vm.expect(r"Linux version", timeout=60)
    pid = int(Path(f"/run/libvirt/qemu/{vm.name}.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    verdict = vm.wait_verdict(timeout=60)
    assert verdict.verdict == "infra-error", verdict.one_line()
    assert verdict.crash is None


def test_libvirtd_restarted_under_a_test_is_an_infrastructure_error_never_a_crash(vm: Machine) -> None:
    vm.install_content({GOOD_NAME: GOOD})
    vm.boot()
    vm.expect(r"Linux version", timeout=60)
    pid = int(Path("/run/libvirtd.pid").read_text())
    os.kill(pid, signal.SIGTERM)  # libvirtd only: virtlogd keeps writing the serial log
    _wait_gone(pid, timeout=30)
    subprocess.run(["bash", str(REPO / "tools" / "libvirtd.sh"), "start"], check=True, timeout=120)
    verdict = vm.wait_verdict(timeout=60)
    assert verdict.verdict == "infra-error", verdict.one_line()
    assert "lost libvirt" in verdict.reason and verdict.crash is None
    vm.close()  # the domain outlived our connection: teardown finds it on a new one
    with open_connection("qemu:///system") as conn:
        assert vm.name not in [d.name() for d in conn.listAllDomains()]


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait until process `pid` (not our child) has exited: its pidfd becomes readable."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"process {pid} still running after {timeout} s"
    finally:
        os.close(fd)
