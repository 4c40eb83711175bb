"""One emulator setup per driver image, reused for many content folders without sharing state.

Making the machine (speakeasy's kernel, the image loaded and relocated, the models hooked in)
is a third of a check's time.  A Zygote makes it once and runs each content folder in a
forked child: the child starts from the parent's untouched machine (copy-on-write memory,
unicorn's included), runs the boot, sends its SysRun back through a pipe and exits.  Nothing a
file does in one child can reach the next; a crash of the emulator itself takes only the child.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from typing import Any

from ..errors import HarnessError, InfraError
from .runner import Runner, SysRun

_PLACEHOLDER = Path("/nonexistent-harness-content")


class Zygote:
    """A machine with `sys_path` loaded, never run; `run()` forks it once per content folder."""

    def __init__(self, sys_path: Path, **kernel_options: Any) -> None:
        self.sys_path = sys_path
        self._runner = Runner(sys_path, _PLACEHOLDER, **kernel_options)

    def run(self, content_dir: Path, *, boot_start: bool = True,
            unload_before_boot_reinit: bool = False, reload_from: Path | None = None) -> SysRun:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: run, report, exit without running the parent's atexit hooks
            os.close(read_fd)
            status = 0
            try:
                self._runner.configure(content_dir, boot_start=boot_start,
                                       unload_before_boot_reinit=unload_before_boot_reinit,
                                       reload_from=reload_from)
                payload = pickle.dumps(("ok", self._runner.run()))
            except HarnessError as exc:
                payload = pickle.dumps(("error", exc))
            except BaseException as exc:  # noqa: BLE001 - reported to the parent as an infra error
                payload = pickle.dumps(("error", InfraError(f"{self.sys_path}: the emulator failed: {exc!r}")))
            try:
                with os.fdopen(write_fd, "wb") as out:
                    out.write(struct.pack("<Q", len(payload)) + payload)
            except BaseException:  # noqa: BLE001
                status = 1
            os._exit(status)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if len(data) < 8 or len(data) - 8 != struct.unpack_from("<Q", data)[0]:
            raise InfraError(f"{self.sys_path}: the emulator child died (wait status {status}) "
                             f"while running {content_dir}")
        kind, value = pickle.loads(data[8:])
        if kind == "error":
            raise value
        assert isinstance(value, SysRun)
        return value
