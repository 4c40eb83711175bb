"""libvirt domain events for one domain, recorded with times to events.jsonl."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt


def _names(prefix: str) -> dict[int, str]:
    return {getattr(libvirt, n): n[len(prefix):].lower() for n in dir(libvirt)
            if n.startswith(prefix) and "_" not in n[len(prefix):]}


_EVENTS = _names("VIR_DOMAIN_EVENT_")
_DETAILS = {event: _names(f"VIR_DOMAIN_EVENT_{name.upper()}_") for event, name in _EVENTS.items()}
REBOOT_DEDUPE_S = 0.5  # libvirt raises REBOOT twice per guest reset, ~40 ms apart


def lifecycle_name(event: int, detail: int) -> str:
    name = _EVENTS.get(event, str(event))
    return f"lifecycle:{name}:{_DETAILS.get(event, {}).get(detail, str(detail))}"


class EventRecorder:
    """Registers lifecycle and reboot callbacks for `dom`; each event goes to the file and `on_event`."""

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain, path: Path,
                 on_event: Callable[[str, dict[str, Any]], None], t0: float) -> None:
        self.conn = conn
        self.path = path
        self.on_event = on_event
        self.t0 = t0
        self._lock = threading.Lock()
        self._last_reboot = -1.0
        self._file = open(path, "a", encoding="utf-8")
        self._ids = [
            conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None),
            conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_REBOOT, self._reboot, None),
        ]

    def _lifecycle(self, _conn: Any, _dom: Any, event: int, detail: int, _opaque: Any) -> None:
        self.record(lifecycle_name(event, detail), {"code": [event, detail]})

    def _reboot(self, _conn: Any, _dom: Any, _opaque: Any) -> None:
        now = time.monotonic()
        with self._lock:
            duplicate = now - self._last_reboot < REBOOT_DEDUPE_S
            self._last_reboot = now
        if not duplicate:
            self.record("reboot", {})

    def record(self, name: str, extra: dict[str, Any]) -> None:
        """Write one event line and hand it on (also used for the harness's own actions)."""
        entry = {"t": round(time.monotonic() - self.t0, 3), "wall": time.time(), "event": name, **extra}
        with self._lock:
            if not self._file.closed:
                self._file.write(json.dumps(entry) + "\n")
                self._file.flush()
        self.on_event(name, entry)

    def close(self) -> None:
        for cb_id in self._ids:
            try:
                self.conn.domainEventDeregisterAny(cb_id)
            except libvirt.libvirtError:
                pass
        self._ids = []
        with self._lock:
            self._file.close()
