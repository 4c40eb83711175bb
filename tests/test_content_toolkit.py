"""The Python content toolkit: round trips, where parsing fails, the fault
catalogue, and agreement between the spec oracle and the real C interpreter."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from harness.content.faults import CATALOGUE, FaultError, fault
from harness.content.fixture_set import fixture_set
from harness.content.format import (ChannelFile, ContentFormatError, Criterion, Instance, Kind, file_name,
                                    parse, scan, with_crc_fixed)
from harness.content.generate import new_channel_file
from harness.content.oracle import predict
from harness.content.sensor import check_file
from harness.paths import CONTENT_FIXTURES

GOOD = new_channel_file(fields=20, instances=5, seed=7).to_bytes()


def test_a_file_survives_write_parse_write() -> None:
    cf = ChannelFile(channel=291, fields=3, instances=[
        Instance(10, [Criterion(Kind.EXACT, b"abc"), Criterion(Kind.WILDCARD), Criterion(Kind.PREFIX, b"\\\\.\\")]),
        Instance(11, [Criterion(Kind.WILDCARD)] * 3),
    ])
    data = cf.to_bytes()
    again = parse(data)
    assert again.to_bytes() == data
    assert [c.payload for c in again.instances[0].criteria] == [b"abc", b"", b"\\\\.\\"]


def test_generated_files_are_well_formed_and_deterministic() -> None:
    for seed in range(20):
        data = new_channel_file(fields=21, instances=3, seed=seed).to_bytes()
        assert scan(data).well_formed
        assert data == new_channel_file(fields=21, instances=3, seed=seed).to_bytes()
        assert all(inst.criteria[20].kind == Kind.WILDCARD for inst in parse(data).instances)


@pytest.mark.parametrize("data, code, offset, field", [
    (b"", "empty-file", 0, "file"),
    (b"CHF1\x01\x00", "truncated-header", 6, "header"),
    (b"XXXX" + GOOD[4:], "bad-magic", 0, "header.magic"),
    (GOOD[:4] + b"\x07\x00" + GOOD[6:], "bad-version", 4, "header.version"),
    (GOOD[:-1], "body-len-mismatch", 16, "header.body_len"),
    (GOOD[:20] + b"\0\0\0\0" + GOOD[24:], "bad-crc", 20, "header.crc32"),
])
def test_parse_errors_name_the_offset_and_the_field(data: bytes, code: str, offset: int, field: str) -> None:
    with pytest.raises(ContentFormatError) as caught:
        parse(data, source="C-00000291-00000000-00000001.sys")
    problem = caught.value.problem
    assert (problem.code, problem.offset, problem.field) == (code, offset, field)
    assert str(caught.value).startswith(f"C-00000291-00000000-00000001.sys: offset {offset} ({field}):")


def test_a_lying_payload_len_is_reported_at_its_len_field() -> None:
    cf = ChannelFile(fields=2, instances=[Instance(1, [Criterion(Kind.EXACT, b"ab"), Criterion(Kind.WILDCARD)])])
    cf.instances[0].criteria[0].declared_len = 40
    problems = scan(cf.to_bytes()).problems
    assert [(p.code, p.offset, p.field) for p in problems] == [
        ("payload-past-body", 24 + 5 + 1, "instance[0].criterion[0].len")]


def test_each_fault_model_is_deterministic_per_seed() -> None:
    for model in CATALOGUE.values():
        assert model.apply(GOOD, seed=3) == model.apply(GOOD, seed=3), model.name
        outputs = {model.apply(GOOD, seed=s) for s in range(6)}
        if model.name not in ("zeroed", "cf291-wildcard"):  # these have one possible output
            assert len(outputs) > 1, model.name


def test_fault_models_refuse_a_file_they_cannot_mutate() -> None:
    with pytest.raises(ContentFormatError):
        fault("cf291-field21").apply(b"not a channel file")
    with pytest.raises(FaultError):
        fault("cf291-field21").apply(new_channel_file(fields=5, instances=2).to_bytes())
    with pytest.raises(FaultError, match="unknown fault model"):
        fault("no-such-fault")


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_each_fault_model_does_what_it_says_on_the_real_interpreter(name: str, tmp_path: Path) -> None:
    model = CATALOGUE[name]
    for seed in range(4):
        data = model.apply(GOOD, seed=seed)
        path = tmp_path / f"{name}-{seed}.sys"
        path.write_bytes(data)
        for build, outcome in model.expected_for(data).items():
            assert check_file(path, build).outcome == outcome, (name, seed, build)


def test_the_spec_oracle_and_the_c_interpreter_agree_on_random_mutations(tmp_path: Path) -> None:
    """Differential check: 150 random corruptions of good files, both builds, reasons included."""
    rng = random.Random(2024_07_19)
    for n in range(150):
        base = bytearray(new_channel_file(fields=rng.choice([20, 21]), instances=rng.randint(1, 4),
                                          seed=n).to_bytes())
        for _ in range(rng.randint(1, 4)):
            base[rng.randrange(len(base))] = rng.randrange(256)
        data = with_crc_fixed(bytes(base)) if rng.random() < 0.7 else bytes(base)
        path = tmp_path / f"m{n}.sys"
        path.write_bytes(data)
        for build, expected in predict(data).items():
            actual = check_file(path, build)
            assert actual.outcome == expected.outcome, (n, build, expected, actual.reason)
            if build == "hardened" and expected.outcome == "rejected":
                assert actual.reason_code == expected.reason_code, (n, expected, actual.reason)


def test_the_checked_in_fixtures_are_what_the_generator_makes() -> None:
    for fx in fixture_set():
        assert (CONTENT_FIXTURES / fx.path).read_bytes() == fx.data, f"regenerate: harness content fixtures ({fx.path})"
    table = yaml.safe_load((CONTENT_FIXTURES / "expected.yaml").read_text())["fixtures"]
    assert [row["file"] for row in table] == [fx.path for fx in fixture_set()]


def test_every_fixture_gives_its_tabled_outcome_on_the_real_interpreter() -> None:
    table = yaml.safe_load((CONTENT_FIXTURES / "expected.yaml").read_text())["fixtures"]
    for row in table:
        for build in ("vulnerable", "hardened"):
            assert check_file(CONTENT_FIXTURES / row["file"], build).outcome == row[build], (row["file"], build)


def test_the_saved_reproducer_crashes_the_vulnerable_build_on_field_21() -> None:
    repro = CONTENT_FIXTURES / "reproducers" / file_name(291, 0, 32)
    crash = check_file(repro, "vulnerable").crash
    assert crash is not None and crash["function"] == "chf_match_criterion"
    assert check_file(repro, "hardened").reason_code == "field-count"
