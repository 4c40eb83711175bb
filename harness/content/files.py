"""Reading content files given by a user, with one clear error per bad input."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import InputFileError
from .format import MAX_FILE_SIZE


def check_content_path(path: Path) -> int:
    """Raise InputFileError unless `path` is a readable regular file of sane size; return its size."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot stat: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(f"{path}: is a directory, not a content file")
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(f"{path}: not a regular file")
    if st.st_size > MAX_FILE_SIZE:
        raise InputFileError(
            f"{path}: {st.st_size} bytes, larger than the {MAX_FILE_SIZE}-byte limit for a channel file")
    if not os.access(path, os.R_OK):
        raise InputFileError(f"{path}: permission denied (no read permission)")
    return st.st_size


def read_content_file(path: Path) -> bytes:
    check_content_path(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror}") from None


def write_content_file(path: Path, data: bytes) -> None:
    """Write atomically, so an interrupted run never leaves half a content file."""
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory; give the output file name")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputFileError(f"{path}: cannot write: {exc.strerror}") from None
