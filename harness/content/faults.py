"""The fault catalogue: named, seeded, deterministic mutations of a channel file.

Each fault model takes a well-formed file (20 fields, or 21 with field 21
wildcard, as the files that shipped before 2024-07-19) and a seed, and always
gives the same bytes for the same input and seed.  `expected` states what the
spec says each sensor build does with the result; `random` has no fixed
expectation, so its expectation is the spec oracle's prediction for the bytes.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from .format import HEADER_SIZE, MAGIC, SENSOR_INPUTS, ChannelFile, Criterion, Kind, parse, with_crc_fixed
from .oracle import Outcome, predict

Mutation = Callable[[bytes, random.Random], bytes]


class FaultError(ValueError):
    """A fault model cannot be applied to the given file."""


@dataclass(frozen=True)
class FaultModel:
    name: str
    description: str
    expected: dict[str, Outcome] | None  # None: decided per output by the oracle
    mutate: Mutation

    def apply(self, data: bytes, seed: int = 0) -> bytes:
        return self.mutate(data, random.Random(f"{self.name}:{seed}"))

    def expected_for(self, output: bytes) -> dict[str, Outcome]:
        if self.expected is not None:
            return dict(self.expected)
        return {build: p.outcome for build, p in predict(output).items()}


def _base(data: bytes) -> ChannelFile:
    cf = parse(data)
    if cf.fields not in (SENSOR_INPUTS, SENSOR_INPUTS + 1) or not cf.instances:
        raise FaultError(f"fault models need a file with 20 or 21 fields and at least one "
                         f"instance; this one has {cf.fields} fields, {len(cf.instances)} instances")
    return cf


def _with_field21(cf: ChannelFile) -> ChannelFile:
    """The template grows to 21 fields; every instance gets a wildcard field 21."""
    if cf.fields == SENSOR_INPUTS:
        cf.fields = SENSOR_INPUTS + 1
        for inst in cf.instances:
            inst.criteria.append(Criterion(Kind.WILDCARD))
    return cf


def _payload(rng: random.Random) -> bytes:
    pipes = [b"\\Device\\NamedPipe\\", b"\\\\.\\pipe\\mojo.", b"\\\\.\\pipe\\msagent_",
             b"\\\\.\\pipe\\postex_", b"\\\\.\\pipe\\status_"]
    return rng.choice(pipes) + bytes(rng.choice(b"0123456789abcdef") for _ in range(rng.randint(2, 12)))


def cf291_field21(data: bytes, rng: random.Random) -> bytes:
    """Channel File 291: one instance uses a non-wildcard criterion on field 21."""
    cf = _with_field21(_base(data))
    victim = rng.randrange(len(cf.instances))
    cf.instances[victim].criteria[SENSOR_INPUTS] = Criterion(rng.choice([Kind.EXACT, Kind.PREFIX]), _payload(rng))
    return cf.to_bytes()


def cf291_wildcard(data: bytes, rng: random.Random) -> bytes:
    """21 fields, field 21 a wildcard everywhere: the files that shipped safely before."""
    del rng
    return _with_field21(_base(data)).to_bytes()


def zeroed(data: bytes, rng: random.Random) -> bytes:
    """All zero bytes, same size (a file the update agent pre-allocated but never filled)."""
    del rng
    return bytes(len(data))


def truncated(data: bytes, rng: random.Random) -> bytes:
    """Cut inside the body; the header still declares the full body_len."""
    _base(data)
    return data[:rng.randrange(HEADER_SIZE + 1, len(data))]


def body_len_overflow(data: bytes, rng: random.Random) -> bytes:
    """body_len claims more bytes than the file holds (CRC left as it was)."""
    _base(data)
    body_len = struct.unpack_from("<I", data, 16)[0] + rng.randint(1, 1 << 16)
    return data[:16] + struct.pack("<I", body_len) + data[20:]


def payload_len_overflow(data: bytes, rng: random.Random) -> bytes:
    """A criterion's len runs past the end of the body; the CRC is valid."""
    cf = _base(data)
    body = cf.body()
    candidates = []
    offset = HEADER_SIZE
    for inst in cf.instances:
        offset += 5
        for crit in inst.criteria:
            left = HEADER_SIZE + len(body) - (offset + 3)
            if crit.kind != Kind.WILDCARD and left < 0xFFFF:
                candidates.append((crit, left))
            offset += 3 + crit.length
    if not candidates:
        raise FaultError("payload-len-overflow needs a non-wildcard criterion within 64 KiB of the end")
    crit, left = rng.choice(candidates)
    crit.declared_len = rng.randint(left + 1, 0xFFFF)
    return cf.to_bytes()


def bad_magic(data: bytes, rng: random.Random) -> bytes:
    _base(data)
    magic = MAGIC
    while magic == MAGIC:
        magic = bytes(rng.randrange(256) for _ in range(4))
    return magic + data[4:]


def bad_version(data: bytes, rng: random.Random) -> bytes:
    _base(data)
    return data[:4] + struct.pack("<H", rng.randint(2, 0xFFFF)) + data[6:]


def bad_crc(data: bytes, rng: random.Random) -> bytes:
    _base(data)
    crc = struct.unpack_from("<I", data, 20)[0] ^ rng.randint(1, 0xFFFFFFFF)
    return data[:20] + struct.pack("<I", crc) + data[24:]


def bit_flip(data: bytes, rng: random.Random) -> bytes:
    """1 to 3 bits flipped in the body in transit, CRC unchanged, so the CRC catches it."""
    _base(data)
    crc = struct.unpack_from("<I", data, 20)[0]
    while True:
        out = bytearray(data)
        for bit in rng.sample(range(HEADER_SIZE * 8, len(data) * 8), rng.randint(1, 3)):
            out[bit // 8] ^= 1 << (bit % 8)
        if zlib.crc32(out[HEADER_SIZE:]) != crc:  # a flip CRC-32 misses is redrawn
            return bytes(out)


def random_bytes(data: bytes, rng: random.Random) -> bytes:
    """Structure-aware garbage: the file's header with random fields and body, CRC often fixed."""
    _base(data)
    out = bytearray(data[:HEADER_SIZE])
    for offset, width in rng.sample([(10, 2), (12, 4), (16, 4)], rng.randint(1, 3)):
        out[offset:offset + width] = bytes(rng.randrange(256) for _ in range(width))
    body = bytearray(data[HEADER_SIZE:])
    for _ in range(rng.randint(1, 8)):
        if body:
            body[rng.randrange(len(body))] = rng.randrange(256)
    if rng.random() < 0.3:
        body = body[:rng.randrange(len(body) + 1)]
    out += body
    if rng.random() < 0.3:
        out[16:20] = struct.pack("<I", len(body))
    return with_crc_fixed(bytes(out)) if rng.random() < 0.8 else bytes(out)


_CRASH_REJECT: dict[str, Outcome] = {"vulnerable": "crash", "hardened": "rejected"}
_BOTH_REJECT: dict[str, Outcome] = {"vulnerable": "rejected", "hardened": "rejected"}

CATALOGUE: dict[str, FaultModel] = {m.name: m for m in [
    FaultModel("cf291-field21", "21 fields; one instance has a non-wildcard criterion on field 21 "
               "(the 2024-07-19 Channel File 291)", _CRASH_REJECT, cf291_field21),
    FaultModel("cf291-wildcard", "21 fields; field 21 is a wildcard in every instance "
               "(the IPC files that shipped before)", {"vulnerable": "loaded", "hardened": "rejected"},
               cf291_wildcard),
    FaultModel("zeroed", "every byte zero, same size", _BOTH_REJECT, zeroed),
    FaultModel("truncated", "cut inside the body; body_len still declares the whole body",
               _CRASH_REJECT, truncated),
    FaultModel("body-len-overflow", "body_len larger than the file", _CRASH_REJECT, body_len_overflow),
    FaultModel("payload-len-overflow", "a criterion len reaching past the end of the body, CRC valid",
               _CRASH_REJECT, payload_len_overflow),
    FaultModel("bad-magic", "magic is not CHF1", _BOTH_REJECT, bad_magic),
    FaultModel("bad-version", "version is not 1", _BOTH_REJECT, bad_version),
    FaultModel("bad-crc", "crc32 does not match the body", _BOTH_REJECT, bad_crc),
    FaultModel("bit-flip", "1-3 bits flipped in the body, CRC unchanged", _BOTH_REJECT, bit_flip),
    FaultModel("random", "random header fields and body bytes, CRC usually fixed; "
               "expectation from the spec oracle", None, random_bytes),
]}


def fault(name: str) -> FaultModel:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise FaultError(f"unknown fault model {name!r}; known: {', '.join(CATALOGUE)}") from None
