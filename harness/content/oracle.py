"""What the spec says each sensor build does with a file: the expected outcome.

This is the contract (shared/spec/channel-file-v1.md) written as code, used to
state expectations (fault catalogue, fixture table, ``inspect``) and to
cross-check the C interpreter in tests.  It never stands in for the C code:
``harness content check`` always runs the real interpreter.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Literal

from .format import HEADER, HEADER_SIZE, MAGIC, SENSOR_INPUTS, VERSION, Kind, scan

Outcome = Literal["loaded", "rejected", "crash"]
BUILDS = ("vulnerable", "hardened")
# Rejections the hardened build decides from the header, before the field count.
_HEADER_CODES = {"empty-file", "truncated-header", "bad-magic", "bad-version",
                 "body-len-mismatch", "bad-crc"}


@dataclass(frozen=True)
class Prediction:
    outcome: Outcome
    reason_code: str | None  # rejection reason, or where the crash happens
    detail: str

    def to_json(self) -> dict[str, str | None]:
        return {"outcome": self.outcome, "reason_code": self.reason_code, "detail": self.detail}


def predict_hardened(data: bytes) -> Prediction:
    result = scan(data)
    first = result.problems[0] if result.problems else None
    if first and first.code in _HEADER_CODES:
        return Prediction("rejected", first.code, first.message)
    assert result.header is not None
    if result.header.fields != SENSOR_INPUTS:
        return Prediction("rejected", "field-count",
                          f"template declares {result.header.fields} input fields, "
                          f"sensor supplies {SENSOR_INPUTS}")
    if first:
        return Prediction("rejected", first.code, first.message)
    return Prediction("loaded", None, f"{len(result.instances)} instances loaded")


def predict_vulnerable(data: bytes) -> Prediction:
    """Follow the vulnerable build's reads over a buffer that ends at a guard page."""
    size = len(data)
    if size == 0:
        return Prediction("rejected", "empty-file", "empty file")
    if size < HEADER_SIZE:
        return Prediction("rejected", "truncated-header", f"truncated header: {size} bytes")
    magic, version, _channel, _template, _fields, instances, body_len, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        return Prediction("rejected", "bad-magic", f"bad magic {magic!r}")
    if version != VERSION:
        return Prediction("rejected", "bad-version", f"bad version {version}")
    if HEADER_SIZE + body_len > size:
        return Prediction("crash", "crc-read-past-buffer",
                          f"body_len {body_len} trusted: the CRC reads past the "
                          f"{size - HEADER_SIZE}-byte body into the guard page")
    if zlib.crc32(data[HEADER_SIZE:HEADER_SIZE + body_len]) != crc:
        return Prediction("rejected", "bad-crc", "crc mismatch")
    off = HEADER_SIZE
    loaded: list[list[int]] = []  # kinds per instance
    for n in range(instances):
        if size - off < 5:
            return Prediction("crash", "instance-read-past-buffer",
                              f"instance {n} header at offset {off} read past the buffer")
        count = data[off + 4]
        off += 5
        kinds: list[int] = []
        for c in range(count):
            if size - off < 3:
                return Prediction("crash", "criterion-read-past-buffer",
                                  f"instance {n} criterion {c} at offset {off} read past the buffer")
            kind, length = struct.unpack_from("<BH", data, off)
            off += 3
            if size - off < length:
                return Prediction("crash", "payload-read-past-buffer",
                                  f"instance {n} criterion {c}: payload len {length} "
                                  f"read past the buffer at offset {off}")
            off += length
            kinds.append(kind)
        loaded.append(kinds)
    for n, kinds in enumerate(loaded):
        for i, kind in enumerate(kinds):
            if kind != Kind.WILDCARD and i >= SENSOR_INPUTS:
                return Prediction("crash", "input-slot-out-of-bounds",
                                  f"instance {n} criterion {i} (field {i + 1}) is not a wildcard: "
                                  f"input {i + 1} is read from the poisoned guard slot")
    return Prediction("loaded", None, f"{len(loaded)} instances loaded")


def predict(data: bytes) -> dict[str, Prediction]:
    """Expected outcome of `data` on each sensor build."""
    return {"vulnerable": predict_vulnerable(data), "hardened": predict_hardened(data)}
