"""Timing the harness without changing it: wrappers installed around the names
`harness.vm.machine` and the Linux backend call (build_data_disk, render, write_atomic,
open_connection, EventRecorder, ConsoleReader), and a subclass swapped onto the libvirt
connection and domain objects, so that createXML, resume and destroy are timed where they
are called. `instrumented()` puts every original back on exit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import _repo  # noqa: F401  (the checkout on sys.path)
import libvirt

import harness.guest.linux_backend as backend_mod
import harness.vm.machine as machine_mod
from harness.vm.connection import open_connection

class Recorder:
    """Where the wrappers put their timings; active only around the part being measured."""

    def __init__(self) -> None:
        self.active = False
        self.phases: dict[str, float] = {}
        self.marks: dict[str, float] = {}  # monotonic time of one-off points

    def reset(self) -> None:
        self.phases = {}
        self.marks = {}

    def add(self, name: str, seconds: float) -> None:
        if self.active:
            self.phases[name] = self.phases.get(name, 0.0) + seconds

    def mark(self, name: str, t: float) -> None:
        if self.active:
            self.marks.setdefault(name, t)


REC = Recorder()


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            REC.add(name, time.monotonic() - t)
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


class _TimedDomain(libvirt.virDomain):
    def resume(self) -> int:
        t = time.monotonic()
        try:
            return super().resume()
        finally:
            REC.add("resume", time.monotonic() - t)

    def destroy(self) -> int:
        t = time.monotonic()
        try:
            return super().destroy()
        finally:
            REC.add("close:dom.destroy", time.monotonic() - t)


class _TimedConnect(libvirt.virConnect):
    def createXML(self, xmlDesc: str, flags: int = 0) -> libvirt.virDomain:  # noqa: N802,N803
        t = time.monotonic()
        REC.mark("create_begin", t)
        REC.mark("create_begin_wall", time.time())  # against the wall-clock stamps of libvirt's domain log
        try:
            dom = super().createXML(xmlDesc, flags)
        finally:
            end = time.monotonic()
            REC.add("createXML", end - t)
            REC.mark("create_end", end)
        dom.__class__ = _TimedDomain
        return dom

    def close(self) -> int:
        t = time.monotonic()
        try:
            return super().close()
        finally:
            REC.add("close:conn.close", time.monotonic() - t)


def _timed_open_connection(uri: str) -> libvirt.virConnect:
    t = time.monotonic()
    conn = open_connection(uri)
    REC.add("open_connection", time.monotonic() - t)
    conn.__class__ = _TimedConnect
    return conn


def _timed_class(phase: str, cls: type, closer: str, close_phase: str) -> Callable[..., Any]:
    """A factory timing the construction, whose instances time their `closer` method too."""
    def factory(*args: Any, **kwargs: Any) -> Any:
        t = time.monotonic()
        try:
            obj = cls(*args, **kwargs)
        finally:
            REC.add(phase, time.monotonic() - t)
        setattr(obj, closer, _timed(close_phase, getattr(obj, closer)))
        return obj
    return factory


@contextmanager
def instrumented() -> Iterator[Recorder]:
    """Wrap the names the Machine and its Linux backend call during boot() and close(); undone
    on exit."""
    plain = [(backend_mod, "build_data_disk", "build_data_disk"), (backend_mod, "render", "render_xml"),
             (machine_mod, "write_atomic", "write_domain_xml")]
    wrapped = [(machine_mod, n) for n in ("open_connection", "EventRecorder", "ConsoleReader")]
    saved = {(mod, attr): getattr(mod, attr) for mod, attr in [*((m, a) for m, a, _ in plain), *wrapped]}
    try:
        for mod, attr, phase in plain:
            setattr(mod, attr, _timed(phase, saved[(mod, attr)]))
        machine_mod.EventRecorder = _timed_class("event_recorder", saved[(machine_mod, "EventRecorder")], "close",
                                                 "close:events.close")
        machine_mod.ConsoleReader = _timed_class("console_open", saved[(machine_mod, "ConsoleReader")], "stop",
                                                 "close:console.stop")
        machine_mod.open_connection = _timed_open_connection
        yield REC
    finally:
        for (mod, attr), value in saved.items():
            setattr(mod, attr, value)
