"""The file calls of the driver (ZwOpenFile, ZwQueryDirectoryFile, ZwQueryInformationFile,
ZwReadFile, ZwClose) over one host folder mounted at the content directory.

speakeasy's own file calls ignore OBJECT_ATTRIBUTES.RootDirectory, do not translate
\\SystemRoot and have no ZwQueryDirectoryFile.  This model follows the documented NT
semantics the driver relies on: names are matched case-insensitively (OBJ_CASE_INSENSITIVE,
as NTFS does), a directory listing starts with "." and "..", is returned in pieces that fit
the caller's buffer (and at most `page_entries` entries per call, so the driver's paging loop
runs), and ends with STATUS_NO_MORE_FILES.  Every file is read from a snapshot taken when it
is opened, so a file changed on the host during a run cannot tear a read.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .kernel import Kernel

STATUS_SUCCESS = 0x00000000
STATUS_BUFFER_OVERFLOW = 0x80000005
STATUS_NO_MORE_FILES = 0x80000006
STATUS_INVALID_HANDLE = 0xC0000008
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_NO_SUCH_FILE = 0xC000000F
STATUS_END_OF_FILE = 0xC0000011
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_BUFFER_TOO_SMALL = 0xC0000023
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_OBJECT_PATH_NOT_FOUND = 0xC000003A
STATUS_NOT_IMPLEMENTED = 0xC0000002
STATUS_INFO_LENGTH_MISMATCH = 0xC0000004
STATUS_FILE_IS_A_DIRECTORY = 0xC00000BA
STATUS_NOT_A_DIRECTORY = 0xC0000103

FILE_DIRECTORY_FILE = 0x1
FILE_NON_DIRECTORY_FILE = 0x40
FILE_OPENED = 1
FILE_ATTRIBUTE_DIRECTORY = 0x10
FILE_ATTRIBUTE_ARCHIVE = 0x20
FileDirectoryInformation = 1
FileStandardInformation = 5
DIR_ENTRY_HEADER = 0x40  # FILE_DIRECTORY_INFORMATION up to FileName
HANDLE_BASE = 0xFFFFFFFF80000100  # kernel handles have the top bit set
SYSTEM_ROOT = "\\SystemRoot\\"


@dataclass
class _Entry:
    name: str
    is_dir: bool
    size: int


@dataclass
class _Handle:
    path: tuple[str, ...]  # components below the mount point
    host: Path
    is_dir: bool
    data: bytes = b""
    listing: list[_Entry] | None = None
    cursor: int = 0


@dataclass
class FileSystemModel:
    """`mount` (an NT path such as \\SystemRoot\\System32\\drivers\\HarnessSensor) is `host`."""

    kernel: Kernel
    mount: str
    host: Path
    page_entries: int = 3
    handles: dict[int, _Handle] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)  # files whose bytes the driver read, in order
    next_handle: int = HANDLE_BASE

    def install(self) -> None:
        k = self.kernel
        k.hook("ntoskrnl", "ZwOpenFile", 6, self._open)
        k.hook("ntoskrnl", "ZwQueryDirectoryFile", 11, self._query_directory)
        k.hook("ntoskrnl", "ZwQueryInformationFile", 5, self._query_information)
        k.hook("ntoskrnl", "ZwReadFile", 9, self._read)
        k.hook("ntoskrnl", "ZwClose", 1, self.close)

    # ------------------------------------------------------------------- names

    def _components(self, nt_path: str) -> tuple[str, ...] | None:
        """Components below the mount point of an absolute NT path, or None if outside it."""
        mount = [c.lower() for c in self.mount.strip("\\").split("\\")]
        parts = [c for c in nt_path.split("\\") if c]
        if [c.lower() for c in parts[:len(mount)]] != mount:
            return None
        return tuple(parts[len(mount):])

    def _resolve(self, parts: tuple[str, ...]) -> tuple[Path | None, int]:
        """The host path of `parts`, matched case-insensitively; or (None, NT status)."""
        here = self.host
        for i, part in enumerate(parts):
            if part in (".", ".."):
                return None, STATUS_OBJECT_NAME_NOT_FOUND
            try:
                names = os.listdir(here)
            except OSError:
                return None, STATUS_OBJECT_PATH_NOT_FOUND
            match = next((n for n in names if n == part), None) or \
                next((n for n in names if n.lower() == part.lower()), None)
            if match is None:
                last = i == len(parts) - 1
                return None, STATUS_OBJECT_NAME_NOT_FOUND if last else STATUS_OBJECT_PATH_NOT_FOUND
            here = here / match
        return here, STATUS_SUCCESS

    # ------------------------------------------------------------------- calls

    def _io_status(self, iosb: int, status: int, information: int) -> int:
        if iosb:
            self.kernel.write(iosb, struct.pack("<QQ", status, information))
        return status

    def _open(self, a: list[int]) -> int:
        handle_out, _access, oa, iosb, _share, options = a
        root = self.kernel.u64(oa + 8)
        name = self.kernel.read_unicode_string(self.kernel.u64(oa + 16))
        if root:
            parent = self.handles.get(root)
            if parent is None or not parent.is_dir:
                return self._io_status(iosb, STATUS_INVALID_HANDLE, 0)
            parts: tuple[str, ...] | None = parent.path + tuple(c for c in name.split("\\") if c)
        else:
            parts = self._components(name)
        if parts is None:
            return self._io_status(iosb, STATUS_OBJECT_PATH_NOT_FOUND, 0)
        host, status = self._resolve(parts)
        if host is None:
            return self._io_status(iosb, status, 0)
        try:
            st = host.stat()
        except OSError:
            return self._io_status(iosb, STATUS_OBJECT_NAME_NOT_FOUND, 0)
        is_dir = stat.S_ISDIR(st.st_mode)
        if options & FILE_DIRECTORY_FILE and not is_dir:
            return self._io_status(iosb, STATUS_NOT_A_DIRECTORY, 0)
        if options & FILE_NON_DIRECTORY_FILE and is_dir:
            return self._io_status(iosb, STATUS_FILE_IS_A_DIRECTORY, 0)
        data = b""
        if not is_dir:
            try:
                data = host.read_bytes()
            except OSError:
                return self._io_status(iosb, STATUS_ACCESS_DENIED, 0)
        handle = self.next_handle
        self.next_handle += 4
        self.handles[handle] = _Handle(parts, host, is_dir, data)
        self.kernel.put_u64(handle_out, handle)
        return self._io_status(iosb, STATUS_SUCCESS, FILE_OPENED)

    def _snapshot(self, h: _Handle) -> list[_Entry]:
        entries = [_Entry(".", True, 0), _Entry("..", True, 0)]
        for child in sorted(h.host.iterdir(), key=lambda p: p.name.upper()):
            try:
                st = child.stat()
            except OSError:
                continue
            entries.append(_Entry(child.name, stat.S_ISDIR(st.st_mode),
                                  0 if stat.S_ISDIR(st.st_mode) else st.st_size))
        return entries

    def _query_directory(self, a: list[int]) -> int:
        handle, _event, _apc, _ctx, iosb, buf, length, klass, single, pattern, restart = a
        klass &= 0xFFFFFFFF  # a 32-bit enum in a 64-bit stack slot: the upper half is not the caller's
        h = self.handles.get(handle)
        if h is None:
            return self._io_status(iosb, STATUS_INVALID_HANDLE, 0)
        if not h.is_dir:
            return self._io_status(iosb, STATUS_INVALID_PARAMETER, 0)
        if klass != FileDirectoryInformation:
            return self._io_status(iosb, STATUS_NOT_IMPLEMENTED, 0)
        if pattern:
            return self._io_status(iosb, STATUS_NOT_IMPLEMENTED, 0)  # the driver asks for all names
        if length < DIR_ENTRY_HEADER:
            return self._io_status(iosb, STATUS_INFO_LENGTH_MISMATCH, 0)
        first_call = h.listing is None
        if first_call or restart & 0xFF:
            h.listing, h.cursor = self._snapshot(h), 0
        assert h.listing is not None
        if h.cursor >= len(h.listing):
            return self._io_status(iosb, STATUS_NO_SUCH_FILE if first_call else STATUS_NO_MORE_FILES, 0)
        out = bytearray()
        last = -1
        limit = 1 if single & 0xFF else self.page_entries
        while h.cursor < len(h.listing) and limit:
            entry = h.listing[h.cursor]
            name = entry.name.encode("utf-16-le", "surrogatepass")
            record = struct.pack("<IIqqqqqqII", 0, 0, 0, 0, 0, 0, entry.size,
                                 (entry.size + 4095) // 4096 * 4096,
                                 FILE_ATTRIBUTE_DIRECTORY if entry.is_dir else FILE_ATTRIBUTE_ARCHIVE,
                                 len(name)) + name
            start = (len(out) + 7) & ~7
            if start + len(record) > length:
                break
            out += bytes(start - len(out))
            if last >= 0:
                struct.pack_into("<I", out, last, start - last)
            last = start
            out += record
            h.cursor += 1
            limit -= 1
        if not out:  # not even one entry fits: the caller must pass a bigger buffer
            return self._io_status(iosb, STATUS_BUFFER_OVERFLOW, 0)
        self.kernel.write(buf, bytes(out))
        return self._io_status(iosb, STATUS_SUCCESS, len(out))

    def _query_information(self, a: list[int]) -> int:
        handle, iosb, buf, length, klass = a
        h = self.handles.get(handle)
        if h is None:
            return self._io_status(iosb, STATUS_INVALID_HANDLE, 0)
        if klass != FileStandardInformation:
            return self._io_status(iosb, STATUS_NOT_IMPLEMENTED, 0)
        if length < 24:
            return self._io_status(iosb, STATUS_INFO_LENGTH_MISMATCH, 0)
        size = len(h.data)
        self.kernel.write(buf, struct.pack("<qqIBBxx", (size + 4095) // 4096 * 4096, size, 1, 0,
                                           1 if h.is_dir else 0))
        return self._io_status(iosb, STATUS_SUCCESS, 24)

    def _read(self, a: list[int]) -> int:
        handle, _event, _apc, _ctx, iosb, buf, length, offset_ptr, _key = a
        h = self.handles.get(handle)
        if h is None:
            return self._io_status(iosb, STATUS_INVALID_HANDLE, 0)
        if h.is_dir:
            return self._io_status(iosb, STATUS_INVALID_PARAMETER, 0)
        offset = self.kernel.u64(offset_ptr) if offset_ptr else h.cursor
        if offset >= len(h.data):
            return self._io_status(iosb, STATUS_END_OF_FILE, 0)
        chunk = h.data[offset:offset + length]
        self.kernel.write(buf, chunk)
        h.cursor = offset + len(chunk)
        if not self.reads or self.reads[-1] != h.host.name:
            self.reads.append(h.host.name)
        return self._io_status(iosb, STATUS_SUCCESS, len(chunk))

    def close(self, a: list[int]) -> int:
        """ZwClose of a file handle (the registry model hands it the handles that are not keys)."""
        if self.handles.pop(a[0], None) is None:
            return STATUS_INVALID_HANDLE
        return STATUS_SUCCESS

    def leaks(self) -> list[str]:
        return [f"handle {k:#x} ({_nt_name(h.path)}) not closed" for k, h in self.handles.items()]


def _nt_name(parts: tuple[str, ...]) -> str:
    return "\\".join(parts) or "."

