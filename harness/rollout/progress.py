"""The live progress on stderr: on a terminal, one line per ring with each machine's state,
redrawn in place; otherwise one line per state change (CI logs keep every step)."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from .record import RolloutLog

_SHORT = {"booting": "boot", "healthy": "ok", "updated": "upd", "crashed": "CRASH", "looping": "LOOP",
          "recovering": "recov..", "recovered": "recovered", "rolled-back": "rolled-back", "infra-error": "INFRA"}


class LiveProgress:
    def __init__(self, log: RolloutLog, rings: list[int], stream: TextIO | None = None,
                 quiet: bool = False) -> None:
        self.log = log
        self.rings = rings
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.quiet = quiet
        self._lock = threading.Lock()
        self._drawn = 0  # lines of the last block drawn on the terminal
        self._seen = 0  # timeline entries already printed (not a terminal)

    def message(self, text: str) -> None:
        """A line of its own (a halt, a ring starting), above the live block."""
        if self.quiet:
            return
        with self._lock:
            self._erase()
            print(f"harness: rollout: {text}", file=self.stream, flush=True)
            self._draw()

    def changed(self) -> None:
        if self.quiet:
            return
        with self._lock:
            if self.tty:
                self._erase()
                self._draw()
                return
            with self.log.lock:
                entries = self.log.timeline[self._seen:]
                self._seen = len(self.log.timeline)
                rings = {name: r.ring for name, r in self.log.machines.items()}
            for e in entries:
                ring = rings.get(e["machine"], -1)
                print(f"harness: rollout {e['t']:7.1f}s  ring {ring}  {e['machine']:<10} {e['state']:<11} "
                      f"{e['detail'][:100]}", file=self.stream, flush=True)

    def lines(self) -> list[str]:
        with self.log.lock:
            records = list(self.log.machines.values())
            t = self.log.now()
        out = []
        for ring, size in enumerate(self.rings):
            members = [r for r in records if r.ring == ring]
            states = "  ".join(f"{r.name}:{_SHORT.get(r.state, r.state)}" for r in members)
            out.append(f"  ring {ring} [{size}] {states}")
        return [f"harness: rollout {t:6.1f}s", *out]

    def _draw(self) -> None:
        if not self.tty:
            return
        block = self.lines()
        self.stream.write("\n".join(block) + "\n")
        self.stream.flush()
        self._drawn = len(block)

    def _erase(self) -> None:
        if self.tty and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0
