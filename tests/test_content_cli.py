"""`harness content ...` as a content engineer uses it: make a file, break it,
look inside it, and ask each sensor build what it would do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import run_harness


def test_new_mutate_inspect_check_tell_one_story(tmp_path: Path) -> None:
    good = tmp_path / "C-00000291-00000000-00000031.sys"
    bad = tmp_path / "C-00000291-00000000-00000032.sys"
    made = run_harness("content", "new", "--fields", "20", "--instances", "8", "--seed", "5", "-o", good)
    assert made.returncode == 0, made.stderr
    assert "spec expects: vulnerable loaded, hardened loaded" in made.stdout

    mutated = run_harness("content", "mutate", good, "--fault", "cf291-field21", "--seed", "1", "-o", bad)
    assert mutated.returncode == 0, mutated.stderr
    assert "expected: vulnerable crash, hardened rejected" in mutated.stdout

    shown = json.loads(run_harness("content", "inspect", bad, "--json", check=True).stdout)
    assert shown["header"]["fields"] == 21 and shown["well_formed"] is True
    assert [i["criteria"][20]["kind"] != "wildcard" for i in shown["instances"]].count(True) == 1

    vulnerable = json.loads(run_harness("content", "check", bad, "--sensor", "vulnerable", "--json").stdout)
    hardened = json.loads(run_harness("content", "check", bad, "--sensor", "hardened", "--json").stdout)
    assert vulnerable["outcome"] == "crash" and vulnerable["crash"]["function"] == "chf_match_criterion"
    assert hardened["outcome"] == "rejected" and hardened["reason_code"] == "field-count"

    text = run_harness("content", "check", bad, "--sensor", "vulnerable").stdout
    assert text.startswith(f"{bad}: crash (vulnerable sensor):")


def test_the_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    for name in ("a.sys", "b.sys"):
        run_harness("content", "new", "--seed", "42", "-o", tmp_path / name, check=True)
    assert (tmp_path / "a.sys").read_bytes() == (tmp_path / "b.sys").read_bytes()


def test_inspect_shows_where_a_malformed_file_breaks(tmp_path: Path) -> None:
    good = tmp_path / "good.sys"
    broken = tmp_path / "broken.sys"
    run_harness("content", "new", "-o", good, check=True)
    run_harness("content", "mutate", good, "--fault", "payload-len-overflow", "-o", broken, check=True)
    shown = run_harness("content", "inspect", broken)
    assert shown.returncode == 0
    assert "well-formed no" in shown.stdout
    assert "[payload-past-body]" in shown.stdout and ".len)" in shown.stdout
    problem = json.loads(run_harness("content", "inspect", broken, "--json").stdout)["problems"][0]
    assert problem["code"] == "payload-past-body" and problem["field"].endswith(".len") and problem["offset"] > 24


def test_fix_crc_turns_a_fuzzer_reproducer_into_a_loadable_file(tmp_path: Path) -> None:
    good, stale, fixed = tmp_path / "good.sys", tmp_path / "stale.sys", tmp_path / "fixed.sys"
    run_harness("content", "new", "-o", good, check=True)
    run_harness("content", "mutate", good, "--fault", "bad-crc", "-o", stale, check=True)
    run_harness("content", "fix-crc", stale, "-o", fixed, check=True)
    assert fixed.read_bytes() == good.read_bytes()


def test_faults_lists_every_model_with_its_expectation() -> None:
    rows = json.loads(run_harness("content", "faults", "--json", check=True).stdout)
    names = {row["name"] for row in rows}
    assert {"cf291-field21", "cf291-wildcard", "zeroed", "truncated", "body-len-overflow",
            "payload-len-overflow", "bad-magic", "bad-version", "bad-crc", "bit-flip", "random"} <= names


def _bad_input_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    huge = tmp_path / "huge.sys"
    with open(huge, "wb") as handle:  # sparse: several GB on paper, nothing on disk
        handle.truncate(5 * 1024**3)
    return {
        "missing": (tmp_path / "missing.sys", "no such file"),
        "directory": (tmp_path, "is a directory"),
        "several GB": (huge, "larger than the 16777216-byte limit"),
    }


@pytest.mark.parametrize("command", [["inspect"], ["check", "--sensor", "hardened"],
                                     ["check", "--sensor", "vulnerable", "--target", "sys"],
                                     ["mutate", "--fault", "zeroed", "-o", "/tmp/unused.sys"]])
def test_bad_input_is_one_clear_line_and_exit_2(command: list[str], tmp_path: Path) -> None:
    for path, words in _bad_input_cases(tmp_path).values():
        proc = run_harness("content", command[0], path, *command[1:])
        assert proc.returncode == 2, (path, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert str(path) in lines[0] and words in lines[0]


def test_mutating_a_file_that_is_not_a_channel_file_says_why(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sys"
    junk.write_bytes(b"MZ\x90\x00 this is a driver, not content")
    proc = run_harness("content", "mutate", junk, "--fault", "cf291-field21", "-o", tmp_path / "out.sys")
    assert proc.returncode == 2
    assert "cannot apply cf291-field21" in proc.stderr and "bad-magic" in proc.stderr
    assert not (tmp_path / "out.sys").exists()


def test_an_unknown_fault_or_sensor_is_a_usage_error(tmp_path: Path) -> None:
    assert run_harness("content", "check", tmp_path, "--sensor", "medium").returncode == 2
    assert run_harness("content", "mutate", tmp_path, "--fault", "nope", "-o", "x").returncode == 2


def test_a_driver_image_needs_the_sys_target(tmp_path: Path) -> None:
    good = tmp_path / "good.sys"
    run_harness("content", "new", "-o", good, check=True)
    proc = run_harness("content", "check", good, "--sensor", "hardened", "--driver", tmp_path / "x.sys")
    assert proc.returncode == 2 and "--driver needs --target sys" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
