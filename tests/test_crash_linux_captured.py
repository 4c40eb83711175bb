"""The Linux crash parser on real console logs: every report kind our own guest can be made to print.

`fixtures/logs/linux/captured-<mode>.log` are serial logs of the reference guest booted by
`harness reproduce` with tests/crashtest/crashtest.ko as the profile's driver, loaded with
`mode=<mode>` (`python3 -m tests.crashtest.capture`; fixtures/logs/linux/README.md says how and
when).  The guest boots with `panic=1 oops=panic`, so each fatal mode crashed two boots in a row
(a boot loop) and each log holds two reports; `warn` boots once and stays up.

The fast tests triage each saved log (`harness triage LOG --json`, and `triage_files` with the
profile's driver for the verdict) and check every report: kind, title, the module's own function,
fatal or not, not corrupted.  The one VM test builds the module and boots a fatal mode and `warn`
live through `harness reproduce`.  Debian's kernel has no UBSAN, KASAN, kmemleak or lockdep,
so those kinds cannot be captured here (tests/crashtest/README.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.driver import DriverSpec
from harness.testing import skip_or_fail
from harness.triage import triage_files

from .conftest import REPO, require_tool, run_harness
from .crashtest.build import CONTENT_DIR, MODES, READY, CrashtestBuildError, build_module, profile_yaml

LOGS = REPO / "fixtures" / "logs" / "linux"
DRIVER = DriverSpec(content_dir=CONTENT_DIR, ready=READY, module="crashtest.ko")

# mode -> (kind, title, function, fatal).  Stalls and hangs are named the way frames.py says:
# a stalled CPU (soft lockup, RCU stall) by the function just above the first dispatcher, here
# do_one_initcall (the module's init); a hung task by the first frame that is not a way of
# waiting (msleep is one).  A panic's title names its reason, not a function; its `function` is
# the first frame not skipped: crashtest_panic is, as `panic` is searched in every frame name
# (syzkaller's list does the same), so it is the caller, crashtest_init.
EXPECTED: dict[str, tuple[str, str, str, bool]] = {
    "warn": ("warning", "WARNING in crashtest_warn", "crashtest_warn", False),
    "bug": ("bug", "kernel BUG in crashtest_bug", "crashtest_bug", True),
    "null": ("null-deref", "BUG: unable to handle kernel NULL pointer dereference in crashtest_null_deref",
             "crashtest_null_deref", True),
    "gpf": ("general-protection", "general protection fault in crashtest_gpf", "crashtest_gpf", True),
    "divide": ("divide-error", "divide error in crashtest_divide", "crashtest_divide", True),
    "softlockup": ("soft-lockup", "BUG: soft lockup in crashtest_init", "crashtest_init", True),
    "rcu": ("rcu-stall", "INFO: rcu detected stall in crashtest_init", "crashtest_init", True),
    "hung": ("hung-task", "INFO: task hung in crashtest_hang", "crashtest_hang", True),
    "panic": ("panic", "kernel panic: crashtest: panic requested by mode=panic", "crashtest_init", True),
}
# The line each mode's report opens with (the kernel's words), to check first_line against.
HEADS = {
    "warn": r"WARNING: CPU: \d+ PID: \d+ at \S+crashtest\.c:\d+ crashtest_warn\+",
    "bug": r"kernel BUG at \S+crashtest\.c:\d+!",
    "null": r"BUG: kernel NULL pointer dereference, address: 0000000000000020",
    "gpf": r"general protection fault, probably for non-canonical address 0xdead000000000120",
    "divide": r"divide error: 0000",
    "softlockup": r"watchdog: BUG: soft lockup - CPU#0 stuck for \d+s! \[insmod:\d+\]",
    "rcu": r"rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "hung": r"INFO: task insmod:\d+ blocked for more than \d+ seconds\.",
    "panic": r"Kernel panic - not syncing: crashtest: panic requested by mode=panic",
}
FATAL_BOOTS = 2  # the boots of a boot loop before harness reproduce stops it


def log_of(mode: str) -> Path:
    return LOGS / f"captured-{mode}.log"


def log_lines(path: Path) -> list[str]:
    """The log's lines as the parser numbers them: bytes split at \\n only (see the README)."""
    return path.read_bytes().decode("utf-8", "replace").split("\n")


def test_every_mode_has_an_expectation_and_a_captured_log() -> None:
    assert set(EXPECTED) == set(MODES) == set(HEADS)
    for mode, (kind, _title, function, fatal) in EXPECTED.items():
        assert log_of(mode).is_file(), f"{log_of(mode)}: capture it with python3 -m tests.crashtest.capture {mode}"
        assert MODES[mode][0] == kind and MODES[mode][2] == fatal, mode


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_the_log_is_a_real_boot_of_crashtest_in_that_mode(mode: str) -> None:
    text = log_of(mode).read_bytes().decode("utf-8", "replace")
    boots = 1 if mode == "warn" else FATAL_BOOTS
    assert len(re.findall(r"Linux version 6\.\d+\.\d+-\d+-amd64 ", text)) == boots
    assert text.count(f"crashtest: provoking {mode}\r\n") == boots
    assert ("crashtest: done" in text) == (mode == "warn")


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_triage_json_lists_each_report_with_the_modules_function(mode: str) -> None:
    kind, title, function, fatal = EXPECTED[mode]
    proc = run_harness("triage", log_of(mode), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    lines = log_lines(log_of(mode))
    reports = out["reports"]
    assert len(reports) == (FATAL_BOOTS if fatal else 1), reports
    for report in reports:
        assert (report["kind"], report["title"], report["function"], report["fatal"]) == (kind, title, function,
                                                                                            fatal), report
        assert report["module"] == "crashtest", report
        assert report["corrupted"] is False and report["corrupted_reason"] is None, report
        # The report starts at its head, or at the `cut here` line the kernel prints just before it.
        first = lines[report["first_line"] - 1]
        head = lines[report["first_line"]] if "[ cut here ]" in first else first
        assert re.search(HEADS[mode], head), (report, first, head)
    if fatal:
        assert out["crash"]["title"] == title and out["crash"]["function"] == function
        assert out["crash"]["first_line"] == reports[0]["first_line"]
        assert out["verdict"] == "boot-loop" and out["crashing_boots"] == FATAL_BOOTS
    else:
        assert out["crash"] is None and out["crashes"] == []


def test_warn_with_the_profiles_driver_is_healthy_with_the_warning_as_a_finding() -> None:
    triage = triage_files(log_of("warn"), driver=DRIVER)
    verdict = triage.verdict
    assert verdict.verdict == "healthy", verdict.one_line()
    assert verdict.crash is None and verdict.crashes == []
    [finding] = verdict.findings
    assert (finding.kind, finding.title, finding.function, finding.fatal) == EXPECTED["warn"][:2] + (
        "crashtest_warn", False)


@pytest.mark.parametrize("mode", sorted(m for m, e in EXPECTED.items() if e[3]))
def test_a_fatal_mode_with_the_profiles_driver_is_a_boot_loop_in_its_function(mode: str) -> None:
    triage = triage_files(log_of(mode), driver=DRIVER)
    verdict = triage.verdict
    assert verdict.verdict == "boot-loop" and verdict.crashing_boots == FATAL_BOOTS, verdict.one_line()
    assert verdict.crash is not None and verdict.crash.title == EXPECTED[mode][1]
    assert [c.function for c in verdict.crashes] == [EXPECTED[mode][2]] * FATAL_BOOTS
    assert verdict.findings == []


# ------------------------------------------------------------------ live


@pytest.mark.vm
@pytest.mark.family("linux")
def test_live_a_fatal_mode_and_warn_through_harness_reproduce(tmp_path: Path, reference_guest: object) -> None:
    """~40 s under TCG: the build, a two-boot loop (null), one healthy boot (warn)."""
    require_tool("make", "apt-get install build-essential (or make setup)")
    require_tool("gcc", "apt-get install build-essential (or make setup)")
    try:
        module = build_module(tmp_path / "build")
    except CrashtestBuildError as exc:
        skip_or_fail(f"cannot build crashtest.ko: {exc}")
    content = tmp_path / "10-any.conf"
    content.write_text("crashtest ignores its content\n")

    def reproduce(mode: str) -> dict:
        config = tmp_path / f"{mode}.yaml"
        config.write_text(profile_yaml(module, mode))
        proc = run_harness("reproduce", content, "--config", config, "--profile", "crashtest", "--json",
                           "--artifacts", tmp_path / "artifacts", timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)

    null = reproduce("null")
    assert null["verdict"] == "boot-loop", null
    assert null["crash"]["title"] == EXPECTED["null"][1] and null["crash"]["function"] == "crashtest_null_deref"
    assert null["crash"]["module"] == "crashtest" and not null["crash"]["corrupted"]

    warn = reproduce("warn")
    assert warn["verdict"] == "healthy" and warn["crash"] is None, warn
    proc = run_harness("triage", warn["serial_log"], "--json")
    assert proc.returncode == 0, proc.stderr
    [report] = json.loads(proc.stdout)["reports"]
    assert (report["title"], report["function"], report["fatal"], report["corrupted"]) == (
        "WARNING in crashtest_warn", "crashtest_warn", False, False)
