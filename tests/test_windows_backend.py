"""The Windows backend's host-side pieces that need no VM: the domain log's Hyper-V panic
line joining the console's EMS record into one report, and the golden image checks."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.config import Profile
from harness.errors import ConfigError
from harness.families.windows import WindowsFamily
from harness.monitor.monitor import Monitor
from harness.vm import connection as connection_module
from harness.windows import backend as windows_backend
from harness.windows.golden import load_golden

# libvirt's domain log line for QEMU's GUEST_PANICKED with Hyper-V information
# (src/qemu/qemu_process.c qemuProcessGuestPanicInfo -> "panic hyper-v: arg1='0x%llx', ...").
HV_LINE = ("2026-11-23 06:00:00.000+0000: panic hyper-v: arg1='0x50', arg2='0xffff9c8e0000008a', arg3='0x0', "
           "arg4='0xfffff8012345678a', arg5='0x2'")
EMS = ["Computer is booting, SAC started and initialized.", '<INSTANCE CLASSNAME="BLUESCREEN">',
       '<PROPERTY NAME="STOPCODE" TYPE="string"><VALUE>"0x50"</VALUE></PROPERTY>', "</INSTANCE>"]


def golden(tmp_path: Path, **manifest: object) -> Path:
    image = tmp_path / "windows-win11-vulnerable.qcow2"
    image.write_bytes(b"QFI\xfb" + bytes(60))
    os.chmod(image, 0o444)
    data = {"bytes": image.stat().st_size, "edition": "win11", "sensor": {"build": "vulnerable"}, **manifest}
    (tmp_path / f"{image.name}.golden.json").write_text(json.dumps(data))
    return image


def test_the_domain_logs_hyperv_panic_line_gives_the_report_its_four_parameters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection_module, "DOMAIN_LOG_DIR", tmp_path)
    log = tmp_path / "harness-r1-gw0-1.log"
    log.write_text("2026-11-23 05:59:58.000+0000: starting up libvirt version: 9.0.0\n")
    backend = windows_backend.WindowsBackend(load_golden(golden(tmp_path)))
    machine = SimpleNamespace(name="harness-r1-gw0-1", profile=Profile(uri="qemu:///system"))
    assert backend.crash_lines(machine) == []  # nothing about a panic yet
    with open(log, "a") as handle:
        handle.write(HV_LINE + "\n")
    [line] = backend.crash_lines(machine)
    assert backend.crash_lines(machine) == []  # each line is read once

    monitor = Monitor(WindowsFamily())
    for t, text in enumerate(EMS):
        monitor.observe_line(text, float(t))
    monitor.observe_line(line, 5.0)  # what Machine does at the CRASHED event
    monitor.observe_event("lifecycle:crashed:panicked", 5.0)
    verdict = monitor.decide(9.0, final=True)
    assert verdict is not None and verdict.crash is not None
    assert verdict.crash.title == "PAGE_FAULT_IN_NONPAGED_AREA (0x50)"
    assert verdict.crash.parameters == ["0xffff9c8e0000008a", "0x0000000000000000", "0xfffff8012345678a",
                                        "0x0000000000000002"]


def test_a_remote_hosts_domain_log_is_not_read_here(tmp_path: Path) -> None:
    backend = windows_backend.WindowsBackend(load_golden(golden(tmp_path)))
    machine = SimpleNamespace(name="x", profile=Profile(uri="qemu+ssh://root@kvm2/system"))
    assert backend.crash_lines(machine) == []


def test_a_golden_image_is_checked_against_the_profile_before_any_machine_starts(tmp_path: Path) -> None:
    image = golden(tmp_path)
    with pytest.raises(ConfigError, match=r"edition: the image is win11, the profile asks for win10"):
        load_golden(image, "win10")
    os.chmod(image, 0o644)
    with pytest.raises(ConfigError, match=r"must be read-only \(chmod 0444"):
        load_golden(image, "win11")
    os.chmod(image, 0o444)
    (tmp_path / f"{image.name}.golden.json").unlink()
    with pytest.raises(ConfigError, match=r"golden.json: manifest of the golden image not found; build it with"):
        load_golden(image, "win11")


def test_a_windows_profile_without_an_image_names_the_key_and_the_command(tmp_path: Path) -> None:
    from harness.config import load_profiles

    config = tmp_path / "harness.yaml"
    config.write_text("profiles:\n  win11:\n    family: windows\n")
    with pytest.raises(ConfigError, match=r"profiles.win11.image: family windows needs the golden image built by "
                                          r"`harness image build windows`"):
        load_profiles(config)
    config.write_text("profiles:\n  win11:\n    family: windows\n    image: images/w.qcow2\n    edition: win12\n")
    with pytest.raises(ConfigError, match=r"profiles.win11.edition: 'win12' is not one of win10, win11, server2022"):
        load_profiles(config)
    config.write_text("profiles:\n  win11:\n    family: windows\n    image: images/w.qcow2\n")
    assert dataclasses.asdict(load_profiles(config)["win11"])["image"] == str(tmp_path / "images" / "w.qcow2")


def test_reproduce_on_a_windows_profile_runs_the_images_sensor_build(tmp_path: Path) -> None:
    from harness.reproduce import _guest
    from harness.windows.golden import WindowsGolden

    profile = Profile(family="windows", edition="win11", image=str(golden(tmp_path)))
    guest, build = _guest(profile, None, lambda _msg: None)  # OVMF: make setup installs it
    assert isinstance(guest, WindowsGolden) and build == "vulnerable"
    with pytest.raises(ConfigError, match=r"the image has the vulnerable sensor, not hardened: build an image "
                                          r"with `harness image build windows --sensor hardened`"):
        _guest(profile, "hardened", lambda _msg: None)
