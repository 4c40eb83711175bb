"""A guest that floods its console, then takes the bad content update.

A running machine's user space writes megabytes to its serial port (/dev/ttyS0): short lines,
64 KiB lines, lines that only look like a kernel crash report (a crash head in mid-line, a
stack trace with no crash, a WARNING that never ends), and last a run with no newline at all.
Then the update agent delivers CF-291 and the sensor reloads it. The harness must still name
the boot loop and its crash (`BUG: unable to handle page fault in chf_match_criterion`),
never a hang, an infrastructure error or a crash made of the flood's words, and the process
that owns the Machine must stay under 200 MB of memory the whole time.

The Machine runs in a child process (this file run as a script), so its memory is its own:
the test samples the child's RSS from /proc while it runs, and the child reports its peak
(VmHWM) when it is done.

Speed: the emulated 16550 moves each byte alone through QEMU (one write to the pty and one to
virtlogd's pipe), virtlogd, libvirtd and this process. On this 2-core host under software
emulation that is CPU-bound at about 0.1 MB/s (measured per byte: QEMU 6.6 us, virtlogd 2.5,
libvirtd 1.9, harness 3.1), so 100 MB takes about 16 minutes. CI floods FLOOD_MB (3 MB: more
than the harness's 1 MiB console tail and than libvirt's default 2 MB log rollover, which
tools/virtlogd.conf raises to 128 MiB; about 30 s); the full 100 MB runs with HARNESS_FULL_FLOOD=1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.family("linux")]

FLOOD_MB = 3
FULL_FLOOD_MB = 100
MEMORY_LIMIT_MB = 200
CRASH_TITLE = "BUG: unable to handle page fault in chf_match_criterion"
END_TOKEN = "FLOOD-END-WITHOUT-NEWLINE"

# The guest's part, for busybox sh: $1 bytes in four parts, all base64 (no spaces, no colons:
# nothing in them can look like a kernel line), and the look-alikes just before the last part,
# so the WARNING that never ends is still open when the real crash comes.
FLOOD_SCRIPT = r"""
set -e
total=$1
tty=/dev/ttyS0
raw() { echo $(( $1 * 3 / 4 )); }   # bytes of input for $1 bytes of base64
head -c "$(raw $((total * 45 / 100)))" /dev/urandom | base64 > $tty
i=0
while [ $i -lt $(((total * 35 / 100 + 65535) / 65536)) ]; do   # lines of 64 KiB
    head -c 49152 /dev/urandom | base64 | tr -d '\n'; echo; i=$((i + 1))
done > $tty
cat > $tty <<'LOOKALIKES'
flood: BUG: unable to handle page fault for address: 0000000000000000
flood: Kernel panic - not syncing: only quoted
Oops, said the flood
------------[ cut here ]------------
WARNING: CPU: 0 PID: 1 at drivers/flood/flood.c:7 flood_warn_done+0x1/0x2
Call Trace:
 <TASK>
 flood_caller+0x10/0x20
 </TASK>
---[ end trace 0000000000000000 ]---
RIP: 0010:flood_fake_rip+0x0/0x10
Call Trace:
 chf_match_criterion+0xe/0x80 [harness_sensor]
------------[ cut here ]------------
WARNING: CPU: 0 PID: 1 at drivers/flood/flood.c:42 flood_warn_open+0x1/0x2
LOOKALIKES
head -c "$(raw $((total * 15 / 100)))" /dev/urandom | base64 | tr -d '\n' > $tty
printf '%s' FLOOD-END-WITHOUT-NEWLINE > $tty
"""


@pytest.mark.parametrize("megabytes", [
    FLOOD_MB,
    pytest.param(FULL_FLOOD_MB, marks=pytest.mark.skipif(
        os.environ.get("HARNESS_FULL_FLOOD") != "1",
        reason="100 MB through the emulated serial port takes about 16 min under software "
               "emulation (0.1 MB/s here): set HARNESS_FULL_FLOOD=1")),
])
def test_a_guest_that_floods_its_console_still_loops_on_cf291_and_the_harness_stays_small(
        megabytes: int, pytestconfig: pytest.Config, reference_guest: Any, harness_run_id: str,
        artifacts_dir: Path) -> None:
    story = {"config": str(pytestconfig.getoption("harness_config") or ""),
             "profile": pytestconfig.getoption("harness_profile") or "",
             "artifacts": str(artifacts_dir), "run_id": harness_run_id,
             "test_id": f"console-flood-{megabytes}mb",
             "slot": f"{os.environ.get('PYTEST_XDIST_WORKER', 'gw0')}-flood{megabytes}",
             "megabytes": megabytes}
    child, peak_sampled_mb = run_story_in_child(story, timeout=300 + 40 * megabytes)

    where = f"(artifacts: {artifacts_dir})"
    assert child["after_flood"] == "healthy", f"the flood alone made {child['after_flood_line']} {where}"
    assert child["flood_bytes"] >= 0.95 * megabytes * 1_000_000, child  # all of it reached the host
    assert child["verdict"] == "boot-loop", f"{child['verdict_line']} {where}"
    assert child["crash_title"] == CRASH_TITLE and child["crash_function"] == "chf_match_criterion", child
    assert all(title == CRASH_TITLE for title in child["crash_titles"]), child["crash_titles"]
    assert child["crash_head_in_serial_logs"], f"the crash is in no serial log {where}"
    # tools/virtlogd.conf: the whole run, boot banner to crash, stays in one serial.log
    assert list(child["serial_logs"]) == ["serial.log"], child["serial_logs"]
    serial = (artifacts_dir / "serial.log").read_bytes()
    assert b"HARNESS-BOOT-START" in serial and b"BUG: unable to handle page fault" in serial
    peak = max(child["vm_hwm_mb"], peak_sampled_mb)
    print(f"console flood {megabytes} MB: {child['flood_rate_mb_s']:.3f} MB/s "
          f"({child['flood_seconds']:.0f} s), harness peak RSS {peak:.0f} MB, "
          f"serial logs {child['serial_logs']}")
    assert peak < MEMORY_LIMIT_MB, f"the harness process peaked at {peak:.0f} MB {where}"


def run_story_in_child(story: dict[str, Any], timeout: float) -> tuple[dict[str, Any], float]:
    """Run main() below in a child process, sampling its RSS; (its report, peak RSS sampled)."""
    import harness

    source = str(Path(harness.__file__).resolve().parent.parent)  # the harness this test imported
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, __file__, json.dumps(story)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=source, env=env)
    peak_mb = 0.0
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        peak_mb = max(peak_mb, rss_mb(proc.pid))
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"the flood story did not finish within {timeout:.0f} s")
        try:
            proc.wait(timeout=0.25)  # the child's exit ends the sampling
        except subprocess.TimeoutExpired:
            pass
    out, err = proc.communicate()
    if proc.returncode != 0:
        pytest.fail(f"the flood story failed (exit {proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), peak_mb


def rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else 0.0


# ------------------------------------------------------------------ the child: owns the Machine


def main(story: dict[str, Any]) -> dict[str, Any]:
    from harness.config import select_profile
    from harness.content.format import file_name
    from harness.guest.linux_ref import build_reference_guest
    from harness.paths import CONTENT_FIXTURES
    from harness.vm.machine import Machine, MachineSpec

    good_name, bad_name = file_name(291, 0, 31), file_name(291, 0, 32)
    profile = select_profile(Path(story["config"]) if story["config"] else None, story["profile"] or None)
    guest = build_reference_guest(progress=lambda _msg: None)
    artifacts = Path(story["artifacts"])
    vm = Machine(MachineSpec(profile=profile, guest=guest, artifacts=artifacts, run_id=story["run_id"],
                             test_id=story["test_id"], slot=story["slot"]))
    flood_bytes = int(story["megabytes"] * 1_000_000)
    try:
        vm.enable_network()
        vm.install_content({good_name: (CONTENT_FIXTURES / "good.sys").read_bytes()})
        vm.boot()
        assert vm.wait_verdict().verdict == "healthy"

        assert vm.console is not None
        read_before, started = vm.console.bytes_read, time.monotonic()
        since = vm.buffer.end
        flood = vm.run(f"cat > /tmp/flood.sh && sh /tmp/flood.sh {flood_bytes}", stdin=FLOOD_SCRIPT.encode(),
                       timeout=120 + flood_bytes / 20_000)
        assert flood.rc == 0, f"the guest's flood script failed (rc {flood.rc}): {flood.stderr}"
        vm.expect(re.escape(END_TOKEN), timeout=300, since=since)  # the host has read it all
        flood_seconds = time.monotonic() - started
        flood_read = vm.console.bytes_read - read_before
        after_flood = vm.wait_verdict(timeout=5)  # healthy at once, unless the flood made a crash

        vm.put_content_online(bad_name, (CONTENT_FIXTURES / "cf291-field21.sys").read_bytes())
        vm.reload_content()
        verdict = vm.wait_verdict()
    finally:
        vm.close()
    logs = sorted(artifacts.glob("serial.log*"))
    return {
        "after_flood": after_flood.verdict, "after_flood_line": after_flood.one_line(),
        "flood_bytes": flood_read, "flood_seconds": flood_seconds,
        "flood_rate_mb_s": flood_read / flood_seconds / 1e6,
        "verdict": verdict.verdict, "verdict_line": verdict.one_line(),
        "crash_title": verdict.crash_title,
        "crash_function": verdict.crash.function if verdict.crash else None,
        "crash_titles": [c.title for c in verdict.crashes],
        "serial_logs": {p.name: p.stat().st_size for p in logs},
        "crash_head_in_serial_logs": any(b"BUG: unable to handle page fault" in p.read_bytes() for p in logs),
        "vm_hwm_mb": int(re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(),
                                   re.M).group(1)) / 1024,  # type: ignore[union-attr]
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
