"""Everything a benchmark starts (domains, QEMU processes) torn down on any exit, and the
check for other sessions' QEMU processes that share the cores."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _repo  # noqa: F401  (the checkout on sys.path)
import libvirt
from _report import say

from harness.vm.machine import Machine

class Cleanup:
    """Everything the benchmark started, torn down on any exit (exception, Ctrl-C, SIGTERM)."""

    def __init__(self) -> None:
        self.machines: list[Machine] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.domain_names: set[str] = set()
        self.uri = "qemu:///system"

    def machine(self, m: Machine) -> Machine:
        self.machines.append(m)
        self.domain_names.add(m.name)
        self.uri = m.profile.uri
        return m

    def proc(self, p: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.procs.append(p)
        return p

    @staticmethod
    def kill(p: subprocess.Popen[bytes]) -> None:
        if p.poll() is None:
            p.kill()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            say(f"warning: qemu pid {p.pid} did not exit 10 s after SIGKILL")

    def close_machine(self, m: Machine, background: bool = False) -> None:
        """close() the machine; with `background`, as the vm fixture does (the domain's destroy
        and disk removal go on in a worker: harness.vm.teardown)."""
        try:
            m.close(background=background)
        finally:
            if m in self.machines:
                self.machines.remove(m)

    def run(self) -> None:
        """Close what is still open, then make sure no domain of ours is left."""
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        try:
            for p in self.procs:
                self.kill(p)
            self.procs.clear()
            for m in list(self.machines):
                try:
                    m.close()
                except Exception as exc:  # keep going: the sweep below still destroys the domain
                    say(f"warning: closing {m.name}: {exc}")
            self.machines.clear()
            self.sweep()
        finally:
            signal.signal(signal.SIGINT, old)

    def sweep(self) -> None:
        if not self.domain_names:
            return
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            say(f"warning: cannot check for leftover domains: {exc.get_error_message()}")
            return
        try:
            for name in sorted(self.domain_names):
                try:
                    dom = conn.lookupByName(name)
                except libvirt.libvirtError:
                    continue  # gone, as it should be
                say(f"cleanup: destroying leftover domain {name}")
                try:
                    dom.destroy()
                except libvirt.libvirtError as exc:
                    say(f"warning: could not destroy {name}: {exc.get_error_message()}")
        finally:
            conn.close()


def foreign_qemu(cleanup: Cleanup, run_id: str) -> list[str]:
    """QEMU processes running now that this benchmark did not start (they share the 2 cores
    and make the numbers noisy): '<pid> <domain name or argv[0]>'."""
    ours = {p.pid for p in cleanup.procs}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in ours:
            continue
        try:
            if not (entry / "comm").read_text().startswith("qemu-system"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # exited, waiting to be reaped
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        name = next((a.decode(errors="replace").split(",")[0].removeprefix("guest=")
                     for a in argv if a.startswith(b"guest=")), argv[0].decode(errors="replace"))
        if run_id not in name:
            found.append(f"{entry.name} {name}")
    return found


class Activity:
    """Notes, before each measured step, whether someone else's VMs were running."""

    def __init__(self, cleanup: Cleanup, run_id: str) -> None:
        self.cleanup = cleanup
        self.run_id = run_id
        self.seen: list[dict[str, Any]] = []

    def check(self, step: str) -> None:
        others = foreign_qemu(self.cleanup, self.run_id)
        if others:
            self.seen.append({"step": step, "qemu": others, "loadavg": os.getloadavg()[0]})
            say(f"warning: other QEMU running during '{step}': {', '.join(others)} (numbers noisy)")

    def summary(self) -> str | None:
        if not self.seen:
            return None
        return (f"other QEMU processes were running during {len(self.seen)} measured step(s) "
                f"({', '.join(sorted({s['step'] for s in self.seen}))}): the host was shared, re-run "
                "on a quiet host for clean numbers")


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main_wrapper(body: Callable[[Cleanup], int]) -> int:
    """Run `body` with SIGTERM/SIGHUP turned into KeyboardInterrupt and cleanup guaranteed."""
    # Ctrl-C too, even when started from a shell that ignores SIGINT in background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    cleanup = Cleanup()
    try:
        return body(cleanup)
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        return 130
    finally:
        cleanup.run()
