"""Content files of the vendor stand-in driver (acme_guard): "ACMR" rule files.

The format, which acme_guard.c reads (all little-endian, no padding):

    header, 16 bytes   magic "ACMR" | u16 version (1) | u16 rule_count |
                       u32 checksum (FNV-1a 32 of every byte after the header) | u32 reserved (0)
    rule, 24 bytes     u32 id | u8 action (0 allow, 1 deny, 2 audit) | u8 pattern_len (1..16) |
                       u16 reserved (0) | 16 bytes pattern, NUL-padded

The driver refuses a file for the reasons in REFUSALS (its console line is
`acme_guard: <file>: refused: <reason> (<details>)`) and trusts the action byte:
crashing_rules() holds a rule whose action indexes an empty slot of the driver's
action table, a NULL pointer write in acme_apply_rule().
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAGIC = b"ACMR"
VERSION = 1
PATTERN_MAX = 16
HEADER = struct.Struct("<4sHHII")
RULE = struct.Struct(f"<IBBH{PATTERN_MAX}s")
ACTIONS = {"allow": 0, "deny": 1, "audit": 2}
CRASH_ACTION = 7  # a reserved action code: its table slot is NULL


@dataclass(frozen=True)
class Rule:
    id: int
    action: int  # an ACTIONS value; anything else is the driver's crash
    pattern: bytes  # 1..PATTERN_MAX bytes

    def encode(self) -> bytes:
        return RULE.pack(self.id, self.action, len(self.pattern), 0, self.pattern)


def fnv1a32(data: bytes) -> int:
    """FNV-1a, 32 bits: the checksum the header carries."""
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def encode(rules: Sequence[Rule], *, magic: bytes = MAGIC, version: int = VERSION,
           checksum: int | None = None) -> bytes:
    """A rule file; magic, version and checksum may be given wrong on purpose."""
    body = b"".join(rule.encode() for rule in rules)
    if checksum is None:
        checksum = fnv1a32(body)
    return HEADER.pack(magic, version, len(rules), checksum, 0) + body


BASE_RULES = (
    Rule(100, ACTIONS["deny"], b"\\\\.\\pipe\\evil"),
    Rule(101, ACTIONS["audit"], b"powershell.exe"),
    Rule(102, ACTIONS["allow"], b"svchost.exe"),
)


def good_rules() -> bytes:
    """Three rules (deny, audit, allow) the driver accepts: `armed (3 rules from 1 files, 0 refused)`."""
    return encode(BASE_RULES)


def _bad_magic() -> bytes:
    return encode(BASE_RULES, magic=b"ACMX")


def _bad_version() -> bytes:
    return encode(BASE_RULES, version=VERSION + 1)


def _bad_checksum() -> bytes:
    good = good_rules()
    body = bytearray(good[HEADER.size:])
    body[RULE.size + 8] ^= 0x20  # one pattern byte of the second rule, after the checksum
    return good[:HEADER.size] + bytes(body)


def _bad_length() -> bytes:
    return good_rules()[:-1]


def _truncated() -> bytes:
    return MAGIC + b"\x01"


def _bad_rule() -> bytes:
    rule = bytearray(BASE_RULES[1].encode())
    rule[5] = PATTERN_MAX + 1  # pattern_len
    body = BASE_RULES[0].encode() + bytes(rule)
    return HEADER.pack(MAGIC, VERSION, 2, fnv1a32(body), 0) + body


# The reason as the console line starts it -> the file that gets it.
REFUSALS: dict[str, Callable[[], bytes]] = {
    "bad magic": _bad_magic,
    "bad version": _bad_version,
    "bad checksum": _bad_checksum,
    "bad length": _bad_length,
    "truncated": _truncated,
    "bad rule": _bad_rule,
}


def refused_rules(reason: str = "bad checksum") -> bytes:
    """A file the driver refuses with `refused: <reason> (...)`; reason is a key of REFUSALS."""
    try:
        return REFUSALS[reason]()
    except KeyError:
        raise ValueError(f"refused_rules(): unknown reason {reason!r}; "
                         f"use one of {', '.join(map(repr, REFUSALS))}") from None


def crashing_rules() -> bytes:
    """A well-formed file (magic, version, length, checksum all right) whose second rule has a
    reserved action: acme_apply_rule() writes through the NULL slot of its action table."""
    return encode((BASE_RULES[0], Rule(666, CRASH_ACTION, b"explorer.exe"), BASE_RULES[2]))
