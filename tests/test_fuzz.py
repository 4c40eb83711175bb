"""Coverage-guided fuzzing of the content interpreter with libFuzzer.

The hardened build must survive a bounded run (HARNESS_FUZZ_SECONDS, default
60) with zero crashes; the vulnerable build's fuzzer must find a crash, and
the input it saves must crash the host checker too."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.content.files import write_content_file
from harness.content.format import with_crc_fixed
from harness.content.sensor import check_file
from harness.paths import CONTENT_FIXTURES, DRIVERS

from .conftest import require_tool

pytestmark = pytest.mark.fuzz
FUZZ_SECONDS = int(os.environ.get("HARNESS_FUZZ_SECONDS", "60"))


@pytest.fixture(scope="module")
def fuzzers() -> Path:
    require_tool("clang", "install Debian's clang and libclang-rt-14-dev (make setup)")
    subprocess.run(["make", "-s", "-C", str(DRIVERS), "fuzz"], check=True, timeout=300)
    return DRIVERS / "build" / "fuzz"


def test_the_hardened_build_survives_a_bounded_fuzz_run(fuzzers: Path) -> None:
    findings = DRIVERS / "build" / "fuzz" / "findings"
    shutil.rmtree(findings, ignore_errors=True)
    run = subprocess.run(["make", "-s", "-C", str(DRIVERS), "fuzz-run", f"FUZZ_SECONDS={FUZZ_SECONDS}"],
                         capture_output=True, text=True, timeout=FUZZ_SECONDS + 120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done" in run.stderr and "stat::number_of_executed_units" in run.stderr
    executed = int(run.stderr.split("stat::number_of_executed_units:")[1].split()[0])
    assert executed > 1000, f"only {executed} inputs ran"
    assert list(findings.iterdir()) == [], "the hardened build crashed: see drivers/build/fuzz/findings/"


def test_the_fuzzer_finds_the_vulnerable_crash_from_a_good_seed(fuzzers: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(CONTENT_FIXTURES / "good.sys", corpus)
    run = subprocess.run([str(fuzzers / "chf-fuzz-vulnerable"), f"-max_total_time={FUZZ_SECONDS}",
                          f"-artifact_prefix={tmp_path}/", f"-dict={DRIVERS / 'host' / 'chf.dict'}", str(corpus)],
                         capture_output=True, text=True, timeout=FUZZ_SECONDS + 60)
    assert run.returncode != 0 and "SEGV" in run.stderr, run.stderr[-2000:]
    [crash] = tmp_path.glob("crash-*")
    # The target fixes the CRC before loading; do the same to replay the input as a content file.
    replay = tmp_path / "C-00000291-00000000-00000099.sys"
    write_content_file(replay, with_crc_fixed(crash.read_bytes()))
    assert check_file(replay, "vulnerable").outcome == "crash"
    assert check_file(replay, "hardened").outcome == "rejected"
