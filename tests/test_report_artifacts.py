"""The page of a pytest run's artifacts directory (`harness report ARTIFACTS_DIR`), from what a
real machine wrote in this test (a CF291 boot loop on the vulnerable sensor), opened in headless
Chromium; and the directories a run can leave without a verdict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.content.format import file_name
from harness.paths import CONTENT_FIXTURES, FIXTURES
from harness.report import render_artifacts
from harness.vm.machine import Machine

from .browser import Browser, link_target, open_checked, reddish
from .conftest import run_harness

GOOD = (CONTENT_FIXTURES / "good.sys").read_bytes()
CF291 = (CONTENT_FIXTURES / "cf291-field21.sys").read_bytes()
SERIAL = FIXTURES / "logs" / "linux" / "cf291-field21-vulnerable.log"

ROWS = """[...document.querySelectorAll('table.runs tbody tr')].map(tr => {
  const badge = tr.querySelector('.badge');
  return {text: tr.innerText, state: badge.dataset.state, bg: getComputedStyle(badge).backgroundColor,
          links: [...tr.querySelectorAll('a')].map(a => ({text: a.innerText, href: a.href}))};
})"""


@pytest.mark.vm
@pytest.mark.family("linux")
@pytest.mark.expect_boot_loop
def test_the_page_of_a_real_run_shows_its_boot_loop_and_links_its_logs(
        vm: Machine, browser: Browser, tmp_path: Path, artifacts_dir: Path) -> None:
    vm.install_content({file_name(291, 0, 31): GOOD, file_name(291, 0, 32): CF291})
    vm.boot()
    verdict = vm.wait_verdict()
    assert verdict.verdict == "boot-loop" and verdict.crash is not None, verdict.one_line()
    run_dir = artifacts_dir.parent  # the run, as a user passes it: artifacts/<run id>/
    result = run_harness("report", run_dir, "-o", tmp_path / "page")
    assert result.returncode == 0, result.stderr
    page_path = tmp_path / "page" / "index.html"
    assert result.stdout.strip() == f"artifacts report: {page_path}"
    page, rows = open_checked(browser, page_path, ROWS, artifacts_dir / "report.png")
    summary = page.evaluate("[...document.querySelectorAll('table.crash-summary tbody tr')].map(tr => tr.innerText)")
    assert any(verdict.crash.title in line and artifacts_dir.name.split("--")[-1] in line for line in summary)
    (row,) = [r for r in rows if artifacts_dir.name in r["text"]]  # other tests of the run may be listed
    assert row["state"] == "boot-loop" and "boot-loop" in row["text"] and reddish(row["bg"])
    assert verdict.crash.title in row["text"] and "chf_match_criterion" in row["text"]
    assert f"{verdict.boots} ({verdict.crashing_boots} crashing)" in row["text"]
    assert "test_the_page_of_a_real_run_shows_its_boot_loop" in row["text"]
    links = {link["text"]: link_target(link["href"]) for link in row["links"]}
    assert {"serial log", "events", "verdict"} <= set(links)
    assert links["serial log"].resolve() == (artifacts_dir / "serial.log").resolve()
    assert verdict.crash.title.split(" in ")[0] in links["serial log"].read_text(errors="replace")
    assert json.loads(links["verdict"].read_text())["verdict"] == "boot-loop"


def test_a_machine_directory_without_a_verdict_is_listed_never_dropped(tmp_path: Path) -> None:
    """An interrupted run leaves a console log and no verdict.json; a broken verdict.json is said;
    a machine recovered after a boot loop (verdict.json says healthy) still counts as crashed,
    from the verdicts and crash events of its events.jsonl."""
    run = tmp_path / "20261203-000000-abcd"
    (run / "test_x.py--test_interrupted").mkdir(parents=True)
    shutil.copyfile(SERIAL, run / "test_x.py--test_interrupted" / "serial.log")
    (run / "test_x.py--test_broken").mkdir()
    (run / "test_x.py--test_broken" / "verdict.json").write_text("{\"verdict\": ")
    (run / "test_x.py--test_no_machine").mkdir()  # a test that asked for artifacts_dir only
    recovered = run / "test_x.py--test_recovered"
    recovered.mkdir()
    (recovered / "verdict.json").write_text(json.dumps({
        "verdict": "healthy", "reason": "boot complete, sensor loaded", "boots": 1, "crashing_boots": 0,
        "crash": None, "recovery": {"safe-mode": {"result": "recovered", "reason": "script exited 0"}}}))
    events = [("harness:verdict", "healthy"), ("lifecycle:crashed:panicked", None),
              ("lifecycle:crashed:panicked", None), ("harness:verdict", "boot-loop"), ("harness:verdict", "healthy")]
    (recovered / "events.jsonl").write_text("".join(
        json.dumps({"t": i, "event": e} | ({"verdict": v, "reason": ""} if v else {})) + "\n"
        for i, (e, v) in enumerate(events)) + "{\"t\": 9, \"ev")  # torn last line: killed mid-write
    page = render_artifacts(tmp_path).read_text()
    runs = page.split('<table class="runs">')[1]
    assert runs.count("<tr>") == 1 + 3  # the header and the three machine directories
    assert "no verdict" in page and "verdict.json unreadable" in page
    assert "Test run: 3 machines, 1 crashed" in page and "crashed earlier" in page
    assert "safe-mode: recovered (script exited 0)" in page
    assert page.index(">healthy</span> → ") < page.index(">boot-loop</span> → ")
    assert "test_no_machine" not in page
