"""The campaign page (issue 12's `harness campaign --json` object) in headless Chromium, and
`harness report DIR` on input it cannot use: one line naming the directory or the file and the
field, exit 2, no traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.paths import FIXTURES
from harness.report import render_campaign

from .browser import Browser, chromium_path, link_target, open_checked, reddish
from .conftest import REPO, run_harness

CRASH_LOG = FIXTURES / "logs" / "linux" / "cf291-field21-bootloop.log"
CF291_TITLE = "BUG: unable to handle page fault in chf_match_criterion"

PAGE_STATE = """(() => ({
  text: document.body.innerText,
  bars: [...document.querySelectorAll('.bar-row[data-key]')].map(r => { const b = r.querySelector('.bar');
      const w = b.getBoundingClientRect().width; return {key: r.dataset.key, value: +r.dataset.value, width: w,
      bg: getComputedStyle(b).backgroundColor}; }),
  crashRows: [...document.querySelectorAll('table.crashes tbody tr')].map(tr => ({text: tr.innerText,
      links: [...tr.querySelectorAll('a')].map(a => ({text: a.innerText, href: a.href}))})),
  disagreements: [...document.querySelectorAll('table.disagreements tbody tr')].map(tr => tr.innerText),
}))()"""


def write_campaign(report_dir: Path) -> dict[str, Any]:
    """24 files judged, two unique crashes with reproducer, minimised file and serial log under
    `out`, one disagreement (host predicted healthy, the machine crashed)."""
    out = report_dir / "out"
    crashes = []
    for key, title, function, count in (("cf291", CF291_TITLE, "chf_match_criterion", 5),
                                        ("overflow", "BUG: unable to handle page fault in chf_parse_body",
                                         "chf_parse_body", 2)):
        crash_dir = out / "crashes" / key
        crash_dir.mkdir(parents=True)
        (crash_dir / "reproducer.sys").write_bytes(b"\xaa\xaa\x00\x00" * 64)
        (crash_dir / "minimized.sys").write_bytes(b"\xaa\xaa\x00\x00" * 8)
        shutil.copyfile(CRASH_LOG, crash_dir / "serial.log")
        crashes.append({"title": title, "function": function, "count": count,
                        "reproducer": str(crash_dir / "reproducer.sys"),
                        "minimized": f"out/crashes/{key}/minimized.sys",
                        "rerun": f"harness reproduce {crash_dir / 'reproducer.sys'} --profile linux-ref",
                        "serial_log": f"out/crashes/{key}/serial.log"})
    (out / "files").mkdir()
    (out / "files" / "0017.sys").write_bytes(b"\xaa\xaa")
    obj = {"files": 24, "files_per_min": 48.3,
           "verdicts": {"healthy": 9, "content-rejected": 8, "crashed": 0, "boot-loop": 7, "hang": 0,
                        "infra-error": 0},
           "unique_crashes": crashes,
           # as harness/campaign/summary.py writes one: both results, the disagreeing tiers
           "disagreements": [{"index": 17, "file": str(out / "files" / "0017.sys"),
                              "name": "C-00000291-00000000-00000032.sys", "origin": "fault:cf291-field21",
                              "tiers": ["host"],
                              "predicted": {"host": {"outcome": "accepted", "reason_code": None, "function": None,
                                                     "region": None, "expected": "healthy"}},
                              "vm": {"verdict": "boot-loop", "reason": "2 crashing boots in a row",
                                     "crash": {"title": CF291_TITLE, "function": "chf_match_criterion",
                                               "module": "harness_sensor"}},
                              "serial_log": "out/crashes/cf291/serial.log", "artifacts": str(out / "files")}],
           "out": str(out)}
    (report_dir / "campaign.json").write_text(json.dumps(obj, indent=2))
    return obj


def test_a_campaign_page_lists_each_unique_crash_with_its_files_and_the_disagreements(
        browser: Browser, tmp_path: Path, artifacts_dir: Path) -> None:
    obj = write_campaign(tmp_path)
    result = run_harness("report", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"campaign report: {tmp_path / 'index.html'}"
    _page, s = open_checked(browser, tmp_path / "index.html", PAGE_STATE, artifacts_dir / "campaign.png")
    for words in ("Campaign: 24 files, 2 unique crashes", "Files per minute\n48.3", "7 crashing files",
                  CF291_TITLE, "chf_parse_body", "harness reproduce"):
        assert words in s["text"], words
    bars = {b["key"]: b for b in s["bars"]}
    assert set(bars) == {name for name, count in obj["verdicts"].items() if count}
    # Bar lengths in proportion to the counts: 9 healthy, 8 rejected, 7 boot loops.
    assert bars["healthy"]["width"] > bars["content-rejected"]["width"] > bars["boot-loop"]["width"] > 0
    assert abs(bars["healthy"]["width"] / bars["boot-loop"]["width"] - 9 / 7) < 0.05
    assert reddish(bars["boot-loop"]["bg"]) and not reddish(bars["healthy"]["bg"])
    first = s["crashRows"][0]
    assert CF291_TITLE in first["text"] and "\t5\t" in first["text"]
    targets = {link["text"]: link_target(link["href"]) for link in first["links"]}
    assert set(targets) == {"reproducer", "minimized", "serial log"}
    assert targets["minimized"].stat().st_size < targets["reproducer"].stat().st_size
    assert targets["serial log"].read_bytes() == CRASH_LOG.read_bytes()
    (row,) = s["disagreements"]
    assert "C-00000291-00000000-00000032.sys\nfault:cf291-field21\thost: healthy\tboot-loop\n" in row, row
    assert "2 crashing boots in a row" in row and CF291_TITLE in row


def test_a_missing_crash_file_is_said_in_words_never_a_dead_link(tmp_path: Path) -> None:
    obj = write_campaign(tmp_path)
    Path(obj["unique_crashes"][0]["reproducer"]).unlink()
    # a disagreement of another shape (a newer campaign): one column per key, never dropped
    obj["disagreements"] = [{"file": "out/files/0017.sys", "expected": "healthy", "vm_verdict": "crashed"}]
    (tmp_path / "campaign.json").write_text(json.dumps(obj))
    html = render_campaign(tmp_path).read_text()
    assert "reproducer missing (" in html
    assert "<th>vm_verdict</th>" in html and 'href="out/files/0017.sys"' in html


@pytest.mark.parametrize("setup, expected", [
    (lambda d: shutil.rmtree(d), "does not exist: expected a report directory"),
    (lambda d: None, "no rollout.json, no campaign.json and no machine artifacts"),
    (lambda d: (d / "rollout.json").write_text("{\"machines\": [{\"name\": \"a\", \"ring\": \"0\"}]}"),
     "rollout.json: field machines[0].ring must be an integer, got \"0\": write it with harness rollout"),
    (lambda d: (d / "rollout.json").write_text("[1, 2]"), "rollout.json: expected a JSON object, got list"),
    (lambda d: (d / "campaign.json").write_text("{\"files\": 3, \"verdicts\": {\"healthy\": 3}}"),
     "campaign.json: field unique_crashes must be a list, got null: write it with harness campaign"),
    (lambda d: (d / "campaign.json").write_text("{\"files\": 3,"), "campaign.json: not JSON (line 1"),
])
def test_bad_input_is_one_line_naming_the_directory_or_the_field_and_exit_2(
        tmp_path: Path, setup: Any, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "report"
    target.mkdir()
    setup(target)
    assert main(["report", str(target)]) == 2  # the CLI's own entry point, in this process
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"harness: error: {target}"), err
    assert expected in lines[0], lines[0]
    assert not (target / "index.html").exists()


def test_the_command_exits_2_on_bad_input_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "rollout.json").write_text("{\"machines\": 3}")
    result = run_harness("report", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == (f"harness: error: {tmp_path / 'rollout.json'}: field machines must be a "
                                     "list, got 3: write it with harness rollout --report DIR (docs/report.md "
                                     "lists the fields)")


def test_the_browser_check_sees_a_page_that_fetches_anything_or_links_nowhere(
        browser: Browser, tmp_path: Path) -> None:
    """The checks the report tests rely on can fail: a page with an image from elsewhere, and
    one with a link to a file that is not there."""
    fetching = tmp_path / "fetching.html"
    fetching.write_text('<!DOCTYPE html><html><body><img src="http://report.invalid/logo.png">x</body></html>')
    with pytest.raises(AssertionError, match="fetched more than itself: .*report.invalid"):
        open_checked(browser, fetching, "1", tmp_path / "fetching.png")
    dead = tmp_path / "dead.html"
    dead.write_text('<!DOCTYPE html><html><body><a href="nowhere/serial.log">log</a></body></html>')
    with pytest.raises(AssertionError, match="links to missing files: .*nowhere/serial.log"):
        open_checked(browser, dead, "1", tmp_path / "dead.png")


def test_the_browser_starts_from_a_bare_process_whose_pipes_take_fds_3_and_4(tmp_path: Path) -> None:
    """In a fresh interpreter os.pipe() returns fds 3 and 4 themselves: the wiring must still
    hand Chromium its pipe (a bug seen outside pytest, where more files are open)."""
    chromium_path()
    code = ("import os, sys; from pathlib import Path; from tests.browser import Browser; "
            "r, w = os.pipe(); os.close(r); os.close(w); assert (r, w) == (3, 4), (r, w); "
            f"b = Browser.start(Path({str(tmp_path)!r})); browser = b.__enter__(); "
            "print(browser.call('Browser.getVersion')['product']); b.__exit__(None, None, None)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("Chrome/"), result.stderr[-2000:]
