"""Host checks: `harness doctor`, and a dead libvirtd reported with its fix."""

from __future__ import annotations

import pytest

from harness.errors import InfraError
from harness.vm.connection import open_connection

from .conftest import run_harness


@pytest.mark.vm
def test_doctor_finds_this_host_ready(reference_guest: object) -> None:
    proc = run_harness("doctor")
    assert proc.returncode == 0, proc.stdout
    for name in ("qemu", "libvirt qemu:///system", "accelerator", "sensor module (vulnerable)", "reference guest"):
        assert f"[ok ] {name}:" in proc.stdout


def test_an_unreachable_libvirtd_names_the_fix() -> None:
    with pytest.raises(InfraError) as caught:
        open_connection("qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    assert "libvirt is not reachable at qemu+unix:///system?socket=/nonexistent/libvirt-sock" in str(caught.value)
    assert "tools/libvirtd.sh start" in str(caught.value)
