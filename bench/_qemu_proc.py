"""What a running QEMU process did and where it runs, read from /proc: its vCPU thread's CPU
seconds (the guest's own work, whatever the wall clock says), its cpu cgroup, and QEMU's own
start-up time measured on its own.

The vCPU thread is found by name: QEMU names its threads ("CPU 0/TCG", "CPU 0/KVM") when
started with `-name ...,debug-threads=on`, which libvirt always passes and the raw baseline
passes too.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def vcpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) of the process's vCPU threads; None when it has none (gone,
    or started without debug-threads=on)."""
    total = None
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            if (task / "comm").read_text().startswith("CPU "):
                total = (total or 0.0) + _cpu_seconds(task / "stat")
        except OSError:
            continue
    return total


def cpu_cgroup(pid: int) -> str | None:
    """The cgroup of the process in the hierarchy with the cpu controller (cgroup v1 "cpu",
    or the unified v2 hierarchy when no v1 cpu hierarchy is mounted)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    unified = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
        if controllers == "":
            unified = path
    return unified


def qemu_pid_of_domain(name: str) -> int | None:
    """The QEMU process libvirt started for domain `name` (its argv holds guest=<name>)."""
    needle = f"guest={name},".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.startswith(needle) or a == needle[:-1] for a in argv):
            return int(entry.name)
    return None


def qemu_start_seconds(argv: list[str], timeout: float = 60.0) -> float:
    """QEMU's own start: spawn -> its machine built and paused, ready for commands. `argv` is a
    raw command line with `-serial stdio`; it is run with COM1 on null, -S and QMP on stdio, and
    the time runs to the reply to qmp_capabilities (QEMU reads commands only once its machine
    is made: the kernel, initrd and ROMs loaded). This is the part of libvirt's createXML that
    is QEMU itself."""
    args = list(argv)
    i = args.index("-serial")
    args[i + 1] = "null"
    args += ["-S", "-qmp", "stdio"]
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps({"execute": "qmp_capabilities"}).encode() + b"\n")
        proc.stdin.flush()
        seen = b""
        deadline = t0 + timeout
        while b'"return"' not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"QEMU did not answer QMP within {timeout:.0f} s: {' '.join(args)}")
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise RuntimeError(f"QEMU exited before answering QMP: {err.strip()[-300:]}")
                seen += chunk
        return time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
