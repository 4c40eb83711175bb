"""harness rollout under faults, on real machines: a machine whose QEMU dies during its baseline
boot is replaced; a delivery that cannot reach the machine (its SSH server killed) is retried
once and counted as a failed delivery, not a crash; Ctrl-C in the middle leaves no domain behind
and writes the partial result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import libvirt
import pytest

from harness.errors import HarnessError

REPO = Path(__file__).resolve().parents[1]
CF291 = REPO / "fixtures" / "content" / "cf291-field21.sys"
GOOD = REPO / "fixtures" / "content" / "good.sys"

pytestmark = pytest.mark.vm


def _kill_ssh(machine: Any) -> None:
    """The update agent's channel goes down: the guest's SSH server is killed."""
    try:
        machine.run("killall dropbear")
    except HarnessError:
        pass  # the session dies with its server


def _kill_first_boot(run_id: str, done: threading.Event) -> None:
    """The first domain of this run's fleet loses its QEMU (SIGKILL, by the pid libvirt wrote)."""
    conn = libvirt.open("qemu:///system")
    try:
        deadline = time.monotonic() + 240
        while not done.is_set() and time.monotonic() < deadline:
            names = [d.name() for d in conn.listAllDomains() if d.name().startswith(f"harness-{run_id}-")
                     and d.name().endswith("-vuln-0")]
            pidfile = Path(f"/run/libvirt/qemu/{names[0]}.pid") if names else None
            if pidfile is not None and pidfile.is_file():
                time.sleep(1.0)  # let the guest start talking
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
                return
            time.sleep(0.1)
    finally:
        conn.close()


def test_a_machine_lost_at_boot_is_replaced_and_an_unreachable_delivery_is_a_failed_one(
        rollout: Callable[..., dict[str, Any]], harness_run_id: str) -> None:
    done = threading.Event()
    killer = threading.Thread(target=_kill_first_boot, args=(harness_run_id, done), daemon=True)
    killer.start()
    try:
        result = rollout(CF291, fleet="vuln:1", rings="100%", before_delivery=_kill_ssh)
    finally:
        done.set()
        killer.join(10)
    [machine] = result["machines"]
    assert machine["replaced"] == 1  # its QEMU was killed during the baseline boot: a fresh machine
    assert [e["state"] for e in result["timeline"]][:3] == ["booting", "infra-error", "booting"]
    assert [d["ok"] for d in machine["deliveries"]] == [False, False]  # tried once more, then given up
    assert all(d["error"] for d in machine["deliveries"])
    assert not machine["delivered"] and machine["verdict"] is None and machine["crash_title"] is None
    assert result["failed_deliveries"] == 1 and result["blast_radius"] == 0 and not result["halted"]
    assert machine["final_verdict"] == "healthy" and result["infra_errors"] == 0


def _domains(run_id: str) -> list[str]:
    conn = libvirt.open("qemu:///system")
    try:
        return [d.name() for d in conn.listAllDomains() if run_id in d.name()]
    finally:
        conn.close()


def test_ctrl_c_mid_rollout_leaves_no_domain_and_writes_the_partial_result(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "rollout", str(CF291), "--fleet", "vuln:1", "--rings", "100%",
         "--artifacts", str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 240
        for line in proc.stderr:  # interrupt once the canary has the update
            lines.append(line)
            if "ring 0: delivering" in line or time.monotonic() > deadline:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _out, rest = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, "".join(lines) + rest
    [run_dir] = [p for p in tmp_path.iterdir() if p.is_dir()]
    result = json.loads((run_dir / "rollout.json").read_text())
    assert result["interrupted"] and result["fleet"] == 1
    assert result["seconds_to_healthy_fleet"] is None
    assert _domains(run_dir.name) == [], "a domain of the interrupted rollout is left"
