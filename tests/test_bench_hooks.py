"""The benchmarks time the harness by wrapping the functions it calls; when a refactor moves
one, the benchmark must fail here, in seconds, not at its next hour-long run. The same goes for
vm_verdict's raw baseline, which must boot the devices the domain template gives the guest, and
for the /proc readings its breakdown rests on."""

from __future__ import annotations

import importlib
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

from harness.vm.templates import render

from .conftest import REPO, require_tool
from .test_config_and_templates import DOMAIN_VALUES

sys.path.insert(0, str(REPO / "bench"))


def test_every_function_the_benchmarks_wrap_still_exists_and_is_put_back() -> None:
    common = importlib.import_module("_common")
    before = {(m.__name__, a): getattr(m, a) for m, a in (
        (common.backend_mod, "build_data_disk"), (common.backend_mod, "render"),
        (common.machine_mod, "ConsoleReader"), (common.machine_mod, "open_connection"))}
    with common.instrumented():
        assert common.backend_mod.build_data_disk is not before[(common.backend_mod.__name__, "build_data_disk")]
    after = {key: getattr(sys.modules[key[0]], key[1]) for key in before}
    assert after == before


def test_the_recovery_benchmark_wraps_what_recover_calls() -> None:
    recovery = importlib.import_module("recovery")
    backend = recovery.backend_mod
    original = (backend.build_recovery_medium, backend.read_content_dir)
    machine = SimpleNamespace(destroy=lambda: None, boot=lambda mode="normal": None,
                              wait_verdict=lambda: None, wait_recovery_env=lambda: None)
    with recovery.recover_timed(machine) as calls:  # type: ignore[arg-type]
        machine.destroy()
        assert (backend.build_recovery_medium, backend.read_content_dir) != original
    assert [name for name, _, _ in calls] == ["destroy"]
    assert (backend.build_recovery_medium, backend.read_content_dir) == original


# What raw_qemu_argv gives QEMU for each device element of the Linux domain template.
_BASELINE_FOR_DEVICE = {
    "disk": ("if=virtio,cache=unsafe",),
    "controller": ("usb=off",),  # <controller type='usb' model='none'/>
    "serial": ("-serial",),
    "console": ("-serial",),  # the same COM1
    "channel": ("name=org.qemu.guest_agent.0",),
    "panic": ("pvpanic",),
    "memballoon": ("-nodefaults",),  # model='none': no balloon device
}


def test_the_raw_baseline_boots_the_devices_the_template_gives_the_guest() -> None:
    """vm_verdict compares the harness with plain QEMU booting the same machine: a device added
    to the template and not to the baseline makes the ratio measure the device."""
    raw = importlib.import_module("_raw_qemu")
    dom = ET.fromstring(render("linux/domain.xml.j2", **{**DOMAIN_VALUES, "ssh_port": None}))
    guest = SimpleNamespace(kernel=Path("/k"), initrd=Path("/i"))
    argv = raw.raw_qemu_argv(guest, Path("/tmp/d.img"), "qemu", "console=ttyS0", no_reboot=True)
    line = " ".join(argv)
    devices = dom.find("devices")
    assert devices is not None
    for device in devices:
        assert device.tag in _BASELINE_FOR_DEVICE, (
            f"the template has a <{device.tag}> the raw baseline of bench/_raw_qemu.py does not boot")
        for word in _BASELINE_FOR_DEVICE[device.tag]:
            assert word in line, (device.tag, word)
    assert argv[argv.index("-m") + 1] == dom.findtext("memory")
    assert argv[argv.index("-smp") + 1] == dom.findtext("vcpu")
    assert argv[argv.index("-cpu") + 1] == dom.findtext("cpu/model")
    assert dom.find("os/type").get("machine") == "pc" and "pc,usb=off" in argv  # type: ignore[union-attr]
    assert "debug-threads=on" in line  # the vCPU thread is found by name


def test_qemu_start_is_timed_to_its_first_answer_and_the_process_is_gone() -> None:
    qemu = require_tool("qemu-system-x86_64", "install qemu-system-x86 (make setup)")
    proc_mod = importlib.import_module("_qemu_proc")
    before = set(os.listdir("/proc"))
    seconds = proc_mod.qemu_start_seconds([qemu, "-M", "pc", "-nodefaults", "-display", "none",
                                           "-serial", "stdio"], timeout=30)
    assert 0 < seconds < 30
    children = [p for p in set(os.listdir("/proc")) - before if p.isdigit()
                and Path(f"/proc/{p}/comm").exists() and "qemu" in Path(f"/proc/{p}/comm").read_text()]
    assert children == []
    assert proc_mod.cpu_cgroup(os.getpid()).startswith("/")
    assert proc_mod.vcpu_seconds(os.getpid()) is None  # no thread named "CPU n/..." here
