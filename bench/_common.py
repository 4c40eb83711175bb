"""Shared pieces of the VM benchmarks: progress, cleanup, the raw QEMU baseline,
and an instrumented run of the harness's own Machine.

Nothing here changes the harness: the timings come from wrappers installed
around the names `harness.vm.machine` calls (build_data_disk, render,
write_atomic, open_connection, EventRecorder, ConsoleReader) and from a
subclass swapped onto the libvirt connection and domain objects, so that
createXML and resume are timed where they are called.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import libvirt  # noqa: E402

import harness.guest.linux_backend as backend_mod  # noqa: E402
import harness.vm.machine as machine_mod  # noqa: E402
from harness.artifacts import default_root, new_run_id  # noqa: E402
from harness.config import Profile, Timeouts  # noqa: E402
from harness.content.format import file_name  # noqa: E402
from harness.guest.linux_ref import ReferenceGuest, build_reference_guest  # noqa: E402
from harness.paths import CONTENT_FIXTURES  # noqa: E402
from harness.vm.accel import choose_domain_type, read_until  # noqa: E402
from harness.vm.connection import open_connection  # noqa: E402
from harness.vm.machine import Machine, MachineSpec  # noqa: E402

CRASH_NAME = file_name(291, 0, 32)  # C-00000291-00000000-00000032.sys
GOOD_NAME = file_name(291, 0, 31)
CF291 = (CONTENT_FIXTURES / "cf291-field21.sys").read_bytes()
GOOD = (CONTENT_FIXTURES / "good.sys").read_bytes()
assert CRASH_NAME == "C-00000291-00000000-00000032.sys", CRASH_NAME

PANIC = "Kernel panic - not syncing"
SENSOR_CRASH_FUNCTION = "chf_match_criterion"  # where the vulnerable sensor faults on cf291-field21
BANNER = "Linux version "
BOOT_TIMEOUT_S = 120.0  # per boot (or boot loop); a slow host still ends
HANG_TIMEOUT_S = 45.0

_T_START = time.monotonic()


# --------------------------------------------------------------------------- output

def say(msg: str) -> None:
    print(f"[{time.monotonic() - _T_START:6.1f}s] {msg}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt_s(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}x"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def host_description() -> dict[str, Any]:
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                          check=False).stdout.splitlines()[:1]
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "cores": os.cpu_count(), "cpu": model,
            "kernel": platform.release(), "qemu": qemu[0] if qemu else "?",
            "libvirt": libvirt.getVersion(), "python": platform.python_version()}


def common_args(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each measurement (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    parser.add_argument("--artifacts", type=Path, default=None,
                        help="artifacts root (default $HARNESS_ARTIFACTS or ./artifacts); each run "
                             "writes to <root>/bench-<run id>/")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up boots")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the harness's progress lines")
    return parser


# --------------------------------------------------------------------------- cleanup

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

    def close_machine(self, m: Machine) -> None:
        try:
            m.close()
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


# --------------------------------------------------------------------------- setup

@dataclasses.dataclass
class Setup:
    guest: ReferenceGuest
    domain_type: str
    accel_reason: str
    run_id: str
    root: Path  # artifacts/bench-<run id>


def prepare(args: argparse.Namespace, kind: str) -> Setup:
    say("guest: build_reference_guest() (cached after the first build)")
    guest = build_reference_guest(progress=lambda msg: say(msg))
    domain_type, why = choose_domain_type(Profile().accel)
    run_id = f"bench-{new_run_id()}"
    root = (args.artifacts or default_root()) / run_id
    root.mkdir(parents=True, exist_ok=True)
    say(f"{kind}: domain type {domain_type} ({why}); artifacts in {root}")
    return Setup(guest, domain_type, why, run_id, root)


def bench_profile(threshold: int = 2) -> Profile:
    """The built-in profile, with this boot-loop threshold and bounded timeouts."""
    return dataclasses.replace(Profile(), boot_loop_threshold=threshold,
                               timeouts=Timeouts(boot=BOOT_TIMEOUT_S, hang=HANG_TIMEOUT_S))


# --------------------------------------------------------------------------- raw QEMU

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # not fatal: the Cleanup still kills it
        pass


def raw_qemu_argv(guest: ReferenceGuest, disk: Path, domain_type: str, cmdline: str,
                  no_reboot: bool) -> list[str]:
    """QEMU alone, with the devices of vm-templates/linux/domain.xml.j2 as libvirt runs it:
    -nodefaults (no VGA, NIC, floppy, CD), no USB, no balloon, 256 MiB, 1 vCPU, virtio disk
    with cache=unsafe, COM1 (here on stdout, not a pty), ISA pvpanic. `-action panic=none`:
    the guest's own panic=1 reboots it (libvirt instead pauses at the pvpanic and resets)."""
    accel = "kvm" if domain_type == "kvm" else "tcg"
    cpu = "host" if accel == "kvm" else "qemu64"
    argv = ["qemu-system-x86_64", "-accel", accel, "-M", "pc,usb=off", "-cpu", cpu, "-m", "256",
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
            "-rtc", "base=utc", "-kernel", str(guest.kernel), "-initrd", str(guest.initrd),
            "-append", cmdline, "-drive", f"file={disk},format=raw,if=virtio,cache=unsafe",
            "-device", "pvpanic", "-action", "panic=none"]
    if no_reboot:
        argv.append("-no-reboot")
    return argv


@dataclasses.dataclass
class RawRun:
    total_s: float  # spawn -> the wanted panic line (complete line read)
    banners: list[float]  # spawn -> each "Linux version" line
    panics: list[float]  # spawn -> each panic line
    log: str


def run_raw(argv: list[str], panics_wanted: int, log: Path, cleanup: Cleanup,
            timeout: float = BOOT_TIMEOUT_S) -> RawRun:
    """Spawn QEMU, read its stdout line by line until the `panics_wanted`-th panic line."""
    t0 = time.monotonic()
    proc = cleanup.proc(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, preexec_fn=_die_with_parent))
    assert proc.stdout is not None and proc.stderr is not None
    banners: list[float] = []
    panics: list[float] = []
    partial = b""
    out = bytearray()
    try:
        fd = proc.stdout.fileno()
        deadline = t0 + timeout
        while len(panics) < panics_wanted:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"raw QEMU: {len(panics)}/{panics_wanted} panic lines after "
                                   f"{timeout:.0f} s (log: {log})")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            now = time.monotonic() - t0
            if not chunk:
                err = proc.stderr.read().decode(errors="replace").strip()
                raise RuntimeError(f"raw QEMU exited (rc {proc.wait()}) after {len(panics)} panic "
                                   f"line(s): {err[-500:] or 'no stderr'} (log: {log})")
            out += chunk
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()
            for line in lines:
                if BANNER.encode() in line:
                    banners.append(now)
                if PANIC.encode() in line:
                    panics.append(now)
        return RawRun(panics[-1], banners, panics, str(log))
    finally:
        cleanup.kill(proc)
        cleanup.procs.remove(proc)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(bytes(out))


# --------------------------------------------------------------------------- instrumentation

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


@dataclasses.dataclass
class HarnessRun:
    verdict: str
    reason: str
    boots: int
    crashing_boots: int
    crash_function: str | None  # where the first crash of the verdict happened
    total_s: float  # before Machine() -> wait_verdict() returned
    boot_call_s: float  # before Machine() -> boot() returned (the harness's bring-up)
    phases: dict[str, float]  # seconds in each wrapped call during boot(); close:* during close()
    ctor_s: float
    install_s: float
    create_begin_s: float  # offsets from the start
    create_end_s: float
    boot_return_s: float
    banners: list[float]  # offsets at which the monitor got each banner line
    panics: list[float]
    teardown_s: float
    artifacts: str
    events: list[dict[str, Any]]


def run_harness(setup: Setup, cleanup: Cleanup, slot: str, content: dict[str, bytes], threshold: int,
                wait: bool, verbose: bool = False) -> HarnessRun:
    """One machine, end to end, as a test drives it: Machine(), install_content(), boot(),
    then (if `wait`) wait_verdict(); closed (domain destroyed, disk removed) in any case."""
    directory = setup.root / slot
    directory.mkdir(parents=True, exist_ok=True)
    progress = (lambda msg: say(f"  harness: {msg}")) if verbose else None
    REC.reset()
    banners: list[float] = []
    panics: list[float] = []
    t0 = time.monotonic()
    m = Machine(MachineSpec(profile=bench_profile(threshold), guest=setup.guest, artifacts=directory,
                            run_id=setup.run_id, test_id=slot, slot=slot), progress=progress)
    cleanup.machine(m)
    t_ctor = time.monotonic()
    try:
        original = m._on_line

        def on_line(line: str) -> None:  # the monitor's own input, timed as it arrives
            now = time.monotonic() - t0
            if BANNER in line:
                banners.append(now)
            if PANIC in line:
                panics.append(now)
            original(line)

        m._on_line = on_line  # type: ignore[method-assign]  # boot() hands self._on_line to the console
        m.install_content(content)
        t_inst = time.monotonic()
        REC.active = True
        try:
            m.boot()
        finally:
            REC.active = False
        t_boot = time.monotonic()
        verdict = None
        if wait:
            verdict = m.wait_verdict()
        t_end = time.monotonic()
    finally:
        t_close = time.monotonic()
        REC.active = True  # times the parts of close() too (close:* phases)
        try:
            cleanup.close_machine(m)
        finally:
            REC.active = False
        teardown = time.monotonic() - t_close
    events = []
    events_file = directory / "events.jsonl"
    if events_file.exists():
        events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    marks = REC.marks
    return HarnessRun(
        verdict=verdict.verdict if verdict else "-", reason=verdict.reason if verdict else "",
        boots=verdict.boots if verdict else 0, crashing_boots=verdict.crashing_boots if verdict else 0,
        crash_function=verdict.crash.function if verdict and verdict.crash else None,
        total_s=t_end - t0, boot_call_s=t_boot - t0, phases=dict(REC.phases),
        ctor_s=t_ctor - t0, install_s=t_inst - t_ctor,
        create_begin_s=marks.get("create_begin", t0) - t0, create_end_s=marks.get("create_end", t0) - t0,
        boot_return_s=t_boot - t0, banners=banners, panics=panics, teardown_s=teardown,
        artifacts=str(directory), events=events)


def warm_up(setup: Setup, cleanup: Cleanup, disk: Path | None) -> None:
    """Untimed: page cache (kernel, initrd, QEMU), libvirt's event loop thread, lazy imports."""
    if disk is None:
        say("warm-up: one harness bring-up (not counted)")
    else:
        say("warm-up: raw QEMU to the kernel banner, one harness bring-up (not counted)")
        _warm_raw(setup, cleanup, disk)
    with instrumented():
        run_harness(setup, cleanup, "warmup", {CRASH_NAME: CF291}, 1, wait=False)


def _warm_raw(setup: Setup, cleanup: Cleanup, disk: Path) -> None:
    argv = raw_qemu_argv(setup.guest, disk, setup.domain_type, setup.guest.cmdline(sensor="vulnerable"), True)
    proc = cleanup.proc(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent))
    try:
        read_until(proc, BANNER.encode(), 30)
    finally:
        cleanup.kill(proc)
        cleanup.procs.remove(proc)
