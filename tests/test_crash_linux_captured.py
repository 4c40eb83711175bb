"""The Linux crash parser on real console logs: every report kind our own guest can be made to print.

`fixtures/logs/linux/captured-<mode>.log` are serial logs of the reference guest booted by
`harness reproduce` with tests/crashtest/crashtest.ko as the profile's driver, loaded with
`mode=<mode>` (`python3 -m tests.crashtest.capture`; fixtures/logs/linux/README.md says how and
when).  The guest boots with `panic=1 oops=panic`, so each fatal mode crashed two boots in a row
(a boot loop) and its log holds the same report twice; `warn`, `refcount` and `atomic` boot once
and stay up.  Three more logs (`<mode>-nopanic`) are the stall and hang modes with `panic=0`:
the report, then the machine runs on.

The fast tests triage each saved log (`harness triage LOG --json`, and `triage_files` with the
profile's driver for the verdict) and check every report: kind, title, the module's own function,
fatal or not, not corrupted.  The one VM test (~25-60 s) builds the module and boots a fatal mode
and `warn` live through `harness reproduce`.  Debian's kernel has no UBSAN, KASAN, kmemleak or
lockdep, so those kinds cannot be captured here (tests/crashtest/README.md).  Strict xfails mark
what the logs show the parser still gets wrong.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.crash.linux.parser import HUNG_NO_STACK, parse_reports
from harness.driver import DriverSpec
from harness.testing import skip_or_fail
from harness.triage import triage_files

from .conftest import REPO, require_tool, run_harness
from .crashtest.build import CONTENT_DIR, MODES, READY, VARIANTS, CrashtestBuildError, build_module, profile_yaml

LOGS = REPO / "fixtures" / "logs" / "linux"
DRIVER = DriverSpec(content_dir=CONTENT_DIR, ready=READY, module="crashtest.ko")

# mode -> the reports of each boot, in order: (kind, title, function, fatal).  Stalls and hangs
# are named the way frames.py says: a stalled CPU (soft lockup, RCU stall, stack overflow) by the
# function just above the first dispatcher, here do_one_initcall (the module's init); a hung task
# by the first frame that is not a way of waiting (msleep is one).  A panic's title names its
# reason, not a function; its `function` is the first frame not skipped: crashtest_panic is, as
# `panic` is searched in every frame name (syzkaller's list does the same), so it is the caller,
# crashtest_init.  `atomic` has a second report, the kernel's own: __schedule_bug reset the
# preemption count, so the module's preempt_enable() unbalanced it (`WARNING in do_one_initcall`).
Report = tuple[str, str, str, bool]
EXPECTED: dict[str, list[Report]] = {
    "warn": [("warning", "WARNING in crashtest_warn", "crashtest_warn", False)],
    "bug": [("bug", "kernel BUG in crashtest_bug", "crashtest_bug", True)],
    "null": [("null-deref", "BUG: unable to handle kernel NULL pointer dereference in crashtest_null_deref",
              "crashtest_null_deref", True)],
    "gpf": [("general-protection", "general protection fault in crashtest_gpf", "crashtest_gpf", True)],
    "divide": [("divide-error", "divide error in crashtest_divide", "crashtest_divide", True)],
    "softlockup": [("soft-lockup", "BUG: soft lockup in crashtest_init", "crashtest_init", True)],
    "rcu": [("rcu-stall", "INFO: rcu detected stall in crashtest_init", "crashtest_init", True)],
    "hung": [("hung-task", "INFO: task hung in crashtest_hang", "crashtest_hang", True)],
    "panic": [("panic", "kernel panic: crashtest: panic requested by mode=panic", "crashtest_init", True)],
    # fatal here though the kernel runs on: see test_scheduling_while_atomic_is_a_finding below.
    "atomic": [("bug", "BUG: scheduling while atomic in crashtest_sleep_atomic", "crashtest_sleep_atomic", True),
               ("warning", "WARNING in do_one_initcall", "do_one_initcall", False)],
    "list": [("bug", "BUG: corrupted list in crashtest_list_double_add", "crashtest_list_double_add", True)],
    "stackprot": [("panic", "kernel panic: stack is corrupted in crashtest_smash", "crashtest_smash", True)],
    "overflow": [("stack-overflow", "BUG: stack guard page was hit in crashtest_init", "crashtest_init", True)],
    "refcount": [("warning", "WARNING: refcount bug in crashtest_get_zero_count", "crashtest_get_zero_count",
                  False)],
}
# The kernel's words that open each mode's first report, to check first_line against.
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
    "atomic": r"BUG: scheduling while atomic: insmod/\d+/0x[0-9a-f]+",
    "list": r"list_add double add: new=|kernel BUG at lib/list_debug\.c:\d+!",
    "stackprot": r"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: crashtest_smash\+",
    "overflow": r"BUG: TASK stack guard page was hit at",
    "refcount": r"WARNING: CPU: \d+ PID: \d+ at lib/refcount\.c:\d+ refcount_warn_saturate\+",
}
FATAL_BOOTS = 2  # the boots of a boot loop before harness reproduce stops it


def is_fatal_mode(mode: str) -> bool:
    return any(fatal for _kind, _title, _function, fatal in EXPECTED[mode])


def boots_of(mode: str) -> int:
    return FATAL_BOOTS if is_fatal_mode(mode) and mode != "atomic" else 1


def log_of(mode: str) -> Path:
    return LOGS / f"captured-{mode}.log"


def log_lines(path: Path) -> list[str]:
    """The log's lines as the parser numbers them: bytes split at \\n only (see the README)."""
    return path.read_bytes().decode("utf-8", "replace").split("\n")


def test_every_mode_has_an_expectation_and_a_captured_log() -> None:
    assert set(EXPECTED) == set(MODES) == set(HEADS)
    for name in [*MODES, *VARIANTS]:
        assert log_of(name).is_file(), f"{log_of(name)}: capture it with python3 -m tests.crashtest.capture {name}"


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_the_log_is_a_real_boot_of_crashtest_in_that_mode(mode: str) -> None:
    text = log_of(mode).read_bytes().decode("utf-8", "replace")
    boots = boots_of(mode)
    assert len(re.findall(r"Linux version 6\.\d+\.\d+-\d+-amd64 ", text)) == boots
    assert text.count(f"crashtest: provoking {mode}\r\n") == boots
    assert ("crashtest: done" in text) == (boots == 1)


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_triage_json_lists_each_report_with_the_modules_function(mode: str) -> None:
    proc = run_harness("triage", log_of(mode), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    lines = log_lines(log_of(mode))
    reports = out["reports"]
    expected = EXPECTED[mode] * boots_of(mode)
    assert [(r["kind"], r["title"], r["function"], r["fatal"]) for r in reports] == expected, reports
    for report in reports:
        assert report["module"] == ("crashtest" if report["function"].startswith("crashtest_") else None), report
        assert report["corrupted"] is False and report["corrupted_reason"] is None, report
    # The report starts at its head, or at the `cut here` line (and the message) just before it.
    first = reports[0]["first_line"]
    assert any(re.search(HEADS[mode], line) for line in lines[first - 1:first + 2]), lines[first - 1:first + 2]
    fatal = [r for r in reports if r["fatal"]]
    if fatal:
        assert (out["crash"]["title"], out["crash"]["first_line"]) == (fatal[0]["title"], fatal[0]["first_line"])
    else:
        assert out["crash"] is None and out["crashes"] == []


@pytest.mark.parametrize("mode", ["warn", "refcount"])
def test_a_warning_with_the_profiles_driver_is_healthy_with_the_warning_as_a_finding(mode: str) -> None:
    verdict = triage_files(log_of(mode), driver=DRIVER).verdict
    assert verdict.verdict == "healthy", verdict.one_line()
    assert verdict.crash is None and verdict.crashes == []
    assert [(f.kind, f.title, f.function, f.fatal) for f in verdict.findings] == EXPECTED[mode]


@pytest.mark.parametrize("mode", sorted(m for m in EXPECTED if boots_of(m) == FATAL_BOOTS))
def test_a_fatal_mode_with_the_profiles_driver_is_a_boot_loop_in_its_function(mode: str) -> None:
    verdict = triage_files(log_of(mode), driver=DRIVER).verdict
    [(_kind, title, function, _fatal)] = EXPECTED[mode]
    assert verdict.verdict == "boot-loop" and verdict.crashing_boots == FATAL_BOOTS, verdict.one_line()
    assert verdict.crash is not None and verdict.crash.title == title
    assert [c.function for c in verdict.crashes] == [function] * FATAL_BOOTS
    assert verdict.findings == []


@pytest.mark.xfail(strict=True, reason="parser: every BUG: report is fatal (kinds_locking.py: 'The BUG: ones were "
                                       "always crashes here and stay so'), but __schedule_bug only prints: the "
                                       "machine completed its boot (the live verdict is `crashed` at once, "
                                       "test_monitor.py); whether it should be a finding is undecided")
def test_scheduling_while_atomic_is_a_finding() -> None:
    verdict = triage_files(log_of("atomic"), driver=DRIVER).verdict
    assert verdict.verdict == "healthy", verdict.one_line()
    assert [f.title for f in verdict.findings] == [title for _k, title, _f, _fatal in EXPECTED["atomic"]]


# ------------------------------------------- without the panic sysctls (panic=0)
# The guest runs on after the report: `crashtest: done` and the boot-complete marker follow.


def reports_of(name: str) -> list[dict]:
    proc = run_harness("triage", log_of(name), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["reports"]


def test_a_soft_lockup_the_machine_survives_is_one_whole_report_per_watchdog_bark() -> None:
    lines = log_lines(log_of("softlockup-nopanic"))
    barks = [n for n, line in enumerate(lines, 1) if re.search(HEADS["softlockup"], line)]
    reports = reports_of("softlockup-nopanic")
    assert len(barks) >= 2 and [r["first_line"] for r in reports] == barks
    for report in reports:
        assert (report["kind"], report["title"], report["function"]) == EXPECTED["softlockup"][0][:3]
        assert not report["corrupted"], report
    assert any("crashtest: done" in line for line in lines[reports[-1]["last_line"]:])


def test_stackless_hung_tasks_are_one_report_each() -> None:
    """At the guest's loglevel=6 and without hung_task_panic (which makes the console verbose),
    the kernel prints only a hung task's three KERN_ERR lines: its `task:` line and stack are
    KERN_INFO.  Each `INFO: task ... blocked` head is a report of its own, with no function."""
    lines = log_lines(log_of("hung-nopanic"))
    heads = [n for n, line in enumerate(lines, 1) if re.search(HEADS["hung"], line)]
    assert not any("Call Trace:" in line for line in lines)
    reports = reports_of("hung-nopanic")
    assert len(heads) >= 2 and [r["first_line"] for r in reports] == heads
    for report in reports:
        assert (report["kind"], report["title"], report["function"]) == ("hung-task", "INFO: task hung", None)
        assert report["corrupted"]
    for report, following in zip(reports, heads[1:]):
        assert (report["last_line"], report["corrupted_reason"]) == (following - 1, HUNG_NO_STACK)


# Written, arm64 style: a stack (`Call trace:`, no `</TASK>`) for each of two hung tasks.
TWO_HUNG_TASKS = """\
[  246.101] INFO: task kworker/0:1:12 blocked for more than 122 seconds.
[  246.102]       Not tainted 5.10.0 #1
[  246.103] "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
[  246.104] task:kworker/0:1     state:D stack:0     pid:12    ppid:2      flags:0x00000008
[  246.105] Call trace:
[  246.106]  __switch_to+0x104/0x160
[  246.107]  __schedule+0x2a4/0x7b0
[  246.108]  schedule+0x50/0x100
[  246.109]  vendor_read_status+0x7c/0x100 [vendor]
[  246.110]  process_one_work+0x1d0/0x4a0
[  246.111] INFO: task insmod:301 blocked for more than 122 seconds.
[  246.112]       Not tainted 5.10.0 #1
[  246.113] "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
[  246.114] task:insmod          state:D stack:0     pid:301   ppid:1      flags:0x00000000
[  246.115] Call trace:
[  246.116]  __switch_to+0x104/0x160
[  246.117]  __schedule+0x2a4/0x7b0
[  246.118]  schedule+0x50/0x100
[  246.119]  vendor_init+0x40/0x1000 [vendor]
[  246.120]  do_one_initcall+0x54/0x1c0
[  246.121] Kernel panic - not syncing: hung_task: blocked tasks
"""


def test_the_next_hung_task_ends_the_report_before_it_whole() -> None:
    first, second = parse_reports(TWO_HUNG_TASKS)
    assert (first.title, first.first_line, first.last_line, first.corrupted) == (
        "INFO: task hung in vendor_read_status", 1, 10, False)
    assert (second.title, second.first_line, second.panic, second.corrupted) == (
        "INFO: task hung in vendor_init", 11, True, False)


def test_a_stackless_rcu_stall_is_found_without_a_function() -> None:
    """The task-stall form (`detected stalls on CPUs/tasks`, a preempted reader) prints no stack
    without panic_on_rcu_stall."""
    [report] = reports_of("rcu-nopanic")
    assert (report["kind"], report["title"], report["function"]) == ("rcu-stall", "INFO: rcu detected stall", None)
    assert re.search(HEADS["rcu"], log_lines(log_of("rcu-nopanic"))[report["first_line"] - 1])


@pytest.mark.xfail(strict=True, reason="parser: a report that never shows its stack ends only at the end of "
                                       "the log or the next boot; it takes in `crashtest: done` and the boot's "
                                       "later lines (corrupted as truncated)")
@pytest.mark.parametrize("name", ["hung-nopanic", "rcu-nopanic"])
def test_a_stackless_report_does_not_take_in_the_lines_after_it(name: str) -> None:
    lines = log_lines(log_of(name))
    done = next(n for n, line in enumerate(lines, 1) if "crashtest: done" in line)
    assert all(report["last_line"] < done for report in reports_of(name))


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
    assert null["crash"]["title"] == EXPECTED["null"][0][1] and null["crash"]["function"] == "crashtest_null_deref"
    assert null["crash"]["module"] == "crashtest" and not null["crash"]["corrupted"]

    warn = reproduce("warn")
    assert warn["verdict"] == "healthy" and warn["crash"] is None, warn
    verdict = json.loads((Path(warn["artifacts"]) / "verdict.json").read_text())
    assert [(f["title"], f["function"]) for f in verdict["findings"]] == [("WARNING in crashtest_warn",
                                                                           "crashtest_warn")]
    proc = run_harness("triage", warn["serial_log"], "--json")
    assert proc.returncode == 0, proc.stderr
    [report] = json.loads(proc.stdout)["reports"]
    assert (report["title"], report["function"], report["fatal"], report["corrupted"]) == (
        "WARNING in crashtest_warn", "crashtest_warn", False, False)
