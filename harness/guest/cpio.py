"""A tiny writer for the kernel's initramfs format: newc cpio ("070701"), gzip-compressed.

Written here rather than with cpio(1) so that the archive does not depend on the
builder's uid, umask or file times: every entry is owned by root, has mtime 0 and
the mode given, and device nodes (/dev/console) need no privileges.
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass, field
from pathlib import PurePosixPath

_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    mode: int  # full st_mode: type bits | permission bits
    data: bytes = b""  # file content, or the target of a symlink
    rdev: tuple[int, int] = (0, 0)


@dataclass
class Archive:
    """Entries by absolute guest path; parent directories are added on demand."""

    entries: dict[str, Entry] = field(default_factory=dict)

    @staticmethod
    def _norm(path: str) -> str:
        p = PurePosixPath("/") / path
        if ".." in p.parts:
            raise ValueError(f"initramfs path {path!r} contains '..'")
        return str(p)

    def _parents(self, path: str) -> None:
        for parent in reversed(PurePosixPath(path).parents):
            name = str(parent)
            if name != "/" and name not in self.entries:
                self.entries[name] = Entry(stat.S_IFDIR | 0o755)

    def mkdir(self, path: str, perm: int = 0o755) -> None:
        path = self._norm(path)
        self._parents(path)
        self.entries[path] = Entry(stat.S_IFDIR | perm)

    def file(self, path: str, data: bytes, perm: int = 0o644) -> None:
        path = self._norm(path)
        self._parents(path)
        self.entries[path] = Entry(stat.S_IFREG | perm, data)

    def symlink(self, path: str, target: str) -> None:
        path = self._norm(path)
        self._parents(path)
        self.entries[path] = Entry(stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path: str, major: int, minor: int, perm: int = 0o600) -> None:
        path = self._norm(path)
        self._parents(path)
        self.entries[path] = Entry(stat.S_IFCHR | perm, rdev=(major, minor))

    def __contains__(self, path: str) -> bool:
        return self._norm(path) in self.entries

    def payload_bytes(self) -> int:
        return sum(len(e.data) for e in self.entries.values() if stat.S_ISREG(e.mode))

    def to_newc(self) -> bytes:
        out = bytearray()
        # Sorted paths put every directory before its contents.
        for ino, path in enumerate(sorted(self.entries), start=1):
            entry = self.entries[path]
            _header(out, path.lstrip("/"), ino, entry.mode, entry.data, entry.rdev,
                    nlink=2 if stat.S_ISDIR(entry.mode) else 1)
        _header(out, _TRAILER, 0, 0, b"", (0, 0), nlink=1)
        return bytes(out)

    def to_gzip(self, level: int = 6) -> bytes:
        return gzip.compress(self.to_newc(), compresslevel=level, mtime=0)


def _pad4(out: bytearray) -> None:
    out += b"\0" * (-len(out) % 4)


def _header(out: bytearray, name: str, ino: int, mode: int, data: bytes,
            rdev: tuple[int, int], nlink: int) -> None:
    raw_name = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(raw_name), 0)
    out += b"070701" + "".join(f"{v:08x}" for v in fields).encode()
    out += raw_name
    _pad4(out)
    out += data
    _pad4(out)
