"""The serial console, read live through a libvirt stream.

libvirt's own log file (<log file=... append='on'/>) is the durable record;
this reader feeds the monitor and expect() as bytes arrive. Memory stays
bounded whatever the guest prints: only the last `keep_bytes` are held, and a
line longer than MAX_LINE is cut.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import libvirt

MAX_LINE = 4096


class ConsoleBuffer:
    """The tail of the console text with absolute offsets, and a condition to wait on."""

    def __init__(self, keep_bytes: int = 1 << 20) -> None:
        self.keep = keep_bytes
        self.text = ""
        self.start = 0  # absolute offset of text[0]
        self.closed = False
        self.cond = threading.Condition()

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    def append(self, chunk: str) -> None:
        with self.cond:
            self.text += chunk
            if len(self.text) > self.keep:
                cut = len(self.text) - self.keep
                self.text = self.text[cut:]
                self.start += cut
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def search(self, pattern: re.Pattern[str], since: int, timeout: float) -> re.Match[str] | None:
        """First match at or after absolute offset `since`, waiting up to `timeout` s for it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                begin = max(since - self.start, 0)
                match = pattern.search(self.text, begin)
                if match:
                    return match
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.cond.wait(left)

    def tail(self, chars: int = 4000) -> str:
        with self.cond:
            return self.text[-chars:]


class ConsoleReader:
    """A thread that reads a domain's console stream, splits lines and hands them on."""

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain,
                 on_line: Callable[[str], None], buffer: ConsoleBuffer) -> None:
        self.stream = conn.newStream(0)
        dom.openConsole(None, self.stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        self.on_line = on_line
        self.buffer = buffer
        self.bytes_read = 0
        self._partial = ""
        self._stopping = False
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"console-{dom.name()}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                data = self.stream.recv(65536)
                if isinstance(data, int) or not data:  # -2 is EAGAIN (non-blocking only); b"" is EOF
                    break
                self.bytes_read += len(data)
                text = data.decode("utf-8", "replace").replace("\r", "")
                self.buffer.append(text)
                self._split(text)
        except libvirt.libvirtError as exc:
            if not self._stopping:
                self.error = exc.get_error_message()
        finally:
            if self._partial:
                self.on_line(self._partial)
                self._partial = ""
            self.buffer.close()

    def _split(self, text: str) -> None:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE:
            lines.append(self._partial[:MAX_LINE])
            self._partial = ""
        for line in lines:
            self.on_line(line[:MAX_LINE])

    def stop(self, timeout: float = 5.0) -> None:
        """Close the stream (before the domain is destroyed) and join the thread."""
        self._stopping = True
        try:
            self.stream.abort()
        except libvirt.libvirtError:
            pass
        self.thread.join(timeout)
