"""`harness triage`: the verdict and crash report a saved serial log implies, from the
same monitor that judges live VMs. The logs were captured from real QEMU boots."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from harness.triage import file_lines, iter_lines, read_log, triage_files, triage_text

from .conftest import REPO, run_harness

LOGS = REPO / "fixtures" / "logs" / "linux"


def triage_json(log: Path) -> dict:
    proc = run_harness("triage", log, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_two_crashing_boots_in_one_log_are_a_boot_loop_with_one_title() -> None:
    result = triage_json(LOGS / "cf291-field21-bootloop.log")
    assert result["verdict"] == "boot-loop" and result["boots"] == 2
    assert result["crash"]["title"] == "BUG: unable to handle page fault in chf_match_criterion"
    assert result["crash"]["module"] == "harness_sensor" and result["crash"]["function"] == "chf_match_criterion"
    assert [c["title"] for c in result["crashes"]] == [result["crash"]["title"]] * 2


@pytest.mark.parametrize("log, verdict, function", [
    ("cf291-field21-vulnerable.log", "crashed", "chf_match_criterion"),
    ("body-len-overflow-vulnerable.log", "crashed", "chf_crc32"),
    ("payload-len-overflow-vulnerable.log", "crashed", "chf_compile_pattern"),
    ("good-vulnerable.log", "healthy", None),
    ("cf291-field21-hardened.log", "content-rejected", None),
])
def test_each_captured_log_gives_its_verdict(log: str, verdict: str, function: str | None) -> None:
    result = triage_json(LOGS / log)
    assert result["verdict"] == verdict
    assert (result["crash"] or {}).get("function") == function


def test_a_log_cut_in_the_middle_of_the_oops_still_names_the_crash() -> None:
    text = (LOGS / "cf291-field21-vulnerable.log").read_bytes().decode(errors="replace")
    cut = text[:text.index("Call Trace")]
    verdict = triage_text(cut)
    assert verdict.verdict == "crashed"
    assert verdict.crash is not None and verdict.crash.function == "chf_match_criterion"


def test_triage_of_a_missing_log_is_one_clear_line(tmp_path: Path) -> None:
    proc = run_harness("triage", tmp_path / "nope.log")
    assert proc.returncode == 2 and proc.stderr.strip() == f"harness: error: {tmp_path / 'nope.log'}: no such file"


def test_triage_json_lists_every_report_in_order_beside_the_first_fatal_one() -> None:
    warning_only = triage_json(LOGS / "crashtest-warn.log")
    assert warning_only["crash"] is None  # a WARNING is a finding, not a crash
    assert [(r["title"], r["kind"], r["fatal"], r["corrupted"]) for r in warning_only["reports"]] == [
        ("WARNING in crashtest_init", "warning", False, False)]
    assert warning_only["reports"][0]["function"] == "crashtest_init"
    loop = triage_json(LOGS / "cf291-field21-bootloop.log")
    assert [r["title"] for r in loop["reports"]] == [loop["crash"]["title"]] * 2
    assert all(r["fatal"] for r in loop["reports"])
    assert loop["reports"][0]["first_line"] < loop["reports"][1]["first_line"]


def test_triage_json_of_a_healthy_log_has_no_reports() -> None:
    assert triage_json(LOGS / "good-vulnerable.log")["reports"] == []


@pytest.mark.parametrize("content", [b"", b"one line", b"a\r\nb\r\n", b"a\nb\n\n", "\u00e9t\u00e9\n\u2603 x\n".encode(),
                                     b"\xff\xfe broken\nok\n", b"x" * 50 + b"\n" + b"y" * 3])
def test_a_log_read_in_pieces_gives_the_lines_of_the_whole_text(tmp_path: Path, content: bytes) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(content)
    whole = read_log(log).split("\n")
    assert list(iter_lines(read_log(log))) == whole
    for size in (1, 2, 7, 1 << 20):  # pieces smaller than a line, or than a UTF-8 character
        assert list(file_lines(log, size)) == whole


def test_a_big_log_is_triaged_from_the_file_in_bounded_memory(tmp_path: Path) -> None:
    """About 6 MB of boots with a WARNING every 500 lines and the CF-291 crash at the end: the
    verdict and reports are those of the text, and memory does not grow with the log."""
    healthy = (LOGS / "good-vulnerable.log").read_bytes().decode(errors="replace").replace("\r", "")
    warning = ("WARNING: CPU: 0 PID: 1 at drivers/acme/core.c:42 acme_check+0x1a/0x30\n"
               "RIP: 0010:acme_check+0x1a/0x30\nCall Trace:\n <TASK>\n acme_init+0x10/0x20\n </TASK>\n"
               "---[ end trace 0000000000000000 ]---\n")
    noise = [line for line in healthy.split("\n") if line]
    body = "\n".join(noise[i % len(noise)] for i in range(500)) + "\n" + warning
    crash = (LOGS / "cf291-field21-vulnerable.log").read_bytes().decode(errors="replace")
    log = tmp_path / "serial.log"
    log.write_text(body * 150 + crash)
    assert log.stat().st_size > 5_000_000
    tracemalloc.start()
    result = triage_files(log)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 30 << 20, f"{peak >> 20} MiB traced for a {log.stat().st_size >> 20} MiB log"
    assert result.verdict.crash is not None
    assert result.verdict.crash.title == "BUG: unable to handle page fault in chf_match_criterion"
    assert len(result.reports) == 151 and result.reports[-1]["fatal"] and not result.reports[0]["fatal"]
    assert result.verdict.to_json() == triage_text(log.read_bytes().decode().replace("\r", "")).to_json()
