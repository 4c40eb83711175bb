"""A headless Chromium driven over the DevTools protocol, for tests that check what a person
sees on a page (the report page), not only its HTML source.

A tiny client of our own: Chromium started with --remote-debugging-pipe reads commands on
its fd 3 and writes replies and events on its fd 4, each message JSON ended by a NUL byte.
No PyPI client, no port to race for, no network.

    with Browser.start(tmp_path) as browser:
        page = browser.open(path_to_html)
        text = page.evaluate("document.body.innerText")
        page.screenshot(artifacts / "page.png")
        assert page.requests == [page.url]   # nothing fetched but the page itself

Debian's `chromium` is the browser (`make setup` installs it). Without it a test skips, or
fails under CI=true (harness.testing.skip_or_fail).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from harness.testing import skip_or_fail

# The flags every run uses (the brief's list), then what the pipe and a throwaway profile need.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
VIEWPORT = (1280, 900)
TIMEOUT_S = 30.0


class BrowserError(Exception):
    """Chromium failed, or the protocol answered with an error."""


def chromium_path() -> str:
    """The chromium binary, or skip_or_fail naming the fix."""
    path = shutil.which("chromium")
    if path is None:
        skip_or_fail("chromium not found: make setup installs it (apt-get install chromium)")
    return path


def _above_4(fd: int) -> int:
    """`fd` moved to a number of 10 or more (close-on-exec, as os.pipe's), the old one closed."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """One Chromium process and its DevTools pipe."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int, profile: Path) -> None:
        self.proc, self._out, self._in, self.profile = proc, to_browser, from_browser, profile
        self._buf = b""
        self._ids = iter(range(1, 1 << 30))
        self.events: list[dict[str, Any]] = []

    @classmethod
    @contextmanager
    def start(cls, workdir: Path | None = None) -> Iterator[Browser]:
        """Start Chromium (a fresh profile under `workdir` or a temp dir); closed on exit."""
        binary = chromium_path()
        profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=workdir))
        cmd_r, cmd_w = os.pipe()  # we write commands, Chromium reads them on fd 3
        ev_r, ev_w = os.pipe()    # Chromium writes on fd 4, we read
        cmd_r, ev_w = _above_4(cmd_r), _above_4(ev_w)  # else "3<&3 3<&-" would close what it wired

        # bash puts the pipe's ends on fds 3 and 4 and execs Chromium (no preexec_fn: Python code
        # between fork and exec can deadlock while other threads, e.g. VM teardowns, hold locks).
        wire = f'exec "$@" 3<&{cmd_r} 4>&{ev_w} {cmd_r}<&- {ev_w}>&-'
        log = open(profile / "chromium.log", "wb")
        proc = subprocess.Popen(
            ["bash", "-c", wire, "chromium", binary, *FLAGS, "--remote-debugging-pipe",
             f"--user-data-dir={profile}", f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(cmd_r, ev_w))
        log.close()
        os.close(cmd_r)
        os.close(ev_w)
        browser = cls(proc, cmd_w, ev_r, profile)
        try:
            browser.call("Browser.getVersion")
            yield browser
        finally:
            browser.close()
            shutil.rmtree(profile, ignore_errors=True)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("Browser.close", timeout=5)
            except (BrowserError, OSError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._out, self._in):
            try:
                os.close(fd)
            except OSError:
                pass

    def _log_tail(self) -> str:
        try:
            return (self.profile / "chromium.log").read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no answer from chromium in time; its log: {self._log_tail()}")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 16)
                if not chunk:
                    raise BrowserError(f"chromium closed its pipe (exit {self.proc.poll()}); its log: "
                                       f"{self._log_tail()}")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)  # type: ignore[no-any-return]

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """Send one command and wait for its answer; events that arrive meanwhile are kept."""
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})  # type: ignore[no-any-return]
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method: str, session: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self.events.pop(i)
            reply = self._read_message(deadline)
            if "method" in reply:
                self.events.append(reply)

    def open(self, path: Path) -> Page:
        """A new tab showing the file at `path`, loaded (the load event fired)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": VIEWPORT[0], "height": VIEWPORT[1],
                                                         "deviceScaleFactor": 1, "mobile": False}, session)
        url = path.resolve().as_uri()
        self.call("Page.navigate", {"url": url}, session)
        self.wait_event("Page.loadEventFired", session)
        return Page(self, session, url)


class Page:
    """One loaded tab."""

    def __init__(self, browser: Browser, session: str, url: str) -> None:
        self.browser, self.session, self.url = browser, session, url

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable results only)."""
        result = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                   self.session)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (beyond the viewport) at `path`."""
        data = self.browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                 self.session)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def _events(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.browser.events
                if e.get("method") == method and e.get("sessionId") == self.session]

    @property
    def requests(self) -> list[str]:
        """Every URL the page asked for, the page itself included (Network.requestWillBeSent)."""
        return [p["request"]["url"] for p in self._events("Network.requestWillBeSent")]

    @property
    def console(self) -> list[str]:
        """Console messages and log entries (errors, warnings...) the page produced."""
        called = [f"{p.get('type')}: {' '.join(str(a.get('value')) for a in p.get('args', []))}"
                  for p in self._events("Runtime.consoleAPICalled")]
        logged = [f"{p['entry'].get('level')}: {p['entry'].get('text')}" for p in self._events("Log.entryAdded")]
        return called + logged


# --- checks of what a person sees, shared by the report tests ------------------------------

LINKS = "[...document.querySelectorAll('a[href]')].map(a => a.href)"


def rgb(css: str) -> tuple[int, int, int]:
    """A computed CSS colour (rgb(...) or rgba(...)) as (r, g, b)."""
    r, g, b = (int(float(v)) for v in re.findall(r"[\d.]+", css)[:3])
    return r, g, b


def reddish(css: str) -> bool:
    r, g, b = rgb(css)
    return r > g + 60 and r > b + 60


def greyish(css: str) -> bool:
    r, g, b = rgb(css)
    return max(r, g, b) - min(r, g, b) < 12


def link_target(href: str) -> Path:
    """The file a resolved file:// link points at."""
    url = urlparse(href)
    if url.scheme != "file":
        raise AssertionError(f"a link leaves the file system: {href}")
    return Path(unquote(url.path))


def open_checked(browser: Browser, path: Path, expression: str, shot: Path) -> tuple[Page, Any]:
    """Open `path`, take `expression`'s value and a screenshot to `shot`, and check that the page
    is self-contained (no request but the page, nothing on the console, no script) and that every link
    resolves to an existing file or directory."""
    page = browser.open(path)
    state = page.evaluate(expression)
    page.screenshot(shot)
    if shot.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError(f"{shot}: not a PNG")
    if page.requests != [page.url]:
        raise AssertionError(f"{path}: the page fetched more than itself: {page.requests}")
    if page.console:
        raise AssertionError(f"{path}: console output: {page.console}")
    if page.evaluate("document.scripts.length"):
        raise AssertionError(f"{path}: the page has a script: it must read the same without one")
    dead = [href for href in page.evaluate(LINKS) if not link_target(href).exists()]
    if dead:
        raise AssertionError(f"{path}: links to missing files: {dead}")
    return page, state
