"""No leaks: a run killed with SIGKILL mid-boot leaves a domain and a disk image behind;
`harness clean` finds them by prefix and metadata and removes them at once (the owner's
lock died with it, even while its pid is a zombie's), and a domain that is not ours
survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import socket
import time
from pathlib import Path

import libvirt
import pytest

from harness.sweep import OwnedDomain, sweep
from harness.vm.connection import open_connection
from harness.vm.ownership import lock_held, process_lock
from harness.vm.templates import METADATA_NS

from .conftest import REPO, run_harness

pytestmark = pytest.mark.vm

FOREIGN = "harness-foreign-not-ours"  # our prefix, but no harness metadata


def foreign_domain(conn: libvirt.virConnect, guest: object) -> libvirt.virDomain:
    xml = f"""<domain type='qemu'><name>{FOREIGN}</name><memory unit='MiB'>128</memory>
      <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{guest.kernel}</kernel>
      <initrd>{guest.initrd}</initrd><cmdline>console=ttyS0 harness.hang=1</cmdline></os>
      <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
      <devices><serial type='pty'/><memballoon model='none'/></devices></domain>"""
    return conn.createXML(xml, 0)


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_killed_reproduce_is_cleaned_at_once_while_still_a_zombie(reference_guest: object,
                                                                   tmp_path: Path) -> None:
    """`harness reproduce` killed with SIGKILL as soon as its domain runs, never reaped (as under
    a PID 1 that does not reap): one second later `harness clean` destroys its domain and removes
    its disk, and leaves a foreign domain alone. The zombie's pid is still in the table; its
    lock died with it."""
    content = tmp_path / "C-00000291-00000000-00000001.sys"
    content.write_bytes(b"")
    artifacts = tmp_path / "artifacts"
    child = subprocess.Popen([sys.executable, "-m", "harness.cli", "reproduce", str(content),
                              "--artifacts", str(artifacts)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    conn = open_connection("qemu:///system")
    foreign = foreign_domain(conn, reference_guest)
    try:
        for line in child.stderr:  # "harness: <domain>: boot 1 (normal, ...)"
            if ": boot 1 (" in line:
                name = line.split("harness: ", 1)[1].split(":", 1)[0]
                break
        else:
            pytest.fail(f"reproduce ended before its first boot (exit {child.wait(timeout=30)})")
        deadline = time.monotonic() + 30
        while not _running(conn, name):
            assert time.monotonic() < deadline, f"{name} never ran"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # no teardown runs; nobody reaps it
        time.sleep(1)
        assert _zombie(child.pid)
        disks = list(artifacts.glob("*/*/data-disk.img"))
        assert disks, "the killed run's disk image should still be there"

        proc = run_harness("clean", "--artifacts", tmp_path / "nothing-else")
        assert proc.returncode == 0, proc.stderr
        # stdout names the domains left in use (other runs' live domains may be there; never ours)
        assert f"destroying {name}" in proc.stderr and name not in proc.stdout, proc.stdout
        names = [d.name() for d in conn.listAllDomains()]
        assert name not in names
        assert FOREIGN in names and foreign.isActive()
        assert not any(d.exists() for d in disks)
        assert list(artifacts.glob("*/*/serial.log"))  # artifacts are kept, only the disk goes
    finally:
        child.kill()
        child.wait(timeout=30)
        foreign.destroy()
        conn.close()


def _running(conn: libvirt.virConnect, name: str) -> bool:
    try:
        return bool(conn.lookupByName(name).isActive())
    except libvirt.libvirtError:
        return False


def test_a_live_pid_does_not_keep_a_dead_runs_domain(reference_guest: object, tmp_path: Path) -> None:
    """A reused pid: the metadata names a process that runs (this one), but the lock that run
    held is free. The domain is leaked, and the sweep removes it."""
    lock = tmp_path / "owner-dead.lock"
    lock.write_text("4242\n")  # nobody holds it
    conn = open_connection("qemu:///system")
    name = "harness-reusedpid-1"
    xml = f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory>
      <metadata><harness:vm xmlns:harness='{METADATA_NS}'><harness:run>dead</harness:run>
        <harness:test>t</harness:test><harness:artifacts>{tmp_path}</harness:artifacts>
        <harness:pid>{os.getpid()}</harness:pid><harness:lock>{lock}</harness:lock>
        <harness:host>{socket.gethostname()}</harness:host></harness:vm></metadata>
      <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{reference_guest.kernel}</kernel>
      <initrd>{reference_guest.initrd}</initrd><cmdline>console=ttyS0 harness.hang=1</cmdline></os>
      <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
      <devices><serial type='pty'/><memballoon model='none'/></devices></domain>"""
    dom = conn.createXML(xml, 0)
    try:
        result = sweep("qemu:///system", "harness")
        assert name in result.destroyed and name not in result.in_use
        assert name not in [d.name() for d in conn.listAllDomains()]
    finally:
        if _running(conn, name):
            dom.destroy()
        conn.close()


def test_a_held_lock_keeps_the_domain_whatever_the_pid(tmp_path: Path) -> None:
    """The other way round: a live owner holds its lock; a dead pid in the metadata does not make
    its domain leaked."""
    lock = process_lock()
    assert lock_held(lock) is True
    owned = OwnedDomain("harness-x", "run", tmp_path, owner_pid=2**22 + 1, owner_host=socket.gethostname(),
                        owner_lock=lock)
    assert owned.owner_alive()
    free = tmp_path / "owner-free.lock"
    free.write_text("")
    assert not OwnedDomain("harness-y", "run", tmp_path, owner_pid=os.getpid(),
                           owner_host=socket.gethostname(), owner_lock=free).owner_alive()
