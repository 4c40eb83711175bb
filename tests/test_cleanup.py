"""No leaks: a run killed with SIGKILL mid-boot leaves a domain and a disk image behind;
`harness clean` finds them by prefix and metadata and removes them, and a domain that
is not ours survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import libvirt
import pytest

from harness.vm.connection import open_connection

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


def test_a_killed_run_is_cleaned_up_and_a_foreign_domain_survives(reference_guest: object,
                                                                   tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from harness.config import Profile
        from harness.guest.linux_ref import build_reference_guest
        from harness.vm.machine import Machine, MachineSpec
        m = Machine(MachineSpec(profile=Profile(), guest=build_reference_guest(progress=lambda _m: None),
                                artifacts=Path({str(tmp_path)!r}), run_id="killed-{os.getpid()}", test_id="t"))
        m.install_content({{"C-00000291-00000000-00000001.sys": b""}})
        m.boot()
        print(m.name, flush=True)
        time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    name = child.stdout.readline().strip()
    conn = open_connection("qemu:///system")
    foreign = foreign_domain(conn, reference_guest)
    try:
        os.kill(child.pid, signal.SIGKILL)  # mid-boot: no teardown runs
        child.wait(timeout=30)
        assert conn.lookupByName(name).isActive()
        assert (tmp_path / "data-disk.img").exists()

        proc = run_harness("clean", "--artifacts", tmp_path / "nothing-else")
        assert proc.returncode == 0, proc.stderr
        assert f"destroying {name}" in proc.stderr
        names = [d.name() for d in conn.listAllDomains()]
        assert name not in names
        assert FOREIGN in names and foreign.isActive()
        assert not (tmp_path / "data-disk.img").exists()
        assert (tmp_path / "serial.log").exists()  # artifacts are kept, only the disk goes
    finally:
        foreign.destroy()
        conn.close()
