"""Channel file format v1: read, write and validate (shared/spec/channel-file-v1.md).

One scanner walks a file's bytes and never raises: it returns the header, the
instances it could parse and every problem it met, each with the file offset
and the field.  Strict parsing, validation, ``inspect`` and the outcome oracle
are views of that one walk, so they cannot disagree about where a file breaks.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

MAGIC = b"CHF1"
VERSION = 1
HEADER_SIZE = 24
HEADER = struct.Struct("<4sHHHHIII")
SENSOR_INPUTS = 20  # input values the sensor supplies per named-pipe event
TEMPLATE_NAMED_PIPE = 1
MAX_FILE_SIZE = 16 * 1024 * 1024  # largest channel file the harness accepts
MAX_PAYLOAD = 0xFFFF
FILE_NAME = re.compile(r"^C-(\d{8})-(\d{8})-(\d{8})\.sys$")


class Kind(IntEnum):
    WILDCARD = 0
    EXACT = 1
    PREFIX = 2


class ContentFormatError(ValueError):
    """A channel file breaks the format; says where (offset) and what (field)."""

    def __init__(self, problem: Problem, source: str = "<bytes>") -> None:
        self.problem = problem
        self.source = source
        super().__init__(f"{source}: {problem}")


@dataclass(frozen=True)
class Problem:
    """One way a file breaks the spec; `code` matches the C interpreter's reason names."""

    code: str
    offset: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"offset {self.offset} ({self.field}): {self.message} [{self.code}]"


@dataclass
class Criterion:
    kind: int
    payload: bytes = b""
    declared_len: int | None = None  # the len field when it differs from the payload read
    offset: int = 0

    @property
    def length(self) -> int:
        return len(self.payload) if self.declared_len is None else self.declared_len


@dataclass
class Instance:
    id: int
    criteria: list[Criterion] = field(default_factory=list)
    declared_criteria: int | None = None
    offset: int = 0


@dataclass
class Header:
    magic: bytes = MAGIC
    version: int = VERSION
    channel: int = 291
    template: int = TEMPLATE_NAMED_PIPE
    fields: int = SENSOR_INPUTS
    instances: int = 0
    body_len: int = 0
    crc32: int = 0

    def pack(self) -> bytes:
        return HEADER.pack(
            self.magic, self.version, self.channel, self.template, self.fields,
            self.instances, self.body_len, self.crc32,
        )


@dataclass
class ChannelFile:
    """A channel file as data.  `to_bytes()` computes instances, body_len and crc32."""

    channel: int = 291
    template: int = TEMPLATE_NAMED_PIPE
    fields: int = SENSOR_INPUTS
    instances: list[Instance] = field(default_factory=list)
    version: int = VERSION

    def body(self) -> bytes:
        out = bytearray()
        for inst in self.instances:
            out += struct.pack("<IB", inst.id, len(inst.criteria))
            for crit in inst.criteria:
                out += struct.pack("<BH", crit.kind, crit.length)
                out += crit.payload
        return bytes(out)

    def to_bytes(self) -> bytes:
        body = self.body()
        header = Header(
            version=self.version, channel=self.channel, template=self.template,
            fields=self.fields, instances=len(self.instances), body_len=len(body),
            crc32=zlib.crc32(body),
        )
        return header.pack() + body


@dataclass
class Scan:
    """Everything one walk over a file's bytes found."""

    size: int
    header: Header | None
    instances: list[Instance]
    problems: list[Problem]
    crc_actual: int | None = None

    @property
    def well_formed(self) -> bool:
        return not self.problems


def scan(data: bytes) -> Scan:
    """Walk `data` as a channel file, recording every problem; never raises."""
    size = len(data)
    problems: list[Problem] = []
    if size == 0:
        return Scan(0, None, [], [Problem("empty-file", 0, "file", "empty file")])
    if size < HEADER_SIZE:
        return Scan(size, None, [], [Problem(
            "truncated-header", size, "header",
            f"truncated header: {size} of {HEADER_SIZE} bytes")])
    header = Header(*HEADER.unpack_from(data, 0))
    if header.magic != MAGIC:
        problems.append(Problem("bad-magic", 0, "header.magic",
                                f"bad magic {header.magic!r} (want b'CHF1')"))
    if header.version != VERSION:
        problems.append(Problem("bad-version", 4, "header.version",
                                f"bad version {header.version} (want {VERSION})"))
    body_present = size - HEADER_SIZE
    if header.body_len != body_present:
        problems.append(Problem(
            "body-len-mismatch", 16, "header.body_len",
            f"body_len {header.body_len} but the file holds {body_present} body bytes"))
    crc_actual = zlib.crc32(data[HEADER_SIZE:HEADER_SIZE + header.body_len])
    if crc_actual != header.crc32 and header.body_len <= body_present:
        problems.append(Problem(
            "bad-crc", 20, "header.crc32",
            f"crc mismatch: header {header.crc32:#010x}, body {crc_actual:#010x}"))
    instances, body_problems = _walk_body(data, header)
    problems += body_problems
    return Scan(size, header, instances, problems, crc_actual)


def _walk_body(data: bytes, header: Header) -> tuple[list[Instance], list[Problem]]:
    """Walk the instances over the bytes actually present; stop at the first break."""
    end = len(data)
    off = HEADER_SIZE
    instances: list[Instance] = []
    for n in range(header.instances):
        where = f"instance[{n}]"
        if end - off < 5:
            return instances, [Problem(
                "truncated-instance", off, where,
                f"instance {n} header at offset {off} runs past the end of the body "
                f"(header declares {header.instances} instances)")]
        inst_id, count = struct.unpack_from("<IB", data, off)
        inst = Instance(inst_id, [], declared_criteria=count, offset=off)
        instances.append(inst)
        if count != header.fields:
            return instances, [Problem(
                "criteria-count", off + 4, f"{where}.criteria",
                f"instance {n} declares {count} criteria, header fields is {header.fields}")]
        off += 5
        for c in range(count):
            cwhere = f"{where}.criterion[{c}]"
            if end - off < 3:
                return instances, [Problem(
                    "truncated-instance", off, cwhere,
                    f"instance {n} criterion {c} at offset {off} runs past the end of the body")]
            kind, length = struct.unpack_from("<BH", data, off)
            if kind > Kind.PREFIX:
                return instances, [Problem("bad-kind", off, f"{cwhere}.kind",
                                           f"instance {n} criterion {c}: unknown kind {kind}")]
            if kind == Kind.WILDCARD and length:
                return instances, [Problem(
                    "wildcard-payload", off + 1, f"{cwhere}.len",
                    f"instance {n} criterion {c}: wildcard with len {length}")]
            payload_off = off + 3
            if end - payload_off < length:
                return instances, [Problem(
                    "payload-past-body", off + 1, f"{cwhere}.len",
                    f"instance {n} criterion {c}: payload len {length} at offset {payload_off} "
                    f"ends past the body ({end - payload_off} bytes left)")]
            inst.criteria.append(Criterion(kind, data[payload_off:payload_off + length], offset=off))
            off = payload_off + length
    if off != end:
        return instances, [Problem("trailing-bytes", off, "body",
                                   f"{end - off} bytes after the last instance, at offset {off}")]
    return instances, []


def parse(data: bytes, source: str = "<bytes>") -> ChannelFile:
    """Parse a well-formed file; raise ContentFormatError at its first problem."""
    result = scan(data)
    if result.problems:
        raise ContentFormatError(result.problems[0], source)
    assert result.header is not None
    h = result.header
    return ChannelFile(channel=h.channel, template=h.template, fields=h.fields,
                       instances=result.instances, version=h.version)


def validate(data: bytes) -> list[Problem]:
    """Every well-formedness problem of `data` (empty when well-formed)."""
    return scan(data).problems


def with_crc_fixed(data: bytes) -> bytes:
    """Rewrite the header's crc32 over the body bytes present (fuzzer reproducers)."""
    if len(data) < HEADER_SIZE:
        return data
    crc = zlib.crc32(data[HEADER_SIZE:])
    return data[:20] + struct.pack("<I", crc) + data[HEADER_SIZE:]


def file_name(channel: int = 291, variant: int = 0, sequence: int = 0) -> str:
    """The spec's name for a channel file, e.g. C-00000291-00000000-00000032.sys."""
    return f"C-{channel:08d}-{variant:08d}-{sequence:08d}.sys"
