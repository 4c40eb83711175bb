"""The Linux console parser reads real serial logs the way syzkaller's pkg/report would.

Every log under fixtures/logs/linux/ was captured from a real QEMU boot (see its
README.md).  The tests check the report each crash gives (title, kind, faulting
function and module, address, panic), that healthy boots give none, and that
the parser copes with what consoles do to text: CRLF, missing timestamps,
interleaved lines, truncation, a reboot in the middle of a report, and
megabytes of noise.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.crash import CrashReport, LinuxConsoleParser, is_crash_start, normalize_title, parse_reports
from harness.crash.linux import (CUT_BY_BOOT, CUT_BY_CRASH, MAX_UNREAD_WARNINGS, NO_STACK, TOO_BIG, TRUNCATED,
                                 classify)

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "logs" / "linux"


def read_log(name: str) -> str:
    """The log as the console sent it: bytes decoded, split later at \\n only."""
    return (LOGS / name).read_bytes().decode("utf-8", errors="replace")


def lines_of(text: str) -> list[str]:
    return text.split("\n")


def stream(text: str, parser: LinuxConsoleParser | None = None) -> LinuxConsoleParser:
    """Feed a log line by line, as the monitor does."""
    parser = parser or LinuxConsoleParser()
    for number, line in enumerate(lines_of(text), start=1):
        parser.feed_line(line, number)
    return parser


def line_number_of(text: str, needle: str, start: int = 1) -> int:
    for number, line in enumerate(lines_of(text), start=1):
        if number >= start and needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the log")


def only_report(text: str) -> CrashReport:
    reports = parse_reports(text)
    assert len(reports) == 1, [r.title for r in reports]
    return reports[0]


# --- each captured crash ------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    title: str
    kind: str
    function: str | None
    module: str | None
    address: str | None
    panic: bool


CRASHES: dict[str, Expected] = {
    "cf291-field21-vulnerable.log": Expected(
        "BUG: unable to handle page fault in chf_match_criterion", "page-fault",
        "chf_match_criterion", "harness_sensor", "ffffc9000004e000", True),
    "body-len-overflow-vulnerable.log": Expected(
        "BUG: unable to handle page fault in chf_crc32", "page-fault",
        "chf_crc32", "harness_sensor", "ffffc90000056000", True),
    "payload-len-overflow-vulnerable.log": Expected(
        "BUG: unable to handle page fault in chf_compile_pattern", "page-fault",
        "chf_compile_pattern", "harness_sensor", "ffffc90000056000", True),
    "crashtest-null-deref.log": Expected(
        "BUG: unable to handle kernel NULL pointer dereference in crashtest_read_field", "null-deref",
        "crashtest_read_field", "crashtest", "0000000000000050", True),
    "crashtest-null-deref-no-panic.log": Expected(
        "BUG: unable to handle kernel NULL pointer dereference in crashtest_read_field", "null-deref",
        "crashtest_read_field", "crashtest", "0000000000000050", False),
    "crashtest-gpf.log": Expected(
        "general protection fault in crashtest_read_field", "general-protection",
        "crashtest_read_field", "crashtest", "0xdead000000000150", True),
    "crashtest-bug.log": Expected(
        "kernel BUG in crashtest_init", "bug", "crashtest_init", "crashtest", None, True),
    "crashtest-panic.log": Expected(
        "kernel panic: crashtest: malformed content file C-ADDR-ADDR-ADDR.sys",
        "panic", "crashtest_init", "crashtest", None, True),
    "crashtest-panic-halt.log": Expected(
        "kernel panic: crashtest: malformed content file C-ADDR-ADDR-ADDR.sys",
        "panic", "crashtest_init", "crashtest", None, True),
    "crashtest-warn-panic.log": Expected(
        "WARNING in crashtest_init", "warning", "crashtest_init", "crashtest", None, True),
    "crashtest-soft-lockup.log": Expected(
        "BUG: soft lockup in crashtest_init", "soft-lockup", "crashtest_init", "crashtest", None, True),
    "crashtest-hung-task.log": Expected(
        "INFO: task hung in crashtest_init", "hung-task", "crashtest_init", "crashtest", None, True),
}
HEALTHY = ["good-vulnerable.log", "cf291-field21-hardened.log",
           "body-len-overflow-hardened.log", "payload-len-overflow-hardened.log"]
ALL_LOGS = sorted(p.name for p in LOGS.glob("*.log") if not p.name.startswith("captured-"))  # test_crash_linux_captured.py


def test_every_captured_log_is_covered_by_a_test() -> None:
    covered = set(CRASHES) | set(HEALTHY) | {"cf291-field21-bootloop.log", "crashtest-warn.log"}
    assert set(ALL_LOGS) == covered


@pytest.mark.parametrize("name", sorted(CRASHES))
def test_each_captured_crash_gives_one_report_with_the_expected_fields(name: str) -> None:
    expected = CRASHES[name]
    report = only_report(read_log(name))
    assert (report.title, report.kind, report.function, report.module, report.address, report.panic) == (
        expected.title, expected.kind, expected.function, expected.module, expected.address, expected.panic)
    assert report.family == "linux"
    assert report.fatal
    assert not report.corrupted, report.corrupted_reason


def test_the_channel_file_291_oops_and_its_panic_are_one_whole_report() -> None:
    text = read_log("cf291-field21-vulnerable.log")
    report = only_report(text)
    assert report.first_line == line_number_of(text, "BUG: unable to handle page fault")
    assert report.last_line == line_number_of(text, "Rebooting in 1 seconds")
    assert report.ip == "0010:chf_match_criterion+0xe/0x80"
    assert report.call_trace[:3] == ["chf_evaluate", "sensor_refresh", "sensor_init"]
    # The whole thing is there, timestamps and \r stripped.
    body = report.text.split("\n")
    assert body[0] == "BUG: unable to handle page fault for address: ffffc9000004e000"
    assert "Oops: 0000 [#1] PREEMPT SMP NOPTI" in body
    assert "---[ end trace 0000000000000000 ]---" in body
    assert "Kernel panic - not syncing: Fatal exception" in body
    assert body[-1] == "Rebooting in 1 seconds.."
    assert "\r" not in report.text and "[    2." not in report.text
    # Nothing from before the crash (the sensor's own lines) is in it.
    assert "loaded (" not in report.text


def test_the_three_vulnerable_crashes_name_three_different_functions() -> None:
    titles = {only_report(read_log(name)).title for name in
              ("cf291-field21-vulnerable.log", "body-len-overflow-vulnerable.log",
               "payload-len-overflow-vulnerable.log")}
    assert len(titles) == 3


def test_a_boot_loop_gives_one_report_per_boot_with_the_same_title() -> None:
    text = read_log("cf291-field21-bootloop.log")
    first, second = parse_reports(text)
    assert first.title == second.title == "BUG: unable to handle page fault in chf_match_criterion"
    assert first.panic and second.panic
    second_boot = line_number_of(text, "Linux version", start=first.last_line)
    assert first.last_line < second_boot < second.first_line
    assert not first.corrupted and not second.corrupted


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_and_hardened_boots_give_no_report(name: str) -> None:
    text = read_log(name)
    assert "HARNESS-SENSOR-LOADED" in text
    parser = stream(text)
    assert parser.flush() == []
    assert parser.warnings() == []
    assert not any(is_crash_start(line) for line in lines_of(text))


# --- warnings, panics and Oopses the kernel survives ---------------------------

def test_a_warning_the_kernel_survives_is_not_a_crash() -> None:
    text = read_log("crashtest-warn.log")
    assert parse_reports(text) == []
    parser = stream(text)
    assert parser.flush() == []
    (warning,) = parser.warnings()
    assert warning.title == "WARNING in crashtest_init"
    assert (warning.kind, warning.fatal, warning.panic) == ("warning", False, False)
    # The "cut here" line and the WARN message above the WARNING line belong to it.
    assert warning.text.split("\n")[:2] == ["------------[ cut here ]------------",
                                            "crashtest: suspicious content length 4096"]
    assert parse_reports(text, include_warnings=True) == [warning]


def test_a_warning_followed_by_a_panic_is_a_crash() -> None:
    report = only_report(read_log("crashtest-warn-panic.log"))
    assert report.panic and report.fatal
    assert "Kernel panic - not syncing: kernel: panic_on_warn set ..." in report.text


def test_an_oops_without_oops_panic_ends_after_the_register_dump() -> None:
    text = read_log("crashtest-null-deref-no-panic.log")
    report = only_report(text)
    assert not report.panic
    assert report.text.split("\n")[-1].startswith("CR2: ")
    assert "Killed" not in report.text and "HARNESS-BOOT-COMPLETE" not in report.text


def test_a_panic_without_an_oops_is_titled_by_its_reason_and_the_caller() -> None:
    report = only_report(read_log("crashtest-panic.log"))
    assert report.call_trace[:3] == ["dump_stack_lvl", "panic", "crashtest_init"]
    assert report.ip is None  # panic() prints no kernel register dump
    assert report.text.split("\n")[-1] == "Rebooting in 1 seconds.."


def test_a_panic_that_halts_ends_at_its_end_kernel_panic_line() -> None:
    report = only_report(read_log("crashtest-panic-halt.log"))
    assert report.text.split("\n")[-1].startswith("---[ end Kernel panic - not syncing: crashtest:")


def test_a_hung_task_names_the_waiter_not_the_scheduler() -> None:
    report = only_report(read_log("crashtest-hung-task.log"))
    assert report.call_trace[:5] == ["__schedule", "schedule", "schedule_timeout", "msleep",
                                     "crashtest_init"]
    assert report.function == "crashtest_init"


# --- streaming --------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_LOGS)
def test_feeding_line_by_line_gives_the_same_reports_as_parse_reports(name: str) -> None:
    text = read_log(name)
    streamed = stream(text).flush()
    assert [r.to_json() for r in streamed] == [r.to_json() for r in parse_reports(text)]


def test_a_streaming_caller_gets_each_boots_report_once_at_the_line_that_completes_it() -> None:
    text = read_log("cf291-field21-bootloop.log")
    parser = LinuxConsoleParser()
    handed_out: list[tuple[int, str]] = []
    for number, line in enumerate(lines_of(text), start=1):
        parser.feed_line(line, number)
        handed_out += [(number, report.title) for report in parser.reports()]
    assert parser.flush() == []
    rebooting = [n for n, line in enumerate(lines_of(text), start=1) if "Rebooting in" in line]
    assert handed_out == [(n, "BUG: unable to handle page fault in chf_match_criterion") for n in rebooting]


def test_a_report_is_complete_as_soon_as_the_guest_says_it_reboots() -> None:
    text = read_log("cf291-field21-vulnerable.log")
    lines = lines_of(text)
    rebooting = line_number_of(text, "Rebooting in")
    parser = LinuxConsoleParser()
    for number, line in enumerate(lines[:rebooting - 1], start=1):
        parser.feed_line(line, number)
    assert parser.in_report and parser.reports() == []
    parser.feed_line(lines[rebooting - 1], rebooting)
    assert not parser.in_report
    assert [r.title for r in parser.reports()] == [
        "BUG: unable to handle page fault in chf_match_criterion"]


@pytest.mark.parametrize("name", sorted(set(CRASHES) - {"crashtest-warn-panic.log"}))
def test_is_crash_start_fires_on_the_line_that_opens_the_report(name: str) -> None:
    text = read_log(name)
    report = only_report(text)
    lines = lines_of(text)
    starts = [n for n, line in enumerate(lines, start=1) if is_crash_start(line)]
    assert starts, "no crash start seen"
    assert report.first_line <= starts[0] <= report.first_line + 2  # after a "cut here" block
    assert LinuxConsoleParser().is_crash_start(lines[starts[0] - 1])


def test_a_warning_is_no_crash_start_but_the_panic_after_it_is() -> None:
    assert not any(is_crash_start(line) for line in lines_of(read_log("crashtest-warn.log")))
    text = read_log("crashtest-warn-panic.log")
    report = only_report(text)
    starts = [n for n, line in enumerate(lines_of(text), start=1) if is_crash_start(line)]
    assert starts[0] == line_number_of(text, "Kernel panic - not syncing")
    assert report.first_line < line_number_of(text, "WARNING: CPU: 0 PID: 88") < starts[0]


# Start-line formats the captured logs do not show, as the 6.1 kernel prints them.
@pytest.mark.parametrize("line, kind", [
    ("[   12.000001] BUG: unable to handle kernel paging request at ffffc90000056000", "page-fault"),
    ("[   12.000001] BUG: unable to handle kernel NULL pointer dereference at 0000000000000008", "null-deref"),
    ("[   12.000001] general protection fault: 0000 [#1] PREEMPT SMP NOPTI", "general-protection"),
    ("[   12.000001] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI", "invalid-opcode"),
    ("[   12.000001] Oops: 0002 [#1] PREEMPT SMP NOPTI", "oops"),
    ("[   12.000001] watchdog: Watchdog detected hard LOCKUP on cpu 1", "hard-lockup"),
    ("[   12.000001] rcu: INFO: rcu_preempt self-detected stall on CPU", "rcu-stall"),
    ("[   12.000001] BUG: scheduling while atomic: insmod/88/0x00000002", "bug"),
    ("INIT: content: C-00000291.sys[    2.211115] Kernel panic - not syncing: Fatal exception", "panic"),
])
def test_start_lines_of_other_report_kinds_are_recognised(line: str, kind: str) -> None:
    match = re.search(r"\] (.*)$", line)
    assert match and is_crash_start(line)
    assert classify(match.group(1))[0] == kind


@pytest.mark.parametrize("line", [
    "[    2.202625] HARNESS-SENSOR-LOADED build=vulnerable files=1 loaded=1 rejected=0",
    "[    2.527009] harness_sensor: C-00000291-00000000-00000032.sys: rejected: template declares 21 input fields",
    "[    1.001784] acpi PNP0A03:00: fail to add MMCONFIG information",
    "INIT: echo BUG: in the middle of a user-space line is not the kernel",
    "[    0.123456] Spectre V2 : WARNING: Unprivileged eBPF is enabled",
])
def test_ordinary_console_lines_are_not_crash_starts(line: str) -> None:
    assert not is_crash_start(line)


# --- what consoles do to text ------------------------------------------------

def test_crlf_and_lf_logs_give_the_same_reports() -> None:
    text = read_log("cf291-field21-vulnerable.log")
    assert "\r\n" in text  # the real serial console sends CRLF
    lf = text.replace("\r\n", "\n")
    assert [r.to_json() for r in parse_reports(lf)] == [r.to_json() for r in parse_reports(text)]


def test_a_log_without_timestamps_gives_the_same_report() -> None:
    text = read_log("payload-len-overflow-vulnerable.log")
    bare = re.sub(r"\[\s*\d+\.\d+\] ", "", text)
    assert [r.to_json() for r in parse_reports(bare)] == [r.to_json() for r in parse_reports(text)]


def test_lines_from_elsewhere_inside_a_report_do_not_split_it() -> None:
    lines = lines_of(read_log("cf291-field21-vulnerable.log").replace("\r\n", "\n"))
    noisy: list[str] = []
    for line in lines:
        if "Kernel panic - not syncing" in line:
            noisy += [f"INIT: user space still talking {i}" for i in range(5)]
        noisy.append(line)
        if "sensor_refresh" in line:
            noisy.append("[    2.204800] random: crng init done")
    report = only_report("\n".join(noisy))
    assert report.title == "BUG: unable to handle page fault in chf_match_criterion"
    assert report.panic and not report.corrupted


def test_a_panic_long_after_an_oops_is_a_report_of_its_own() -> None:
    lines = lines_of(read_log("cf291-field21-vulnerable.log").replace("\r\n", "\n"))
    panic_at = next(i for i, line in enumerate(lines) if "Kernel panic - not syncing" in line)
    gap = [f"INIT: user space line {i}" for i in range(LinuxConsoleParser().tail_window + 5)]
    oops, panic = parse_reports("\n".join(lines[:panic_at] + gap + lines[panic_at:]))
    assert (oops.title, oops.panic) == ("BUG: unable to handle page fault in chf_match_criterion", False)
    assert panic.title == "kernel panic: Fatal exception"


def test_a_log_cut_off_mid_call_trace_gives_a_corrupted_report_with_the_right_title() -> None:
    text = read_log("cf291-field21-vulnerable.log")
    cut = line_number_of(text, "sensor_refresh+")
    report = only_report("\n".join(lines_of(text)[:cut]))
    assert report.title == "BUG: unable to handle page fault in chf_match_criterion"
    assert (report.corrupted, report.corrupted_reason) == (True, TRUNCATED)
    assert report.last_line == cut
    assert not report.panic


def test_a_log_cut_off_before_the_rip_line_cannot_name_the_function() -> None:
    text = read_log("cf291-field21-vulnerable.log")
    cut = line_number_of(text, "Oops: ")
    report = only_report("\n".join(lines_of(text)[:cut]))
    assert report.title == "BUG: unable to handle page fault"
    assert report.function is None and report.corrupted
    assert report.corrupted_reason == TRUNCATED
    complete_but_nameless = only_report("\n".join(lines_of(text)[:cut]) + "\nRebooting in 1 seconds..")
    assert complete_but_nameless.corrupted_reason == NO_STACK  # an Oops without its RIP line and stack


def test_a_reboot_in_the_middle_of_a_report_ends_it_as_corrupted() -> None:
    crash = read_log("body-len-overflow-vulnerable.log")
    cut = line_number_of(crash, "Call Trace:")
    text = "\n".join(lines_of(crash)[:cut]) + "\n" + read_log("good-vulnerable.log")
    report = only_report(text)
    assert report.title == "BUG: unable to handle page fault in chf_crc32"
    assert report.corrupted_reason == CUT_BY_BOOT
    assert report.last_line == cut


def test_a_reboot_right_after_the_panic_line_is_a_complete_report() -> None:
    crash = read_log("crashtest-gpf.log")
    cut = line_number_of(crash, "Kernel panic - not syncing")
    text = "\n".join(lines_of(crash)[:cut]) + "\n" + read_log("good-vulnerable.log")
    report = only_report(text)
    assert report.panic and not report.corrupted


def test_two_different_crashing_boots_in_one_log_give_two_reports() -> None:
    text = read_log("payload-len-overflow-vulnerable.log") + read_log("crashtest-null-deref.log")
    assert [r.title for r in parse_reports(text)] == [
        "BUG: unable to handle page fault in chf_compile_pattern",
        "BUG: unable to handle kernel NULL pointer dereference in crashtest_read_field"]


def test_a_megabyte_of_noise_gives_no_report(record_property: pytest.RecordProperty) -> None:
    healthy = read_log("good-vulnerable.log")
    noise = (healthy * (1_048_576 // len(healthy) + 1))[:1_048_576]
    start = time.perf_counter()
    reports = parse_reports(noise)
    elapsed = time.perf_counter() - start
    record_property("parse_1MiB_noise_seconds", round(elapsed, 4))  # measured, not asserted
    print(f"parse_reports on 1 MiB of console noise: {elapsed * 1000:.1f} ms")
    assert reports == []


def test_a_crash_at_the_end_of_a_megabyte_of_noise_is_found() -> None:
    healthy = read_log("good-vulnerable.log")
    text = healthy * 500 + read_log("cf291-field21-vulnerable.log")
    (report,) = parse_reports(text)
    assert report.title == "BUG: unable to handle page fault in chf_match_criterion"


# --- titles and JSON -----------------------------------------------------------

@pytest.mark.parametrize("raw, title", [
    ("general protection fault in ip6_fragment+0x1052/0x2d80", "general protection fault in ip6_fragment"),
    ("BUG: soft lockup - CPU#3 stuck for 22s! [insmod:88]", "BUG: soft lockup - CPU stuck for 22s! [insmod:NUM]"),
    ("kernel BUG at drivers/foo/bar.c:1234!", "kernel BUG at drivers/foo/bar.c:LINE!"),
    ("Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b",
     "Kernel panic - not syncing: Attempted to kill init! exitcode=ADDR"),
    ("BUG: scheduling while atomic: insmod/88/0x00000002", "BUG: scheduling while atomic: insmod/NUM/ADDR"),
    ("WARNING in cfg80211_foo", "WARNING in cfg80211_foo"),
    ("x" * 200, "x" * 120),
])
def test_titles_are_normalised_like_syzkaller(raw: str, title: str) -> None:
    assert normalize_title(raw) == title


def test_a_report_serialises_to_json_with_room_for_windows_fields() -> None:
    report = only_report(read_log("crashtest-gpf.log"))
    data = json.loads(json.dumps(report.to_json()))
    assert data["title"] == "general protection fault in crashtest_read_field"
    assert data["call_trace"][0] == "crashtest_init"
    assert (data["stop_code"], data["stop_name"], data["parameters"]) == (None, None, [])
    assert set(data) >= {"title", "kind", "function", "module", "ip", "address", "call_trace", "panic",
                         "text", "first_line", "last_line", "corrupted", "corrupted_reason", "family"}


# --- a guest that floods the console --------------------------------------------

def test_a_warning_that_never_ends_does_not_lend_its_title_to_the_crash_after_it() -> None:
    """A guest printed a WARNING-looking line and no end; the real CF-291 crash follows."""
    log = lines_of(read_log("cf291-field21-vulnerable.log"))
    first = line_number_of("\n".join(log), "BUG: unable to handle page fault") - 1
    crash = "\n".join(log[first - 3:])  # the sensor's last lines, then the oops
    text = "\n".join(["------------[ cut here ]------------",
                      "WARNING: CPU: 0 PID: 1 at drivers/flood/flood.c:42 flood_warn+0x1/0x2",
                      *(["flood " + "A" * 70] * 50), crash])
    parser = stream(text)
    (report,) = parser.flush()
    assert report.title == "BUG: unable to handle page fault in chf_match_criterion"
    assert "flood" not in report.text
    (warning,) = parser.warnings()
    assert warning.title == "WARNING in flood_warn" and not warning.fatal
    assert warning.corrupted_reason == CUT_BY_CRASH


def test_a_report_flooded_with_text_is_cut_at_max_report_chars() -> None:
    parser = LinuxConsoleParser(max_report_chars=100_000)
    parser.feed_line("WARNING: CPU: 0 PID: 1 at drivers/flood/flood.c:42 flood_warn+0x1/0x2", 1)
    for number in range(2, 200):
        parser.feed_line("B" * 4000, number)
    (warning,) = parser.warnings()
    assert warning.corrupted_reason == TOO_BIG.format(n=100_000)
    assert 100_000 <= len(warning.text) < 110_000


def test_unread_warnings_are_kept_up_to_a_bound() -> None:
    parser = LinuxConsoleParser()
    for number in range(0, 3 * MAX_UNREAD_WARNINGS * 2, 2):
        parser.feed_line(f"WARNING: CPU: 0 PID: 1 at x.c:{number} flood_{number}+0x1/0x2", number)
        parser.feed_line("---[ end trace 0000000000000000 ]---", number + 1)
    assert parser.flush() == []
    kept = parser.warnings()
    assert len(kept) == MAX_UNREAD_WARNINGS
    assert kept[-1].title == f"WARNING in flood_{3 * MAX_UNREAD_WARNINGS * 2 - 2}"  # the newest
    assert parser.warnings() == []


@pytest.mark.parametrize("line", [
    "flood: BUG: unable to handle page fault for address: 0000000000000000",
    "flood: Kernel panic - not syncing: only quoted",
    "Oops, said the flood",
    "Call Trace:",
    "RIP: 0010:flood_fake_rip+0x0/0x10",
    "---[ end trace 0000000000000000 ]---",
])
def test_crash_words_in_the_middle_of_a_line_or_without_their_head_start_no_report(line: str) -> None:
    assert not is_crash_start(line)
    assert parse_reports(line + "\n" + line) == []
