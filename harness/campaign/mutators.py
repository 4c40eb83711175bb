"""Byte-level mutators: what a campaign can do to a file whose format it does not know.

A vendor's driver reads its own content format, so only format-blind mutations apply (the
kind AFL's havoc stage and libFuzzer's default mutators start with): flip bits, set bytes to
interesting values, truncate, insert bytes, splice with another file. Each takes the input,
a second file for `bytes-splice`, and a seeded `random.Random`; the same arguments give the
same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Callable

ByteMutator = Callable[[bytes, bytes, random.Random], bytes]
MAX_INSERT = 64
_INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF)  # boundary values of a signed/unsigned byte


def bit_flips(data: bytes, other: bytes, rng: random.Random) -> bytes:
    """1 to 8 random bits flipped anywhere (an empty input stays empty)."""
    del other
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        bit = rng.randrange(len(out) * 8)
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def byte_sets(data: bytes, other: bytes, rng: random.Random) -> bytes:
    """1 to 4 bytes set to a boundary value or a random one; a 16/32-bit field maxed out
    (0xFF.. at a random offset) half of the time, where lengths and counts break parsers."""
    del other
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out))
        if rng.random() < 0.5:
            width = min(rng.choice((2, 4)), len(out) - at)
            out[at:at + width] = b"\xff" * width
        else:
            out[at] = rng.choice(_INTERESTING) if rng.random() < 0.6 else rng.randrange(256)
    return bytes(out)


def truncation(data: bytes, other: bytes, rng: random.Random) -> bytes:
    """The file cut short at a random length (0 included: the empty file)."""
    del other
    return data[:rng.randrange(len(data))] if data else data


def insertion(data: bytes, other: bytes, rng: random.Random) -> bytes:
    """1 to MAX_INSERT random or repeated bytes inserted at a random offset."""
    del other
    at = rng.randrange(len(data) + 1)
    count = rng.randint(1, MAX_INSERT)
    chunk = bytes([rng.randrange(256)]) * count if rng.random() < 0.5 else rng.randbytes(count)
    return data[:at] + chunk + data[at:]


def splice(data: bytes, other: bytes, rng: random.Random) -> bytes:
    """The head of this file joined to the tail of another (AFL's splice)."""
    if not data and not other:
        return data
    head = data[:rng.randrange(len(data) + 1)]
    tail = other[rng.randrange(len(other) + 1):] if other else b""
    return head + tail


BYTE_MUTATORS: dict[str, ByteMutator] = {
    "bytes-flip": bit_flips,
    "bytes-set": byte_sets,
    "bytes-truncate": truncation,
    "bytes-insert": insertion,
    "bytes-splice": splice,
}


def mutate_bytes(name: str, data: bytes, other: bytes, seed: str) -> bytes:
    """Apply the byte mutator `name` with a generator seeded from `seed` (a string: stable
    across Python runs, unlike hash())."""
    return BYTE_MUTATORS[name](data, other, random.Random(f"{name}:{seed}"))
