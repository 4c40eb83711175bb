"""What a machine is made from (MachineSpec), how its backend is found (by the profile's
family name, registry.py), and who is told when one is made (the pytest plugin)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..config import Profile
from .backend import GuestBackend
from .registry import family_plugin


class JsonRecord(Protocol):
    def to_json(self) -> dict[str, Any]: ...


@dataclass
class MachineSpec:
    profile: Profile
    guest: Any  # what the profile's family boots (its registry plugin's prepare(): a built guest, an image)
    artifacts: Path
    run_id: str
    test_id: str
    slot: str = "0"
    content: dict[str, bytes] = field(default_factory=dict)
    sensor: str | None = None  # overrides the profile's sensor build
    network: bool | None = None  # overrides the profile's network
    disk_from: Path | None = None  # start from a copy of this primary disk (a looping machine's)


def make_backend(spec: MachineSpec) -> GuestBackend:
    """The backend of the profile's guest family, found by name (registry.py)."""
    return family_plugin(spec.profile.family).backend(spec.guest, spec.profile)


_new_machine_watchers: list[Callable[[Any], None]] = []


def watch_new_machines(callback: Callable[[Any], None]) -> Callable[[], None]:
    """Call `callback` with every Machine made from now on, until the returned function is called
    (the pytest plugin judges each machine a test touched). Only the newest watcher is told: a
    pytest run inside a test (pytester) judges its own machines, not the outer test."""
    _new_machine_watchers.append(callback)
    return lambda: _new_machine_watchers.remove(callback)


def notify_new_machine(machine: Any) -> None:
    if _new_machine_watchers:
        _new_machine_watchers[-1](machine)
