"""The pytest plugin as a driver engineer meets it: a test file using `vm`, run by pytest.

The inner tests boot real VMs; the outer test reads what pytest reported."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from harness.paths import CONTENT_FIXTURES

pytestmark = pytest.mark.vm

INNER = f'''
from pathlib import Path

import pytest

GOOD = Path({str(CONTENT_FIXTURES / "good.sys")!r}).read_bytes()
CF291 = Path({str(CONTENT_FIXTURES / "cf291-field21.sys")!r}).read_bytes()


@pytest.mark.expect_boot_loop
def test_expects_a_loop_but_the_content_is_good(vm):
    vm.install_content({{"C-00000291-00000000-00000001.sys": GOOD}})
    vm.boot()
    vm.wait_verdict()


def test_does_not_expect_the_crash_it_gets(vm):
    vm.install_content({{"C-00000291-00000000-00000032.sys": CF291}})
    vm.boot()
    vm.wait_verdict()


@pytest.mark.expect_boot_loop
def test_expects_a_loop_and_never_asks_for_a_verdict(vm):
    vm.install_content({{"C-00000291-00000000-00000001.sys": GOOD}})
    vm.boot()
    vm.expect("HARNESS-BOOT-COMPLETE", timeout=120)


def test_a_crash_while_waiting_for_a_line_is_not_missed(vm):
    vm.install_content({{"C-00000291-00000000-00000032.sys": CF291}})
    vm.boot()
    vm.expect("Kernel panic", timeout=120)


@pytest.mark.expect_crash
def test_a_marked_crash_seen_by_expect_passes(vm):
    vm.install_content({{"C-00000291-00000000-00000032.sys": CF291}})
    vm.boot()
    vm.expect("Kernel panic", timeout=120)
'''


def test_markers_report_sections_junit_and_summary(pytester: pytest.Pytester, reference_guest: object) -> None:
    pytester.makepyfile(test_inner=INNER)
    artifacts = pytester.path / "artifacts"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--harness-artifacts={artifacts}",
                                "--junitxml=junit.xml", "-rf")
    result.assert_outcomes(failed=4, passed=1)
    result.stdout.fnmatch_lines([
        "*expected a boot loop, got healthy after 1 boot(s)*",
        "*unexpected crash: boot-loop after 2 boot(s), crash: BUG: unable to handle page fault in chf_match_criterion*",
        "expected a boot loop, got no verdict (the test never called wait_verdict())*"
        "test_expects_a_loop_and_never_asks_for_a_verdict)",
        "unexpected crash: BUG: unable to handle page fault in chf_match_criterion (artifacts:*"
        "test_a_crash_while_waiting_for_a_line_is_not_missed)",
        "*serial tail*",
        "*harness: crashes seen*",
        "boot-loop   BUG: unable to handle page fault in chf_match_criterion  (test_inner.py::test_does_not_expect*",
        "crash       BUG: unable to handle page fault in chf_match_criterion  (test_inner.py::test_a_crash_while*",
    ])
    cases = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
             for case in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    crash = cases["test_does_not_expect_the_crash_it_gets"]
    assert crash["verdict"] == "boot-loop" and crash["boots"] == "2"
    assert crash["crash_title"] == "BUG: unable to handle page fault in chf_match_criterion"
    assert cases["test_expects_a_loop_but_the_content_is_good"]["verdict"] == "healthy"
    [run] = artifacts.iterdir()
    kept = sorted(p.name for p in (run / "test_inner.py--test_does_not_expect_the_crash_it_gets").iterdir())
    assert {"serial.log", "events.jsonl", "verdict.json", "domain.xml", "repro.txt", "content"} <= set(kept)
    assert "data-disk.img" not in kept  # removed at teardown (no --harness-keep-vms)
