"""Bring your own driver: another vendor's kernel module, named in a profile's `driver:` block,
through `harness reproduce`, recovery by both paths and the pytest plugin.

The module is tests/vendor_driver/acme_guard.ko: its own rule format (not channel files),
its own content directory (/var/lib/acme), its own words (`acme_guard: armed`, `acme_guard:
<file>: refused: <reason>`) and its own crash (a NULL dereference in acme_apply_rule). The
harness knows none of it but what the profile says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, run_harness
from .vendor_driver.build import build_module
from .vendor_driver.content import crashing_rules, good_rules, refused_rules

pytestmark = [pytest.mark.vm, pytest.mark.family("linux")]

PROFILE = """\
profiles:
  acme:
    driver:
      module: {module}
      params: "acme_dir=/var/lib/acme"
      content_dir: /var/lib/acme
      ready: 'acme_guard: armed'
      rejected: 'acme_guard: (?P<file>\\S+): refused: (?P<reason>.*)'
"""


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory, reference_guest: object) -> Path:
    """A config file whose profile `acme` names the freshly built module (a relative path:
    relative to the config file, as a vendor writes it)."""
    directory = tmp_path_factory.mktemp("acme")
    build_module(directory / "build")
    config = directory / "harness.yaml"
    config.write_text(PROFILE.format(module="build/acme_guard.ko"))
    return config


def reproduce(config: Path, content: Path, *args: str) -> dict:
    proc = run_harness("reproduce", content, "--config", config, "--profile", "acme", "--json",
                       "--artifacts", content.parent / "artifacts", *args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_good_rules_are_healthy_in_the_drivers_own_words(acme: Path, tmp_path: Path) -> None:
    content = tmp_path / "10-base.rules"
    content.write_bytes(good_rules())
    report = reproduce(acme, content)
    assert report["verdict"] == "healthy", report
    assert report["content_name"] == "10-base.rules"  # its own name, not a channel file's
    serial = Path(report["serial_log"]).read_text()
    assert "acme_guard: armed (3 rules from 1 files, 0 refused)" in serial
    assert "harness_sensor" not in serial  # the sample sensor never loaded


def test_a_refused_file_is_content_rejected_with_the_drivers_reason(acme: Path, tmp_path: Path) -> None:
    content = tmp_path / "20-update.rules"
    content.write_bytes(refused_rules("bad checksum"))
    report = reproduce(acme, content)
    assert report["verdict"] == "content-rejected", report
    verdict = json.loads((Path(report["artifacts"]) / "verdict.json").read_text())
    [rejected] = verdict["boot_log"][-1]["rejected"]
    assert rejected["file"] == "20-update.rules" and rejected["reason"].startswith("bad checksum")
    # The saved log says the same, judged with the profile's driver.
    proc = run_harness("triage", report["serial_log"], "--config", acme, "--profile", "acme", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "content-rejected"


def test_a_crashing_file_loops_in_the_drivers_own_function_and_both_paths_recover(
        acme: Path, tmp_path: Path) -> None:
    content = tmp_path / "30-bad.rules"
    content.write_bytes(crashing_rules())
    report = reproduce(acme, content, "--recover", "all")
    assert report["verdict"] == "boot-loop", report
    assert report["crash"]["function"] == "acme_apply_rule", report["crash"]
    assert report["crash"]["module"] == "acme_guard"
    for path in ("safe-mode", "recovery-env"):
        recovery = report["recovery"][path]
        assert recovery["result"] == "recovered", recovery
        assert recovery["removed"] == ["30-bad.rules"] and recovery["final_verdict"] == "healthy"
        assert recovery["boots"] == 2


def test_the_plugin_runs_a_vendors_test_file_with_its_driver_profile(acme: Path, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_vendor=f'''
import pytest

GOOD = {good_rules()!r}
BAD = {crashing_rules()!r}


def test_good_rules(vm):
    vm.install_content({{"10-base.rules": GOOD}})
    vm.boot()
    verdict = vm.wait_verdict()
    assert verdict.verdict == "healthy", verdict.one_line()


@pytest.mark.expect_recovery("safe-mode")
def test_bad_rules_loop_and_safe_mode_brings_it_back(vm):
    vm.install_content({{"10-base.rules": GOOD}})
    vm.install_content({{"30-bad.rules": BAD}}, bad_update=True)
    vm.boot()
    assert vm.wait_verdict().verdict == "boot-loop"
    assert vm.recover("safe-mode").removed == ["30-bad.rules"]
''')
    result = pytester.runpytest("-p", "no:cacheprovider", f"--harness-config={acme}", "--harness-profile=acme",
                                f"--harness-artifacts={pytester.path / 'artifacts'}")
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("key, value, words", [
    ("module", "build/missing.ko", "driver.module: "),
    ("ready", "'acme_guard: (armed'", "driver.ready: "),
    ("content_dir", "var/lib/acme", "is not absolute"),
    ("rejected", "'acme_guard: refused'", "name the groups"),
])
def test_a_broken_driver_block_is_one_line_naming_the_profile_key_and_fix(
        acme: Path, tmp_path: Path, key: str, value: str, words: str) -> None:
    text = acme.read_text().replace("build/acme_guard.ko", str(acme.parent / "build" / "acme_guard.ko"))
    lines = [f"      {key}: {value}" if line.startswith(f"      {key}:") else line for line in text.splitlines()]
    config = tmp_path / "broken.yaml"
    config.write_text("\n".join(lines) + "\n")
    content = tmp_path / "10-base.rules"
    content.write_bytes(good_rules())
    proc = run_harness("reproduce", content, "--config", config, "--profile", "acme")
    assert proc.returncode == 2, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("harness: error:")]
    assert f"{config}: profiles.acme.driver" in line and words in line, line


def test_a_module_built_for_another_kernel_is_refused_with_the_build_line(acme: Path, tmp_path: Path) -> None:
    from harness.guest.linux_ref import build_reference_guest

    kernel = build_reference_guest(progress=lambda _m: None).kernel_version
    other = kernel.replace(kernel.split("-")[1], str(int(kernel.split("-")[1]) + 1), 1)
    assert len(other) == len(kernel)
    module = tmp_path / "acme_guard.ko"
    module.write_bytes((acme.parent / "build" / "acme_guard.ko").read_bytes()
                       .replace(f"vermagic={kernel}".encode(), f"vermagic={other}".encode()))
    config = tmp_path / "other.yaml"
    config.write_text(PROFILE.format(module=module))
    content = tmp_path / "10-base.rules"
    content.write_bytes(good_rules())
    proc = run_harness("reproduce", content, "--config", config, "--profile", "acme")
    assert proc.returncode == 2, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("harness: error:")]
    assert f"profile acme: driver.module: {module} is built for kernel {other}" in line
    assert f"make -C /lib/modules/{kernel}/build M=$PWD modules" in line
    doctor = run_harness("doctor", "--config", config, "--profile", "acme")
    assert "driver module" in doctor.stdout and f"built for kernel {other}" in doctor.stdout


def test_reproduce_from_a_vendors_directory_keeps_artifacts_there(acme: Path, tmp_path: Path) -> None:
    """The artifacts of a run started elsewhere go to ./artifacts of that directory."""
    content = tmp_path / "10-base.rules"
    content.write_bytes(good_rules())
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "reproduce", str(content), "--config", str(acme),
                           "--profile", "acme", "--json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "HARNESS_ARTIFACTS": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Path(json.loads(proc.stdout)["artifacts"]).is_relative_to(tmp_path / "artifacts")
    assert not (REPO / "artifacts" / Path(json.loads(proc.stdout)["artifacts"]).parent.name).exists()
