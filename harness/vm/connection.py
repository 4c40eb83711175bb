"""One libvirt event loop per process, and connections that report their death.

libvirt delivers domain events and connection-close callbacks only when an
event loop implementation is registered *before* the connection is opened and
something runs it; here a daemon thread runs the default implementation.
"""

from __future__ import annotations

import threading
from pathlib import Path

import libvirt

from ..artifacts import write_atomic
from ..errors import InfraError
from .hosts import explain_failure, libvirt_uri

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None

# libvirt prints every error to stderr by default; the harness reports its own.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def ensure_event_loop() -> None:
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        _loop_thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
        _loop_thread.start()


def open_connection(uri: str) -> libvirt.virConnect:
    """Open `uri` with events enabled, or raise InfraError with the fix. A URI over SSH
    (qemu+ssh://user@host/system) runs with the host key pinned (see hosts.py); a ConfigError
    says when the URI itself would accept any host key."""
    ensure_event_loop()
    try:
        conn = libvirt.open(libvirt_uri(uri))
    except libvirt.libvirtError as exc:
        raise InfraError(explain_failure(uri, exc.get_error_message())) from None
    # Keepalive: a dead host or SSH link is noticed within ~20 s and closes the connection, which
    # the close callback reports (over SSH as on the local socket).
    conn.setKeepAlive(5, 3)
    return conn


DOMAIN_LOG_DIR = Path("/var/log/libvirt/qemu")  # qemu:///system's per-domain logs


def domain_log_path(uri: str, name: str) -> Path | None:
    """libvirt's log of domain `name`, when it is on this machine (a local daemon); None for a
    remote host, whose log stays there."""
    return DOMAIN_LOG_DIR / f"{name}.log" if uri.startswith("qemu:///") else None


def keep_domain_log(uri: str, name: str, dest: Path) -> None:
    """Copy libvirt's log of domain `name` (QEMU's command line, its errors, Windows' `panic
    hyper-v` line) to `dest`, when it is readable here (a local host)."""
    source = domain_log_path(uri, name)
    if source is None:
        return
    try:
        data = source.read_bytes()
    except OSError:
        return
    write_atomic(dest, data)


def destroy_by_name(uri: str, name: str) -> bool:
    """Destroy domain `name` on a new connection (ours may have died with a restarted libvirtd
    while QEMU kept running); True when the host answered (the domain is gone either way)."""
    try:
        conn = open_connection(uri)
    except InfraError:
        return False
    try:
        conn.lookupByName(name).destroy()
    except libvirt.libvirtError:
        pass  # really gone
    finally:
        conn.close()
    return True
