"""Every row of the spec's outcome table (shared/spec/channel-file-v1.md), on both
sensor builds, through the C interpreter's host build and through
`harness content check --json`.

The files are written here straight from the spec's layout with struct, not
with the toolkit, so a toolkit bug cannot hide an interpreter bug."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from harness.content.sensor import check_file

from .conftest import run_harness


def criterion(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack("<BH", kind, len(payload)) + payload


def instance(inst_id: int, criteria: list[bytes]) -> bytes:
    return struct.pack("<IB", inst_id, len(criteria)) + b"".join(criteria)


def channel_file(fields: int, instances: list[bytes], *, magic: bytes = b"CHF1", version: int = 1,
                 body_len: int | None = None, crc: int | None = None) -> bytes:
    body = b"".join(instances)
    return struct.pack("<4sHHHHIII", magic, version, 291, 1, fields, len(instances),
                       len(body) if body_len is None else body_len,
                       zlib.crc32(body) if crc is None else crc) + body


def rule(inst_id: int, fields: int, field21: bytes | None = None) -> bytes:
    """An instance: exact match on field 1, prefix on field 5, wildcards elsewhere."""
    crits = [criterion(0)] * fields
    crits[0] = criterion(1, b"\\Device\\NamedPipe\\harness-synthetic")
    crits[4] = criterion(2, b"S-1-5")
    if fields > 20:
        crits[20] = criterion(1, field21) if field21 else criterion(0)
    return instance(inst_id, crits)


GOOD = channel_file(20, [rule(1, 20), rule(2, 20)])
WILDCARD_21 = channel_file(21, [rule(1, 21), rule(2, 21)])
CF291 = channel_file(21, [rule(1, 21), rule(2, 21), rule(3, 21, field21=b"\\\\.\\pipe\\x")])
_good_body = GOOD[24:]
# The last criterion of the last instance claims more payload than the body holds.
_short = channel_file(20, [rule(1, 20), instance(2, [criterion(0)] * 19 + [struct.pack("<BH", 1, 500) + b"abc"])])

ROWS: list[tuple[str, bytes, str, str]] = [
    ("well-formed, 20 fields", GOOD, "loaded", "loaded"),
    ("21 fields, field 21 wildcard everywhere", WILDCARD_21, "loaded", "rejected"),
    ("21 fields, one instance non-wildcard on field 21", CF291, "crash", "rejected"),
    ("all zero, header size", bytes(24), "rejected", "rejected"),
    ("all zero, 4 KiB", bytes(4096), "rejected", "rejected"),
    ("all zero, same size as a good file", bytes(len(GOOD)), "rejected", "rejected"),
    ("all zero, shorter than a header", bytes(7), "rejected", "rejected"),
    ("bad magic", b"CHF2" + GOOD[4:], "rejected", "rejected"),
    ("bad version", channel_file(20, [rule(1, 20)], version=2), "rejected", "rejected"),
    ("CRC mismatch", channel_file(20, [rule(1, 20)], crc=0x12345678), "rejected", "rejected"),
    ("body_len larger than the file", channel_file(20, [rule(1, 20)], body_len=len(rule(1, 20)) + 1),
     "crash", "rejected"),
    ("body_len far larger than the file", channel_file(20, [rule(1, 20)], body_len=0xFFFFFFF0),
     "crash", "rejected"),
    ("criterion len past the end of the body, CRC valid", _short, "crash", "rejected"),
    ("empty file", b"", "rejected", "rejected"),
]


@pytest.fixture(params=ROWS, ids=[row[0] for row in ROWS])
def row(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str, str]:
    _name, data, vulnerable, hardened = request.param
    path = tmp_path / "C-00000291-00000000-00000001.sys"
    path.write_bytes(data)
    return path, vulnerable, hardened


def test_the_c_interpreter_gives_the_spec_outcome_on_both_builds(row: tuple[Path, str, str]) -> None:
    path, vulnerable, hardened = row
    assert check_file(path, "vulnerable").outcome == vulnerable
    assert check_file(path, "hardened").outcome == hardened


def test_harness_content_check_json_gives_the_spec_outcome(row: tuple[Path, str, str]) -> None:
    path, vulnerable, hardened = row
    for sensor, expected in (("vulnerable", vulnerable), ("hardened", hardened)):
        proc = run_harness("content", "check", path, "--sensor", sensor, "--json")
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["outcome"] == expected
        assert report["reason"]
        assert report["spec_expects"]["outcome"] == expected


def test_the_cf291_crash_is_a_read_of_the_poisoned_21st_input(tmp_path: Path) -> None:
    path = tmp_path / "cf291.sys"
    path.write_bytes(CF291)
    crash = check_file(path, "vulnerable").crash
    assert crash is not None
    assert crash["stage"] == "evaluate"
    assert crash["region"] == "poisoned input slot"
    assert crash["function"] == "chf_match_criterion"


def test_a_body_len_overflow_faults_on_the_guard_page_while_loading(tmp_path: Path) -> None:
    path = tmp_path / "overflow.sys"
    path.write_bytes(channel_file(20, [rule(1, 20)], body_len=len(rule(1, 20)) + 1))
    crash = check_file(path, "vulnerable").crash
    assert crash is not None
    assert (crash["stage"], crash["region"]) == ("load", "guard page after the content buffer")
    assert crash["buffer_offset"] == len(rule(1, 20)) + 24  # the first byte past the file
    assert crash["function"] == "chf_crc32"  # the CRC is computed over the trusted body_len


def test_a_lying_payload_len_faults_while_compiling_the_pattern(tmp_path: Path) -> None:
    path = tmp_path / "short.sys"
    path.write_bytes(_short)
    crash = check_file(path, "vulnerable").crash
    assert crash is not None
    assert (crash["stage"], crash["function"]) == ("load", "chf_compile_pattern")


def test_the_hardened_build_says_why_it_rejects(tmp_path: Path) -> None:
    cases = {"field-count": WILDCARD_21, "bad-crc": channel_file(20, [rule(1, 20)], crc=1),
             "payload-past-body": _short, "empty-file": b"", "bad-magic": bytes(100),
             "body-len-mismatch": channel_file(20, [rule(1, 20)], body_len=5)}
    for code, data in cases.items():
        path = tmp_path / f"{code}.sys"
        path.write_bytes(data)
        result = check_file(path, "hardened")
        assert (result.outcome, result.reason_code) == ("rejected", code), result.reason
