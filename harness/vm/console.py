"""The serial console, read live through a libvirt stream.

libvirt's own log file (<log file=... append='on'/>) is the durable record;
this reader feeds the monitor and expect() as bytes arrive. Memory stays
bounded whatever the guest prints (a 100 MB flood included):

* `ConsoleBuffer` holds only the last `keep_bytes` characters (plus at most a
  quarter more between two trims), as a queue of chunks: libvirt hands the
  console over in pieces of a few dozen bytes under load, and appending each
  to one big string would copy the whole tail every time.
* `LineSplitter` hands on lines of at most MAX_LINE characters. A longer line
  (or a run without any newline) is handed on in pieces while it arrives, but
  its last TAIL_KEEP characters are held back for the piece that ends it, so a
  kernel message glued to the end of a guest's unterminated output (the
  kernel does not know the tty's column) reaches the monitor whole. Pieces
  that do not begin a console line start with CONTINUED, so `^`-anchored
  patterns (crash heads, markers) never match at a cut the harness made.
"""

from __future__ import annotations

import codecs
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import libvirt

MAX_LINE = 4096  # characters of one line handed to the monitor
TAIL_KEEP = 2048  # the end of an overlong line is kept whole (a kernel line is < 1024)
CONTINUED = "..."  # this piece continues a console line cut by the harness (ASCII: 1 byte a char)
RECV_MIN, RECV_MAX = 4096, 256 << 10  # bytes asked of the stream per read (adapts in between)
SEARCH_OVERLAP = 8192  # a match of expect() must fit in this many characters (see search)


class ConsoleBuffer:
    """The tail of the console text with absolute offsets, and a condition to wait on."""

    def __init__(self, keep_bytes: int = 1 << 20) -> None:
        self.keep = keep_bytes
        self._slack = max(keep_bytes // 4, 4096)
        self._chunks: deque[str] = deque()
        self._size = 0  # characters held in _chunks
        self.start = 0  # absolute offset of text[0]
        self.closed = False
        self.cond = threading.Condition()

    @property
    def end(self) -> int:
        return self.start + self._size

    @property
    def text(self) -> str:
        """The text held, as one string."""
        with self.cond:
            return self._suffix(self.start)

    def append(self, chunk: str) -> None:
        if not chunk:
            return
        with self.cond:
            self._chunks.append(chunk)
            self._size += len(chunk)
            if self._size > self.keep + self._slack:
                self._trim()
            self.cond.notify_all()

    def _trim(self) -> None:
        """Drop the oldest text down to `keep` characters (one copy per `_slack` appended)."""
        excess = self._size - self.keep
        while excess > 0 and len(self._chunks[0]) <= excess:
            first = self._chunks.popleft()
            excess -= len(first)
            self._size -= len(first)
            self.start += len(first)
        if excess > 0:
            self._chunks[0] = self._chunks[0][excess:]
            self._size -= excess
            self.start += excess

    def _suffix(self, offset: int) -> str:
        """The text from absolute `offset` (at least `start`) to the end, joined once; the
        chunks it spans are replaced by the joined string, so joining again is cheap."""
        want = self.end - max(offset, self.start)
        if want <= 0:
            return ""
        parts: list[str] = []
        have = 0
        while have < want:
            piece = self._chunks.pop()
            parts.append(piece)
            have += len(piece)
        parts.reverse()
        joined = "".join(parts)
        self._chunks.append(joined)
        return joined[have - want:]

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def reopen(self) -> None:
        """A new domain's reader appends from here: waiters wait again instead of giving up."""
        with self.cond:
            self.closed = False

    def search(self, pattern: re.Pattern[str], since: int, timeout: float) -> re.Match[str] | None:
        """First match at or after absolute offset `since`, waiting up to `timeout` s for it.
        Positions in the match are relative to the buffer's text (offset `start`), as ever.

        The first look scans everything held from `since`; each later look, after new text
        arrived, scans only the new text and the SEARCH_OVERLAP characters before it, so a
        waiter costs little while a guest floods the console."""
        deadline = time.monotonic() + timeout
        with self.cond:
            scanned_to: int | None = None
            while True:
                begin = max(since, self.start)
                if scanned_to is not None:
                    begin = max(begin, scanned_to - SEARCH_OVERLAP)
                if scanned_to is None or self.end > scanned_to:
                    if pattern.search(self._suffix(begin)):  # a cheap look at the new text first
                        match = pattern.search(self._suffix(self.start), begin - self.start)
                        if match:  # (a `^` at the cut may match the piece only)
                            return match
                    scanned_to = self.end
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.cond.wait(left)

    def tail(self, chars: int = 4000) -> str:
        with self.cond:
            return self._suffix(self.end - chars)


class LineSplitter:
    """Bytes in, lines out: incremental UTF-8 decoding, `\\r` dropped, lines of at most
    MAX_LINE characters (see the module docstring for overlong lines)."""

    def __init__(self, on_line: Callable[[str], None], max_line: int = MAX_LINE,
                 tail_keep: int = TAIL_KEEP) -> None:
        if not 0 < tail_keep < max_line:
            raise ValueError(f"tail_keep ({tail_keep}) must be between 0 and max_line ({max_line})")
        self.on_line = on_line
        self.max_line = max_line
        self.tail_keep = tail_keep
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._partial: list[str] = []  # the unterminated line so far (held back part only)
        self._partial_len = 0
        self._continued = False  # the held part continues a line already partly handed on

    def feed(self, data: bytes) -> str:
        """Split `data`; returns its decoded text (for the buffer)."""
        text = self._decoder.decode(data).replace("\r", "")
        self._split(text)
        return text

    def _split(self, text: str) -> None:
        pos = 0
        while True:
            newline = text.find("\n", pos)
            if newline < 0:
                break
            self._hold(text[pos:newline])
            self._emit_held()
            pos = newline + 1
        if pos < len(text):
            self._hold(text[pos:])

    def _hold(self, piece: str) -> None:
        if not piece:
            return
        self._partial.append(piece)
        self._partial_len += len(piece)
        if self._partial_len > self.max_line:
            self._spill()

    def _spill(self) -> None:
        """Hand on the front of an overlong unterminated line, keeping its last tail_keep chars."""
        held = "".join(self._partial)
        cut = len(held) - self.tail_keep
        step = self.max_line - len(CONTINUED)  # room for the mark
        for begin in range(0, cut, step):
            self._hand_on(held[begin:min(begin + step, cut)])
        rest = held[cut:]
        self._partial = [rest]
        self._partial_len = len(rest)

    def _hand_on(self, piece: str) -> None:
        self.on_line(CONTINUED + piece if self._continued else piece)
        self._continued = True

    def _emit_held(self) -> None:
        line = "".join(self._partial)
        self._partial = []
        self._partial_len = 0
        self._hand_on(line)
        self._continued = False

    def finish(self) -> None:
        """End of input: hand on what is held (an unterminated last line)."""
        self._split(self._decoder.decode(b"", final=True).replace("\r", ""))
        if self._partial_len:
            self._emit_held()


def stream_stall_note(serial_log: Path, pattern: re.Pattern[str], window: int = 256 << 10) -> str:
    """Tell a host-side stall from a guest that never printed: the durable log may hold the line.

    The console stream (libvirtd reading the pty) and the serial log (virtlogd) are fed by the
    same QEMU character device; when only the log has the line, the guest did its part and the
    host's stream lagged (a loaded libvirtd): an infrastructure fault, not the guest's.
    """
    try:
        with open(serial_log, "rb") as log:
            log.seek(max(0, os.fstat(log.fileno()).st_size - window))
            logged = log.read().decode("utf-8", "replace").replace("\r", "")
    except OSError:
        return ""
    if pattern.search(logged):
        return f" (the serial log {serial_log} has it: the console stream from libvirtd stalled)"
    return ""


class ConsoleReader:
    """A thread that reads a domain's console stream, splits lines and hands them on."""

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain,
                 on_line: Callable[[str], None], buffer: ConsoleBuffer, device: str | None = None) -> None:
        """`device`: the console's alias ("serial1" = COM2); None is the first serial port."""
        self.stream = conn.newStream(0)
        dom.openConsole(device, self.stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        self.on_line = on_line
        self.buffer = buffer
        self.splitter = LineSplitter(on_line)
        self.bytes_read = 0
        self._stopping = False
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"console-{dom.name()}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            size = RECV_MIN
            while True:
                data = self.stream.recv(size)
                if isinstance(data, int) or not data:  # -2 is EAGAIN (non-blocking only); b"" is EOF
                    break
                # libvirt-python allocates `size` bytes per call, and under a flood the stream
                # delivers a few dozen bytes at a time: ask for about what is coming.
                if len(data) == size:
                    size = min(size * 2, RECV_MAX)
                elif len(data) < size // 8:
                    size = max(size // 2, RECV_MIN)
                self.bytes_read += len(data)
                self.buffer.append(self.splitter.feed(data))
        except libvirt.libvirtError as exc:
            if not self._stopping:
                self.error = exc.get_error_message()
        finally:
            self.splitter.finish()
            self.buffer.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the stream (before the domain is destroyed) and join the thread."""
        self._stopping = True
        try:
            self.stream.abort()
        except libvirt.libvirtError:
            pass
        self.thread.join(timeout)
