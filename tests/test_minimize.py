"""`harness minimize`: ddmin on synthetic predicates, the format passes on CF291-style files
written from the spec and judged by the real vulnerable host build, and one end-to-end VM run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness.content.faults import truncated
from harness.content.format import ChannelFile, Criterion, Instance, Kind, parse
from harness.content.sensor import check_file
from harness.minimize.ddmin import BudgetExhausted, ddmin
from harness.minimize.minimizer import minimize_on_host
from harness.paths import CONTENT_FIXTURES

from .conftest import run_harness


def one_minimal(result: list[int], test) -> bool:  # type: ignore[no-untyped-def]
    return all(not test(result[:i] + result[i + 1:]) for i in range(len(result)))


def test_ddmin_finds_the_three_failure_inducing_elements_of_zellers_example() -> None:
    runs: list[list[int]] = []

    def test(c: list[int]) -> bool:
        runs.append(c)
        return {1, 7, 8} <= set(c)

    result = ddmin(list(range(1, 9)), test)
    assert result == [1, 7, 8]
    assert one_minimal(result, test)
    assert len(runs) < 40


def test_ddmin_is_one_minimal_on_a_predicate_with_many_minimal_answers() -> None:
    rng = random.Random(7)
    weights = [rng.randint(1, 20) for _ in range(60)]

    def test(c: list[int]) -> bool:  # fails when the chosen weights reach 100: many 1-minimal sets
        return sum(weights[i] for i in c) >= 100

    result = ddmin(list(range(60)), test)
    assert test(result) and one_minimal(result, test)
    assert len(result) < 20


def test_ddmin_on_characters_keeps_the_failing_tag() -> None:
    text = list('<SELECT NAME="priority" MULTIPLE SIZE=7>')

    def test(c: list[str]) -> bool:
        return "<SELECT" in "".join(c)

    assert "".join(ddmin(text, test)) == "<SELECT"


def test_ddmin_stops_at_its_budget_with_an_interesting_list() -> None:
    calls = 0

    def test(c: list[int]) -> bool:
        nonlocal calls
        calls += 1
        if calls > 10:
            raise BudgetExhausted()
        return 3 in c and 9 in c

    result = ddmin(list(range(16)), test)
    assert 3 in result and 9 in result and len(result) < 16 and calls == 11


def cf291_style(ids: list[int], fields: int, victim: int, bad_index: int, seed: int) -> bytes:
    """A file written from the spec: `fields` criteria per instance, random exact/prefix
    criteria below the sensor's 20 inputs, wildcards above, and one non-wildcard at `bad_index`."""
    rng = random.Random(seed)
    instances = []
    for n, inst_id in enumerate(ids):
        criteria = []
        for i in range(fields):
            if i < 20 and rng.random() < 0.4:
                payload = b"\\\\.\\pipe\\" + bytes(rng.choice(b"abcdef0123") for _ in range(rng.randint(1, 14)))
                criteria.append(Criterion(rng.choice([Kind.EXACT, Kind.PREFIX]), payload))
            else:
                criteria.append(Criterion(Kind.WILDCARD))
        if n == victim:
            criteria[bad_index] = Criterion(Kind.EXACT, b"\\Device\\NamedPipe\\evil")
        instances.append(Instance(inst_id, criteria))
    return ChannelFile(fields=fields, instances=instances).to_bytes()


CASES = {
    "fixture-shape": dict(ids=[857421 + i for i in range(6)], fields=21, victim=4, bad_index=20),
    "other-ids": dict(ids=[7, 99, 1 << 31, 12345], fields=21, victim=2, bad_index=20),
    "more-instances": dict(ids=list(range(500, 540)), fields=21, victim=33, bad_index=20),
    "more-fields": dict(ids=[11, 22, 33, 44, 55], fields=26, victim=0, bad_index=20),
    "bad-at-index-23": dict(ids=[4, 8, 15, 16, 23, 42], fields=25, victim=5, bad_index=23),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_format_passes_shrink_a_cf291_style_file_to_its_culprit(case: str, tmp_path: Path) -> None:
    spec = CASES[case]
    data = cf291_style(**spec, seed=len(case))
    victim_id = spec["ids"][spec["victim"]]
    result = minimize_on_host(data)
    assert len(result.data) < len(data) // 2
    out = tmp_path / "min.sys"
    out.write_bytes(result.data)
    check = check_file(out, "vulnerable")
    assert check.outcome == "crash" and check.crash and check.crash["function"] == result.crash.function
    assert result.crash.function == "chf_match_criterion"
    cf = parse(result.data)  # the format passes keep the file well-formed
    assert [i.id for i in cf.instances] == [victim_id]
    assert cf.fields == spec["bad_index"] + 1  # trailing criteria after the culprit are gone
    kept = [(i, c.payload) for i, c in enumerate(cf.instances[0].criteria) if c.kind != Kind.WILDCARD]
    assert kept == [(spec["bad_index"], b"")]  # the rest wildcards, the culprit's payload emptied
    culprit = result.culprit
    assert culprit["criterion_index"] == spec["bad_index"] and culprit["field"] == spec["bad_index"] + 1
    assert culprit["instance_id"] == victim_id and culprit["input_instance_index"] == spec["victim"]
    assert culprit["kind"] == "exact"
    assert f"index {spec['bad_index']}, i.e. field {spec['bad_index'] + 1}" in culprit["summary"]
    assert [p["pass"] for p in result.passes][:4] == ["drop instances", "criteria to wildcards",
                                                      "drop trailing criteria", "shorten payloads"]


def test_an_instance_with_more_criteria_than_the_header_declares_is_reduced_by_the_format_passes() -> None:
    cf = parse(cf291_style(ids=[5, 6, 7, 8], fields=21, victim=2, bad_index=20, seed=1))
    for n, inst in enumerate(cf.instances):
        if n != 2:
            inst.criteria = inst.criteria[:20]
    cf.fields = 20  # the header matches the sensor; instance id 7 alone declares 21 criteria
    data = cf.to_bytes()
    result = minimize_on_host(data)
    assert result.passes[0]["pass"] == "drop instances" and len(result.data) <= 100 < len(data)
    assert result.crash.function == "chf_match_criterion"
    assert result.culprit["instance_id"] == 7 and result.culprit["criterion_index"] == 20
    assert "the header declares 20 fields, the instance 21" in result.culprit["summary"]


def test_an_unparsable_crashing_file_is_reduced_byte_by_byte() -> None:
    good = cf291_style(ids=[1, 2, 3], fields=20, victim=-1, bad_index=0, seed=3)
    cut = truncated(good, random.Random(5))  # body_len still declares the whole body: read past the end
    result = minimize_on_host(cut)
    assert [p["pass"] for p in result.passes] == ["byte ddmin"]
    assert len(result.data) < len(cut)
    assert result.crash.function == "chf_crc32" and result.crash.region == "guard page after the content buffer"
    assert "body_len" in result.culprit["summary"]


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.sys"
    proc = run_harness("minimize", missing, "-o", tmp_path / "out.sys")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"harness: error: {missing}: no such file"]
    nowhere = tmp_path / "no-dir" / "out.sys"
    proc = run_harness("minimize", CONTENT_FIXTURES / "cf291-field21.sys", "-o", nowhere)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert f"{nowhere}: give an output file in an existing directory" in proc.stderr


@pytest.mark.vm
@pytest.mark.family("linux")
def test_minimize_finds_the_cf291_culprit_in_at_most_three_vm_boots(tmp_path: Path) -> None:
    src = CONTENT_FIXTURES / "cf291-field21.sys"
    out = tmp_path / "min.sys"
    proc = run_harness("minimize", src, "-o", out, "--json", "--artifacts", tmp_path / "artifacts", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["output_bytes"] == len(out.read_bytes()) < report["input_bytes"] == len(src.read_bytes())
    assert 1 <= report["vm_boots"] <= 3, proc.stderr[-2000:]
    assert report["culprit"]["criterion_index"] == 20 and report["culprit"]["field"] == 21
    assert report["function"] == "chf_match_criterion" and "chf_match_criterion" in report["title"]
    assert "drop instances: 1449 ->" in proc.stderr
