"""Seeded generation of well-formed channel files (`harness content new`)."""

from __future__ import annotations

import random

from .format import SENSOR_INPUTS, ChannelFile, Criterion, Instance, Kind

_PIPE_PREFIXES = (b"\\Device\\NamedPipe\\", b"\\\\.\\pipe\\")
_PIPE_NAMES = (b"mojo.", b"msagent_", b"postex_", b"status_", b"wkssvc", b"lsass", b"spoolss")


def _payload(rng: random.Random) -> bytes:
    tail = bytes(rng.choice(b"0123456789abcdef") for _ in range(rng.randint(0, 8)))
    return rng.choice(_PIPE_PREFIXES) + rng.choice(_PIPE_NAMES) + tail


def _criterion(rng: random.Random) -> Criterion:
    roll = rng.random()
    if roll < 0.6:
        return Criterion(Kind.WILDCARD)
    return Criterion(Kind.EXACT if roll < 0.85 else Kind.PREFIX, _payload(rng))


def new_channel_file(fields: int = SENSOR_INPUTS, instances: int = 4, seed: int = 0,
                     channel: int = 291) -> ChannelFile:
    """A well-formed file with `instances` template instances of `fields` criteria.

    Criteria the sensor has inputs for (the first 20) are a seeded mix of
    wildcard, exact and prefix matches on named-pipe names; criteria beyond
    them are wildcards, as in every IPC file that shipped before 2024-07-19.
    Use `harness content mutate --fault cf291-field21` for the one that did not.
    """
    if not 1 <= fields <= 255:
        raise ValueError(f"--fields must be 1..255 (an instance holds at most 255 criteria), got {fields}")
    if not 0 <= instances <= 100_000:
        raise ValueError(f"--instances must be 0..100000, got {instances}")
    rng = random.Random(f"new:{seed}")
    first_id = rng.randrange(1, 1 << 20)
    return ChannelFile(channel=channel, fields=fields, instances=[
        Instance(first_id + n, [
            _criterion(rng) if i < SENSOR_INPUTS else Criterion(Kind.WILDCARD) for i in range(fields)
        ]) for n in range(instances)
    ])
