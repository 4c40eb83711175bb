"""Choose the domain type: `kvm` only when KVM really runs a Linux guest, else `qemu` (TCG).

A /dev/kvm node proves nothing: on nested hosts such as kvm_pvm it exists, and
libvirt lists <domain type='kvm'/>, yet stock kernels hang silently under it
(a real-mode boot sector still runs there, so a tiny probe is not enough). The
probe boots a stock kernel under KVM and waits for its banner on COM1. The
answer is cached per host boot (the kernel's boot_id) in the build directory.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

from ..paths import cache_dir

BANNER = b"Linux version"
PROBE_TIMEOUT_S = 12.0
CACHE = cache_dir() / "kvm-probe.json"


def _probe_kernel() -> Path | None:
    kernels = sorted(Path("/boot").glob("vmlinuz-*"))
    return kernels[-1] if kernels else None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float) -> bytes:
    """What `proc` wrote to its stdout pipe until `needle` appeared, it exited or closed its
    stdout, or `timeout` seconds passed."""
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            break
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
    return seen


def _run_probe(qemu: str, kernel: Path) -> tuple[bool, str]:
    proc = subprocess.Popen(
        [qemu, "-accel", "kvm", "-M", "pc", "-cpu", "host", "-m", "256", "-display", "none",
         "-nodefaults", "-serial", "stdio", "-no-reboot", "-kernel", str(kernel),
         "-append", "console=ttyS0 panic=-1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        seen = read_until(proc, BANNER, PROBE_TIMEOUT_S)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    if BANNER in seen:
        return True, f"a KVM guest booted {kernel.name}"
    last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return False, f"a KVM guest did not reach its banner within {PROBE_TIMEOUT_S:.0f} s ({last[0][:160]})"


def kvm_runs_guests(qemu: str = "qemu-system-x86_64") -> tuple[bool, str]:
    """(True, why) when a stock kernel really booted under KVM on this host."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is absent or not accessible"
    binary = shutil.which(qemu)
    kernel = _probe_kernel()
    if binary is None or kernel is None:
        return False, f"cannot probe KVM: {qemu if binary is None else 'no /boot/vmlinuz-*'} missing"
    key = {"boot_id": _boot_id(), "kernel": str(kernel), "qemu": binary}
    try:
        cached = json.loads(CACHE.read_text())
        if cached["key"] == key:
            return bool(cached["kvm"]), str(cached["why"]) + " (cached)"
    except (OSError, ValueError, KeyError):
        pass
    ok, why = _run_probe(binary, kernel)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps({"key": key, "kvm": ok, "why": why}))
    return ok, why


def choose_domain_type(accel: str) -> tuple[str, str]:
    """Domain type for a profile's `accel` (auto, kvm or tcg) and the reason."""
    if accel == "tcg":
        return "qemu", "profile forces TCG"
    if accel == "kvm":
        return "kvm", "profile forces KVM"
    ok, why = kvm_runs_guests()
    return ("kvm", why) if ok else ("qemu", f"software emulation: {why}")
