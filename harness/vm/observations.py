"""What the host observes of a VM, in arrival order: console lines and libvirt events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["console", "event", "closed"]


@dataclass(frozen=True)
class Observation:
    t: float  # seconds since the machine was started (monotonic clock)
    source: Source
    text: str  # a console line, an event name such as "lifecycle:crashed:panicked", or why it closed
