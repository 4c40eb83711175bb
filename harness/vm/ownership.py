"""Who owns a domain: a lock that dies with the process that holds it.

Every harness process holds an exclusive `flock` on a file of its own for its whole
life; the domains it starts name that file in their metadata (`<harness:lock>`). The
kernel drops the lock the moment the process dies: killed with SIGKILL, crashed, or
still a zombie waiting for a parent that does not reap (a container whose PID 1
never calls wait). So the sweep asks the lock, not the pid table, whether a domain's
owner is alive: a free lock means leaked, at once, and a reused pid cannot make a
dead run look alive.

The files live in /run/harness (root) or a per-user directory under the temp dir;
HARNESS_OWNER_DIR overrides. A lock file that is missing (an older run's metadata,
a cleaned temp dir) leaves the decision to the pid rule.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import tempfile
import threading
from pathlib import Path

_guard = threading.Lock()
_held: tuple[int, int, Path] | None = None  # (pid, fd, path) of this process's lock


def owner_dir() -> Path:
    """Where owner locks live on this machine."""
    if os.environ.get("HARNESS_OWNER_DIR"):
        return Path(os.environ["HARNESS_OWNER_DIR"])
    if os.geteuid() == 0:
        return Path("/run/harness")
    return Path(tempfile.gettempdir()) / f"harness-{os.geteuid()}"


def process_lock() -> Path:
    """The lock file this process holds for its whole life (taken at the first call; a forked
    child takes its own)."""
    global _held
    with _guard:
        if _held is not None and _held[0] == os.getpid():
            return _held[2]
        directory = owner_dir()
        directory.mkdir(parents=True, exist_ok=True)
        name = f"owner-{os.getpid()}-{secrets.token_hex(4)}.lock"
        # Locked under a temporary name, then renamed: a sweep never sees the file unlocked.
        partial = directory / f".{name}"
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
        os.write(fd, f"{os.getpid()}\n".encode())
        path = directory / name
        os.replace(partial, path)
        _held = (os.getpid(), fd, path)
        return path


def lock_held(path: Path) -> bool | None:
    """Whether a live process holds `path`: True, False (its owner is gone), or None when the
    file does not exist (the caller decides by other means)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except PermissionError:
        return True  # another user's lock: not ours to judge
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def remove_dead_locks(directory: Path | None = None) -> list[Path]:
    """Delete the lock files of owners that are gone (the sweep tidies up after dead runs)."""
    removed = []
    for path in sorted((directory or owner_dir()).glob("owner-*.lock")):
        if lock_held(path) is False:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
