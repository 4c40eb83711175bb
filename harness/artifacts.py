"""Where a run keeps what it saw: artifacts/<run id>/<test id>/.

Everything is written atomically (temp file, then rename), so a full disk or a
kill mid-write never leaves half a verdict behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from .errors import HarnessError


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB pieces (golden images are tens of GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def default_root() -> Path:
    """Where runs keep their artifacts: $HARNESS_ARTIFACTS, else ./artifacts of the directory the
    user runs in (a vendor's project, not the harness's own checkout)."""
    return Path(os.environ.get("HARNESS_ARTIFACTS") or Path.cwd() / "artifacts")


def safe_name(test_id: str) -> str:
    """A test id as a directory name: tests/test_x.py::test_y[a] -> test_x.py--test_y-a"""
    name = test_id.split("/")[-1].replace("::", "--")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:150] or "test"


def test_dir(root: Path, run_id: str, test_id: str) -> Path:
    path = root / run_id / safe_name(test_id)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot create the artifacts directory: {exc.strerror}") from None
    return path


def write_atomic(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise HarnessError(f"{path}: cannot write: {exc.strerror}") from None


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2) + "\n")
