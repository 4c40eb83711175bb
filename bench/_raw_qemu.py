"""The baseline: plain qemu-system-x86_64 booting the reference guest, read line by line."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import _repo  # noqa: F401  (the checkout on sys.path)
from _cleanup import Cleanup
from _qemu_proc import vcpu_seconds
from _setup import BANNER, BOOT_TIMEOUT_S, PANIC

from harness.guest.linux_ref import ReferenceGuest
from harness.vm.accel import read_until

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # not fatal: the Cleanup still kills it
        pass


def raw_qemu_argv(guest: ReferenceGuest, disk: Path, domain_type: str, cmdline: str,
                  no_reboot: bool) -> list[str]:
    """QEMU alone, with the devices of vm-templates/linux/domain.xml.j2 as libvirt runs it:
    -nodefaults (no VGA, NIC, floppy, CD), no USB, no balloon, 256 MiB, 1 vCPU, virtio disk
    with cache=unsafe, COM1 (here on stdout, not a pty), the guest agent's virtio-serial port
    (a unix socket beside the disk that nobody connects to, as in a test that never calls the
    agent), ISA pvpanic. `-action panic=none`: the guest's own panic=1 reboots it (libvirt
    instead pauses at the pvpanic and resets). debug-threads=on names the vCPU thread, as
    libvirt does, so that its CPU time can be read (_qemu_proc.vcpu_seconds)."""
    accel = "kvm" if domain_type == "kvm" else "tcg"
    cpu = "host" if accel == "kvm" else "qemu64"
    agent = disk.parent / f"{disk.stem}-agent.sock"
    argv = ["qemu-system-x86_64", "-name", "raw,debug-threads=on", "-accel", accel, "-M", "pc,usb=off",
            "-cpu", cpu, "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", "stdio", "-rtc", "base=utc", "-kernel", str(guest.kernel), "-initrd", str(guest.initrd),
            "-append", cmdline, "-drive", f"file={disk},format=raw,if=virtio,cache=unsafe",
            "-device", "virtio-serial-pci,id=vserial0",
            "-chardev", f"socket,id=agent0,path={agent},server=on,wait=off",
            "-device", "virtserialport,bus=vserial0.0,nr=1,chardev=agent0,name=org.qemu.guest_agent.0",
            "-device", "pvpanic", "-action", "panic=none"]
    if no_reboot:
        argv.append("-no-reboot")
    return argv


@dataclasses.dataclass
class RawRun:
    total_s: float  # spawn -> the wanted panic line (complete line read)
    banners: list[float]  # spawn -> each "Linux version" line
    panics: list[float]  # spawn -> each panic line
    log: str
    vcpu_s: float | None = None  # CPU seconds of QEMU's vCPU thread at the wanted panic line


def run_raw(argv: list[str], panics_wanted: int, log: Path, cleanup: Cleanup,
            timeout: float = BOOT_TIMEOUT_S) -> RawRun:
    """Spawn QEMU, read its stdout line by line until the `panics_wanted`-th panic line."""
    t0 = time.monotonic()
    proc = cleanup.proc(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, preexec_fn=_die_with_parent))
    assert proc.stdout is not None and proc.stderr is not None
    banners: list[float] = []
    panics: list[float] = []
    vcpu: float | None = None
    partial = b""
    out = bytearray()
    try:
        fd = proc.stdout.fileno()
        deadline = t0 + timeout
        while len(panics) < panics_wanted:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"raw QEMU: {len(panics)}/{panics_wanted} panic lines after "
                                   f"{timeout:.0f} s (log: {log})")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            now = time.monotonic() - t0
            if not chunk:
                err = proc.stderr.read().decode(errors="replace").strip()
                raise RuntimeError(f"raw QEMU exited (rc {proc.wait()}) after {len(panics)} panic "
                                   f"line(s): {err[-500:] or 'no stderr'} (log: {log})")
            out += chunk
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()
            for line in lines:
                if BANNER.encode() in line:
                    banners.append(now)
                if PANIC.encode() in line:
                    panics.append(now)
                    if len(panics) == panics_wanted:
                        vcpu = vcpu_seconds(proc.pid)
        return RawRun(panics[-1], banners, panics, str(log), vcpu)
    finally:
        cleanup.kill(proc)
        cleanup.procs.remove(proc)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(bytes(out))


def warm_raw(guest: ReferenceGuest, domain_type: str, cleanup: Cleanup, disk: Path) -> None:
    """Untimed: raw QEMU up to the kernel banner (page cache for the kernel, initrd, QEMU)."""
    argv = raw_qemu_argv(guest, disk, domain_type, guest.cmdline(sensor="vulnerable"), True)
    proc = cleanup.proc(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent))
    try:
        read_until(proc, BANNER.encode(), 30)
    finally:
        cleanup.kill(proc)
        cleanup.procs.remove(proc)
