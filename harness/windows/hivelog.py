r"""A registry hive's transaction logs, before an offline edit: replay them or refuse.

A machine that bugchecked in a boot loop was never shut down cleanly, so its hives
(Windows\System32\config\SOFTWARE, SYSTEM, ...) may hold changes that reached only
the transaction logs beside them (SOFTWARE.LOG1, SOFTWARE.LOG2). Windows replays
them when it next loads the hive. An offline edit that ignores them edits a stale
hive, and Windows may then replay the logs over the edit. hivex does not read the
logs; so before any hivex edit:

    ready = prepare_for_edit(hive, [hive.with_name(hive.name + ".LOG1"), ...], workdir)
    bcd.write_values(ready.hive, ...)        # edit the (replayed) hive, upload it

The layout (Maxim Suhanov, "Windows registry file format specification",
github.com/msuhanov/regf, sections "Base block", "Transaction log files", "Dirty
state"): the base block's primary and secondary sequence numbers (offsets 4 and 8)
differ while a write is under way; a log of the new format (Windows 8.1 and later)
is a 512-byte copy of a base block followed by "HvLE" entries, each with a sequence
number, the hive bins' size and dirty pages (offset from the first hive bin, size,
then the bytes). An entry is pending when its sequence number is at or after the
primary's secondary sequence number: the primary has not caught up with it.

* clean (equal sequence numbers, no pending entry): edited as it is.
* pending, new-format logs: the pending entries must run on, one sequence number
  after another, from the primary's secondary sequence number; they are copied
  into one log of their own and replayed by regipy (`regipy.recovery.
  apply_transaction_logs`; regipy 6.5 would also apply the stale entries that
  follow in a reused log, and leaves the header checksum stale: both handled
  here). The replayed hive's sequence numbers follow the last entry, so no entry
  left in the logs on the disk is pending any more.
* dirty with old-format logs ("DIRT", Windows 8 and before): replayed whole by regipy.
* anything else (a gap in the entries, a log that does not parse, regipy missing):
  HiveLogError naming the hive and the fix. Not checked here: the entries' Marvin32
  hashes (regipy does not check them either).
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputFileError

BASE_BLOCK = 4096  # the primary file's base block; the hive bins follow
LOG_BASE_BLOCK = 512  # a log file's copy of the base block; its entries follow
ENTRY_HEADER = struct.Struct("<4sIIIII8s8s")  # HvLE, size, flags, sequence, bins size, dirty pages, 2 hashes
PAGE_REF = struct.Struct("<II")  # offset from the first hive bin, size
REFUSE_FIX = ("use the recovery-env path instead (WinPE deletes the content file and edits no hive), or let "
              "Windows replay the logs first: in WinPE, reg load HKLM\\Offline <the hive> then reg unload HKLM\\Offline")


class HiveLogError(InputFileError):
    """A hive with pending transaction log entries that cannot be replayed here."""


@dataclass(frozen=True)
class LogEntry:
    log: Path
    offset: int
    size: int
    sequence: int


@dataclass(frozen=True)
class HiveState:
    hive: Path
    primary_sequence: int
    secondary_sequence: int
    log_format: dict[Path, str] = field(default_factory=dict)  # "HvLE", "DIRT", "empty"
    entries: tuple[LogEntry, ...] = ()

    @property
    def dirty(self) -> bool:
        return self.primary_sequence != self.secondary_sequence

    @property
    def pending(self) -> tuple[LogEntry, ...]:
        return tuple(sorted((e for e in self.entries if e.sequence >= self.secondary_sequence),
                            key=lambda e: e.sequence))

    @property
    def needs_replay(self) -> bool:
        return self.dirty or bool(self.pending)


@dataclass(frozen=True)
class ReadyHive:
    hive: Path  # the file to edit: the original, or the replayed copy
    replayed: int  # log entries (new format) or dirty pages (old format) applied; 0 for a clean hive
    state: HiveState


def _header(hive: Path) -> bytes:
    if not hive.is_file():
        raise HiveLogError(f"{hive}: hive file not found")
    with open(hive, "rb") as handle:
        head = handle.read(BASE_BLOCK)
    if len(head) < 512 or head[:4] != b"regf":
        raise HiveLogError(f"{hive}: not a registry hive (no 'regf' signature)")
    return head


def _log_entries(log: Path) -> tuple[str, list[LogEntry]]:
    data = log.read_bytes()
    if len(data) <= LOG_BASE_BLOCK:
        return "empty", []
    magic = data[LOG_BASE_BLOCK:LOG_BASE_BLOCK + 4]
    if magic == b"DIRT":
        return "DIRT", []
    if magic != b"HvLE":
        if not data[LOG_BASE_BLOCK:].strip(b"\0"):
            return "empty", []
        raise HiveLogError(f"{log}: not a transaction log this code reads (at offset {LOG_BASE_BLOCK}: "
                           f"{magic!r}, neither HvLE nor DIRT): {REFUSE_FIX}")
    entries = []
    offset = LOG_BASE_BLOCK
    while offset + ENTRY_HEADER.size <= len(data) and data[offset:offset + 4] == b"HvLE":
        _sig, size, _flags, sequence, _bins, _pages, _h1, _h2 = ENTRY_HEADER.unpack_from(data, offset)
        if size < ENTRY_HEADER.size or size % 512 or offset + size > len(data):
            break  # a torn last entry: Windows stops here too
        entries.append(LogEntry(log, offset, size, sequence))
        offset += size
    return "HvLE", entries


def inspect_hive(hive: Path, logs: Sequence[Path]) -> HiveState:
    """The hive's sequence numbers and the entries of those `logs` that exist."""
    head = _header(hive)
    primary, secondary = struct.unpack_from("<II", head, 4)
    formats: dict[Path, str] = {}
    entries: list[LogEntry] = []
    for log in logs:
        if not log.is_file():
            continue
        kind, found = _log_entries(log)
        formats[log] = kind
        entries += found
    return HiveState(hive, primary, secondary, formats, tuple(entries))


def header_checksum(block: bytes) -> int:
    """XOR of the base block's first 127 dwords; 0xFFFFFFFF becomes 0xFFFFFFFE and 0 becomes 1."""
    value = 0
    for (word,) in struct.iter_unpack("<I", block[:508]):
        value ^= word
    return 0xFFFFFFFE if value == 0xFFFFFFFF else (1 if value == 0 else value)


def _seal(hive: Path, sequence: int) -> None:
    """Both sequence numbers set to `sequence` and the header checksum recomputed."""
    with open(hive, "r+b") as handle:
        block = bytearray(handle.read(512))
        struct.pack_into("<II", block, 4, sequence, sequence)
        struct.pack_into("<I", block, 508, header_checksum(bytes(block)))
        handle.seek(0)
        handle.write(block)


def _regipy_replay(hive: Path, log: Path, out: Path) -> int:
    try:
        from regipy.exceptions import RegipyException
        from regipy.recovery import apply_transaction_logs
    except ImportError:
        raise HiveLogError(f"{hive}: pending transaction log entries, and regipy (which replays them) is not "
                           f"installed: pip install regipy, or {REFUSE_FIX}") from None
    try:
        _path, count = apply_transaction_logs(str(hive), str(log), restored_hive_path=str(out))
    except (RegipyException, ValueError, OSError, struct.error) as exc:
        raise HiveLogError(f"{hive}: its transaction log {log.name} could not be replayed ({exc}): "
                           f"{REFUSE_FIX}") from None
    return int(count)


def prepare_for_edit(hive: Path, logs: Sequence[Path], workdir: Path) -> ReadyHive:
    """The hive to edit: `hive` itself when clean, else a replayed copy in `workdir`
    (`<name>.replayed`); HiveLogError when it has pending entries that cannot be replayed."""
    state = inspect_hive(hive, logs)
    if not state.needs_replay:
        return ReadyHive(hive, 0, state)
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"{hive.name}.replayed"
    pending = state.pending
    if not pending:
        dirt = [log for log, kind in state.log_format.items() if kind == "DIRT"]
        if not dirt:
            raise HiveLogError(f"{hive}: the hive is dirty (sequence numbers {state.primary_sequence} and "
                               f"{state.secondary_sequence} differ) and no log beside it holds what is missing "
                               f"(logs: {', '.join(p.name for p in state.log_format) or 'none'}): {REFUSE_FIX}")
        count = _regipy_replay(hive, dirt[0], out)
        _seal(out, state.primary_sequence)
        return ReadyHive(out, count, state)
    expected = list(range(state.secondary_sequence, state.secondary_sequence + len(pending)))
    got = [e.sequence for e in pending]
    if got != expected:
        raise HiveLogError(f"{hive}: pending transaction log entries {got} do not follow one another from the "
                           f"hive's sequence number {state.secondary_sequence}: {REFUSE_FIX}")
    combined = workdir / f"{hive.name}.pending.LOG"
    with open(combined, "wb") as dest:
        with open(pending[0].log, "rb") as first:
            dest.write(first.read(LOG_BASE_BLOCK))
        for entry in pending:
            with open(entry.log, "rb") as source:
                source.seek(entry.offset)
                dest.write(source.read(entry.size))
    grown = workdir / f"{hive.name}.grown"
    shutil.copyfile(hive, grown)
    _grow_to_entries(grown, pending)
    _regipy_replay(grown, combined, out)
    grown.unlink()
    combined.unlink()
    _seal(out, pending[-1].sequence + 1)
    return ReadyHive(out, len(pending), state)


def _grow_to_entries(hive: Path, entries: Sequence[LogEntry]) -> None:
    """Extend the copy to the largest hive-bins size the entries record: a log entry may
    hold pages of bins appended after the primary was last written."""
    size = hive.stat().st_size
    for entry in entries:
        with open(entry.log, "rb") as handle:
            handle.seek(entry.offset)
            bins = ENTRY_HEADER.unpack(handle.read(ENTRY_HEADER.size))[4]
        size = max(size, BASE_BLOCK + bins)
    with open(hive, "r+b") as handle:
        handle.truncate(size)
