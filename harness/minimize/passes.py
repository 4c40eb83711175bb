"""Reduction passes: format-aware ones over a parsed channel file, then byte-level ddmin.

Every candidate a format pass builds is written with `ChannelFile.to_bytes()`, so it stays
well-formed (instance count, body_len and CRC rewritten, as `harness content fix-crc` does).
A pass takes the current model and `interesting(bytes) -> bool` and returns a model that is
still interesting; it never returns a candidate the predicate rejected.
"""

from __future__ import annotations

import copy
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from ..content.format import HEADER_SIZE, ChannelFile, Criterion, Instance, Kind, scan
from .ddmin import ddmin

Interesting = Callable[[bytes], bool]


@dataclass(frozen=True)
class FormatPass:
    name: str
    run: Callable[[ChannelFile, Interesting], ChannelFile]


def drop_instances(cf: ChannelFile, interesting: Interesting) -> ChannelFile:
    """ddmin over the instances: the fewest instances that still crash."""
    def build(keep: list[int]) -> ChannelFile:
        out = copy.deepcopy(cf)
        out.instances = [cf.instances[i] for i in keep]
        return out

    keep = ddmin(list(range(len(cf.instances))), lambda k: interesting(build(k).to_bytes()))
    return build(keep)


def wildcard_criteria(cf: ChannelFile, interesting: Interesting) -> ChannelFile:
    """ddmin over every non-wildcard criterion of every instance: the rest become wildcards."""
    pairs = [(n, i) for n, inst in enumerate(cf.instances) for i, c in enumerate(inst.criteria)
             if c.kind != Kind.WILDCARD]

    def build(keep: list[tuple[int, int]]) -> ChannelFile:
        kept = set(keep)
        out = copy.deepcopy(cf)
        for n, i in pairs:
            if (n, i) not in kept:
                out.instances[n].criteria[i] = Criterion(Kind.WILDCARD)
        return out

    keep = ddmin(pairs, lambda k: interesting(build(k).to_bytes()))
    return build(keep)


def drop_trailing_criteria(cf: ChannelFile, interesting: Interesting) -> ChannelFile:
    """The smallest field count (every instance cut to it) that still crashes, by bisection:
    a crash at field k needs every count above k, so the answer is the edge of one interval."""
    def build(fields: int) -> ChannelFile:
        out = copy.deepcopy(cf)
        out.fields = min(cf.fields, fields)  # a header that declared fewer fields keeps its count
        for inst in out.instances:
            inst.criteria = inst.criteria[:fields]
        return out

    low, high = 0, max([cf.fields, *(len(i.criteria) for i in cf.instances)])  # `high` crashes
    if high == 0 or not interesting(build(high - 1).to_bytes()):
        return cf  # the last field is needed (the CF291 shape): one run instead of a bisection
    high -= 1
    while high - low > 1:
        mid = (low + high) // 2
        if interesting(build(mid).to_bytes()):
            high = mid
        else:
            low = mid
    return build(high)


def shorten_payloads(cf: ChannelFile, interesting: Interesting) -> ChannelFile:
    """Each non-wildcard payload cut to its shortest crashing prefix (empty tried first)."""
    out = copy.deepcopy(cf)
    for inst in out.instances:
        for i, crit in enumerate(inst.criteria):
            if crit.kind == Kind.WILDCARD or not crit.payload or crit.declared_len is not None:
                continue
            inst.criteria[i] = Criterion(crit.kind, crit.payload[:_shortest(out, inst, i, interesting)])
    return out


def _shortest(cf: ChannelFile, inst: Instance, index: int, interesting: Interesting) -> int:
    """The shortest prefix length of criterion `index`'s payload that still crashes, by
    bisection (the full payload crashes); `cf` holds `inst` and is restored on return."""
    crit = inst.criteria[index]

    def crashes_with(n: int) -> bool:
        inst.criteria[index] = Criterion(crit.kind, crit.payload[:n])
        try:
            return interesting(cf.to_bytes())
        finally:
            inst.criteria[index] = crit

    low, high = -1, len(crit.payload)  # `high` crashes; `low` does not (-1: nothing tried yet)
    while high - low > 1:
        mid = 0 if low < 0 else (low + high) // 2
        if crashes_with(mid):
            high = mid
        else:
            low = mid
    return high


FORMAT_PASSES: tuple[FormatPass, ...] = (
    FormatPass("drop instances", drop_instances),
    FormatPass("criteria to wildcards", wildcard_criteria),
    FormatPass("drop trailing criteria", drop_trailing_criteria),
    FormatPass("shorten payloads", shorten_payloads),
)


def parsable(data: bytes) -> ChannelFile | None:
    """The file as a model the format passes can rewrite, else None.

    A well-formed file; or one whose only fault is an instance declaring a criteria count
    other than the header's field count (the vulnerable build trusts each instance's count,
    so such a file can crash the same way), read with each instance's own count.  The model
    is accepted only if writing it back gives the same bytes.
    """
    result = scan(data)
    if result.header is None:
        return None
    h = result.header
    if result.problems:
        if any(p.code != "criteria-count" for p in result.problems):
            return None
        instances = _walk_own_counts(data, h.instances)
        if instances is None:
            return None
    else:
        instances = result.instances
    cf = ChannelFile(channel=h.channel, template=h.template, fields=h.fields, instances=instances,
                     version=h.version)
    return cf if cf.to_bytes() == data else None


def _walk_own_counts(data: bytes, count: int) -> list[Instance] | None:
    """The instances read with each one's own criteria count; None at anything else amiss."""
    off, end = HEADER_SIZE, len(data)
    instances = []
    for _ in range(count):
        if end - off < 5:
            return None
        inst_id, criteria = struct.unpack_from("<IB", data, off)
        inst = Instance(inst_id, [], offset=off)
        off += 5
        for _ in range(criteria):
            if end - off < 3:
                return None
            kind, length = struct.unpack_from("<BH", data, off)
            if kind > Kind.PREFIX or (kind == Kind.WILDCARD and length) or end - off - 3 < length:
                return None
            inst.criteria.append(Criterion(kind, data[off + 3:off + 3 + length], offset=off))
            off += 3 + length
        instances.append(inst)
    return instances if off == end else None


class ByteFixup:
    """Rebuilds the header around a reduced body the way the original's header related to
    its body: body_len rewritten when it matched the body, the CRC when it matched.  A file
    whose header lied keeps its lie, since the lie may be the crash."""

    def __init__(self, original: bytes) -> None:
        self.header = original[:HEADER_SIZE]
        self.active = len(original) >= HEADER_SIZE
        body = original[HEADER_SIZE:]
        if self.active:
            body_len, crc = struct.unpack_from("<II", original, 16)
            self.fix_len = body_len == len(body)
            self.fix_crc = crc == zlib.crc32(body[:body_len])
        self.body = body if self.active else original

    def build(self, body: bytes) -> bytes:
        if not self.active:
            return body
        header = bytearray(self.header)
        if self.fix_len:
            header[16:20] = struct.pack("<I", len(body))
        if self.fix_crc:
            body_len = struct.unpack_from("<I", header, 16)[0]
            header[20:24] = struct.pack("<I", zlib.crc32(body[:body_len]))
        return bytes(header) + body


def byte_ddmin(data: bytes, interesting: Interesting) -> bytes:
    """ddmin over the body bytes (the whole file when it has no header), header fixed up."""
    fixup = ByteFixup(data)
    kept = ddmin(list(fixup.body), lambda body: interesting(fixup.build(bytes(body))))
    return fixup.build(bytes(kept))
