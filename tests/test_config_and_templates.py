"""Profiles are validated on load, and domain XML renders strictly and is valid for libvirt."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.config import Profile, select_profile
from harness.errors import ConfigError
from harness.vm.templates import render

from .conftest import require_tool


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "harness.yaml"
    path.write_text(text)
    return path


def test_the_built_in_profile_needs_no_file() -> None:
    assert select_profile(None, None) == Profile()


def test_a_profile_names_only_what_it_changes(tmp_path: Path) -> None:
    path = write(tmp_path, "profiles:\n  slow:\n    sensor: hardened\n    timeouts: {boot: 300}\n")
    profile = select_profile(path, "slow")
    assert (profile.sensor, profile.timeouts.boot, profile.timeouts.hang) == ("hardened", 300.0, 45.0)


@pytest.mark.parametrize("text, words", [
    ("profiles:\n  p:\n    sensr: hardened\n", "profiles.p.sensr: unknown key; allowed:"),
    ("profiles:\n  p:\n    sensor: medium\n", "profiles.p.sensor: 'medium' is not one of vulnerable, hardened"),
    ("profiles:\n  p:\n    memory_mib: lots\n", "profiles.p.memory_mib: expected int, got 'lots'"),
    ("profiles:\n  p:\n    memory_mib: 64\n", "profiles.p.memory_mib: 64 is too small"),
    ("profiles:\n  p:\n    timeouts: {boot: -1}\n", "profiles.p.timeouts.boot: -1 is too small"),
    ("profiles:\n  p:\n    timeouts: {bot: 3}\n", "profiles.p.timeouts.bot: unknown key"),
    ("profiles: [a, b]\n", "profiles: expected a mapping"),
    ("profiles:\n  p: {sensor: [\n", "line 3, column 1: invalid YAML"),
    ("other: 1\n", "the top level must be a mapping with one key, profiles"),
])
def test_a_broken_config_names_the_file_and_the_key(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        select_profile(path, "p")
    assert str(caught.value).startswith(f"{path}: ")
    assert words in str(caught.value)


def test_an_unknown_profile_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no profile 'nope'; known: linux-ref"):
        select_profile(None, "nope")


DOMAIN_VALUES = dict(
    domain_type="qemu", name="harness-test-1", family="linux", run_id="r1", test_id="t::x", artifacts="/tmp/a",
    owner_pid=1, memory_mib=256, vcpus=1, kernel="/k", initrd="/i", cmdline="console=ttyS0 a=<b>",
    on_reboot="restart", on_crash="restart", pvpanic=True,
    disks=[{"path": "/tmp/d.img", "format": "raw", "target": "vda", "readonly": False}],
    serial_log="/tmp/a/serial.log", ssh_port=2222)


def test_a_template_variable_left_out_is_an_error_naming_it() -> None:
    values = dict(DOMAIN_VALUES)
    del values["serial_log"]
    with pytest.raises(ConfigError, match=r"linux/domain.xml.j2: 'serial_log' is undefined"):
        render("linux/domain.xml.j2", **values)


@pytest.mark.parametrize("ssh_port", [None, 2222])
def test_the_linux_domain_xml_is_valid_for_libvirt(tmp_path: Path, ssh_port: int | None) -> None:
    validator = require_tool("virt-xml-validate", "install libvirt-clients (make setup)")
    require_tool("xmllint", "install libxml2-utils (make setup)")
    xml = tmp_path / "domain.xml"
    xml.write_text(render("linux/domain.xml.j2", **{**DOMAIN_VALUES, "ssh_port": ssh_port}))
    proc = subprocess.run([validator, str(xml), "domain"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "a=&lt;b&gt;" in xml.read_text()
