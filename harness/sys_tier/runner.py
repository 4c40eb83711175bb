"""Run the built harnessflt.sys through the life of a boot under the emulator.

Order, as Windows runs a boot-start minifilter:
  DriverEntry -> the driver reinitialization queue -> (boot devices start) -> the boot-driver
  reinitialization queue -> instance setup on an NTFS and an NPFS volume -> the named-pipe
  pre-create callback with the spec's synthetic event -> the filter unload callback.
A driver started after boot (`boot_start=False`, as `fltmc load`) sees IoGetBootDiskInformation
say STATUS_TOO_LATE from the start and never has its boot reinitialization queue run.
`unload_before_boot_reinit` unloads the filter (mandatory) while the boot queue is still waiting.
`reload_from` (a host folder) replaces the content folder after the pre-create callback and asks
the driver to re-read it online, as the harness does in a guest: connect to the driver's
communication port, send one message, close the connection (then the unload as before).
With `reload_before_boot_reinit` the same reload is asked while the boot queue is still waiting
(before the driver's first load), which the driver must refuse.
What the driver wrote under its service key (Parameters\\State, its own word for the host) is
read back at the end of the run: `SysRun.driver_status`.

The first stop ends the run, as it stops a machine: a bugcheck (a fault in the driver, a
misuse the kernel catches), or `hang` when a call outlives the instruction or time budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InfraError
from .bugcheck import (DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS, Bugcheck, EmulatorLimit,
                       from_emulator_error)
from .console import Console
from .filesystem import FileSystemModel
from .fltmgr import FltMgrModel
from .executive import ExecutiveModel
from .imports import bind_imports
from .iomanager import IoManagerModel
from .kernel import CallResult, Kernel
from .memory import MemoryModel
from .ports import CommPortModel
from .registry import RegistryModel
from .symbols import Symbols

VENDOR_DIR = "HarnessSensor"
SYNTHETIC_PIPE = "harness-synthetic"  # \Device\NamedPipe\harness-synthetic: input 0 of the spec's event
FLTFL_FILTER_UNLOAD_MANDATORY = 0x1
FLTFL_INSTANCE_SETUP_AUTOMATIC_ATTACHMENT = 0x1
FILE_DEVICE_DISK_FILE_SYSTEM = 0x8
FILE_DEVICE_NAMED_PIPE = 0x11
FLT_FSTYPE_NTFS = 2
FLT_FSTYPE_NPFS = 25
VOLUMES = (("ntfs", FILE_DEVICE_DISK_FILE_SYSTEM, FLT_FSTYPE_NTFS),
           ("npfs", FILE_DEVICE_NAMED_PIPE, FLT_FSTYPE_NPFS))
IRP_MJ_CREATE_NAMED_PIPE = 0x01
DEFAULT_MAX_INSTRUCTIONS = 200_000_000
DEFAULT_TIMEOUT_S = 60.0
IMAGE_BASE = 0x140000000
PORT_NAME = "\\HarnessFltPort"  # drivers/windows/harnessflt.c HS_PORT_NAME
RELOAD_MESSAGE = b"RELD"  # any message asks for a reload; what the guest's PowerShell sends
STATE_KEY = "Parameters\\State"


@dataclass
class Step:
    name: str
    function: str
    status: int | None  # NTSTATUS or callback return value; None for void / a stop
    seconds: float
    calls: list[str] = field(default_factory=list)  # kernel routines the driver called in this step


@dataclass
class Stop:
    """Why the run ended early."""

    kind: str  # bugcheck | hang
    step: str  # the lifecycle step (callback) it happened in
    function: str  # the driver function at the stop
    location: str  # module!function+offset
    pc: int
    bugcheck: Bugcheck | None = None


@dataclass
class SysRun:
    """Everything one emulated boot produced."""

    sys_path: Path
    console: list[str]
    steps: list[Step]
    stop: Stop | None
    files_read: list[str]
    registration: dict[str, Any] | None
    registration_error: str | None
    instances: dict[str, str]
    leaks: list[str]
    region: str | None = None  # where a faulting address lay
    reservation: dict[str, Any] | None = None
    image_unloaded: bool = False
    seconds: float = 0.0
    driver_status: dict[str, Any] | None = None  # the values under <service>\Parameters\State
    ports: list[dict[str, Any]] = field(default_factory=list)
    reload: dict[str, Any] | None = None  # the online reload's answer, when one was asked


class Runner:
    def __init__(self, sys_path: Path, content_dir: Path, *, boot_start: bool = True,
                 unload_before_boot_reinit: bool = False, vendor: str = VENDOR_DIR,
                 max_instructions: int = DEFAULT_MAX_INSTRUCTIONS,
                 timeout_s: float = DEFAULT_TIMEOUT_S, listing_entries: int = 3,
                 boot_queue_first: bool = False, reload_from: Path | None = None,
                 reload_before_boot_reinit: bool = False) -> None:
        self.sys_path = sys_path
        self.boot_start = boot_start
        self.unload_early = unload_before_boot_reinit
        self.reload_from = reload_from
        self.reload_early = reload_before_boot_reinit
        self.reload: dict[str, Any] | None = None
        self.boot_queue_first = boot_queue_first  # the other order of the two queues during boot
        self.k = Kernel(sys_path, timeout_s=timeout_s, max_instructions=max_instructions)
        self.timeout_s = timeout_s
        self.symbols = Symbols.for_image(sys_path, IMAGE_BASE, self.k.base)
        self.console = Console(self.k)
        self.memory = MemoryModel(self.k)
        self.fs = FileSystemModel(self.k, f"\\SystemRoot\\System32\\drivers\\{vendor}", content_dir,
                                  page_entries=listing_entries)
        self.flt = FltMgrModel(self.k)
        self.io = IoManagerModel(self.k, booted=not boot_start)
        self.executive = ExecutiveModel(self.k)
        self.registry = RegistryModel(self.k, sys_path.stem, close_other=self.fs.close)
        self.ports = CommPortModel(self.k, self.flt)
        # the registry after the file model: ZwClose goes to it first, file handles fall through
        for model in (self.console, self.memory, self.fs, self.flt, self.io, self.executive, self.registry,
                      self.ports):
            model.install()
        bind_imports(self.k, sys_path)
        self.steps: list[Step] = []
        self.stop: Stop | None = None
        self.instances: dict[str, str] = {}
        self.image_unloaded = False
        self.filter_unloaded = False
        self._calls_seen = 0

    def configure(self, content_dir: Path, *, boot_start: bool, unload_before_boot_reinit: bool,
                  reload_from: Path | None = None) -> None:
        """Point a machine that has not run yet at another content folder and scenario."""
        self.fs.host = content_dir
        self.boot_start = boot_start
        self.unload_early = unload_before_boot_reinit
        self.reload_from = reload_from
        self.io.booted = not boot_start

    # ------------------------------------------------------------------ the run

    def run(self) -> SysRun:
        started = time.monotonic()
        self._lifecycle()
        region = reservation = None
        if self.stop and self.stop.bugcheck and self.stop.bugcheck.address is not None:
            region, res = self.memory.region_of(self.stop.bugcheck.address)
            if res is not None:
                reservation = {"tag": res.tag, "base": f"{res.base:#x}", "size": res.size,
                               "mapped": res.mapped}
        leaks = [] if self.stop else (self.memory.leaks() + self.fs.leaks() + self.flt.leaks()
                                          + self.executive.leaks() + self.registry.leaks() + self.ports.leaks())
        return SysRun(self.sys_path, self.console.flush(), self.steps, self.stop, list(self.fs.reads),
                      self.flt.registration_json(self.symbols.name), self.flt.registration_error,
                      self.instances, leaks, region, reservation, self.image_unloaded,
                      time.monotonic() - started, self.registry.values(STATE_KEY), self.ports.to_json(),
                      self.reload)

    def _lifecycle(self) -> None:
        t = time.monotonic()
        result, driver, _registry = self.k.run_driver_entry()
        if not self._finish("DriverEntry", self.k.base + self.k.module.ep, result, t):
            return
        if result.value is not None and result.value & 0x80000000:
            return  # DriverEntry failed: the I/O manager unloads the image, nothing else runs
        if not self.boot_queue_first and not self._driver_queue(driver):
            return
        if self.boot_start:
            if self.unload_early and not self._unload(mandatory=True):
                return
            if self.reload_early and self.reload_from is not None and not self._reload(self.reload_from):
                return
            for r in self.io.take(boot=True):
                if self.image_unloaded:
                    self._call_into_unloaded_image("boot driver reinitialization", r.routine)
                    return
                r.count += 1
                if not self._call("boot driver reinitialization", r.routine, [driver, r.context, r.count]):
                    return
            self.io.booted = not self.boot_queue_first
        if self.boot_queue_first and not self._driver_queue(driver):
            return
        self.io.booted = True
        if self.filter_unloaded and self.io.extra_references <= 0:
            self.image_unloaded = True  # the last reference went with the routine (deferred delete)
        if self.filter_unloaded or self.flt.registration is None or not self.flt.started:
            return
        if not self._instance_setup():
            return
        if self.instances.get("npfs") == "attached":
            pre = self.flt.registration.pre_operation(IRP_MJ_CREATE_NAMED_PIPE)
            if pre:
                data = self.flt.create_named_pipe_data(SYNTHETIC_PIPE, self._instance)
                related = self.flt.related_objects(self._volume, self._instance, self.k.u64(data + 0x10) and
                                                   self.k.u64(self.k.u64(data + 0x10) + 8))
                context = self.k.alloc(8, "flt.completion")
                if not self._call("pre-create (IRP_MJ_CREATE_NAMED_PIPE)", pre, [data, related, context]):
                    return
        if self.reload_from is not None and self.reload is None and not self._reload(self.reload_from):
            return
        self._unload(mandatory=False)

    def _reload(self, folder: Path) -> bool:
        """The guest's online reload: the content folder changes, then a client connects to the
        driver's port, sends one message and closes its handle."""
        self.fs.host = folder
        connect = self.ports.connect(PORT_NAME)
        if connect is None:
            self.reload = {"status": None, "error": f"no communication port {PORT_NAME} to connect to"}
            return True
        if not self._call("port connect", *connect):
            return False
        status = self.steps[-1].status or 0
        if status & 0x80000000:
            self.reload = {"status": f"{status:#010x}", "error": "the driver refused the connection"}
            return True
        cookie = self.k.u64(connect[1][4])
        message = self.ports.message(PORT_NAME, RELOAD_MESSAGE, cookie)
        if message is None:
            self.reload = {"status": None, "error": "the port takes no messages"}
        else:
            if not self._call("port message (reload)", *message):
                return False
            status = self.steps[-1].status or 0
            self.reload = {"status": f"{status:#010x}", "error": None if not status & 0x80000000 else
                           "the driver refused the reload"}
        disconnect = self.ports.disconnect(PORT_NAME, cookie)
        return disconnect is None or self._call("port disconnect", *disconnect)

    def _driver_queue(self, driver: int) -> bool:
        for r in self.io.take(boot=False):
            if self.image_unloaded:
                self._call_into_unloaded_image("driver reinitialization", r.routine)
                return False
            r.count += 1
            if not self._call("driver reinitialization", r.routine, [driver, r.context, r.count]):
                return False
        return True

    def _instance_setup(self) -> bool:
        assert self.flt.registration is not None
        setup = self.flt.registration.callbacks.get("InstanceSetupCallback", 0)
        for name, device_type, fs_type in VOLUMES:
            self._volume = self.k.alloc(0x100, f"flt.volume.{name}")
            instance = self.k.alloc(0x100, f"flt.instance.{name}")
            if not setup:
                self.instances[name] = "attached"
            else:
                related = self.flt.related_objects(self._volume, instance, 0)
                if not self._call(f"instance setup ({name})", setup,
                                  [related, FLTFL_INSTANCE_SETUP_AUTOMATIC_ATTACHMENT, device_type, fs_type]):
                    return False
                status = self.steps[-1].status or 0
                self.instances[name] = "attached" if not status & 0x80000000 else "declined"
            if name == "npfs":
                self._instance = instance
        return True

    def _unload(self, *, mandatory: bool) -> bool:
        assert self.flt.registration is not None
        unload = self.flt.registration.callbacks.get("FilterUnloadCallback", 0)
        if not unload:
            return True  # a filter without an unload callback cannot be unloaded
        flags = FLTFL_FILTER_UNLOAD_MANDATORY if mandatory else 0
        step = "filter unload (mandatory)" if mandatory else "filter unload"
        if not self._call(step, unload, [flags]):
            return False
        status = self.steps[-1].status or 0
        if status & 0x80000000 and not mandatory:
            return True  # the filter refused to go: it stays loaded
        # FltMgr deletes the filter, then the I/O manager deletes the driver object: the image
        # goes unless the driver holds a reference of its own on its driver object.
        self.filter_unloaded = True
        self.image_unloaded = self.io.extra_references <= 0
        return True

    # ------------------------------------------------------------------ calls

    def _call(self, step: str, addr: int, args: list[int]) -> bool:
        t = time.monotonic()
        result = self.k.call(addr, args)
        return self._finish(step, addr, result, t)

    def _finish(self, step: str, addr: int, result: CallResult, started: float) -> bool:
        seconds = time.monotonic() - started
        function = self.symbols.name(addr)
        if self.k.bugcheck is not None or result.error is not None:
            try:
                bugcheck = self.k.bugcheck or from_emulator_error(result.error, result.pc)
            except EmulatorLimit as exc:
                raise InfraError(f"{self.sys_path}: {exc} (in {step}, {self.symbols.name(result.pc)}): "
                                 "the sys tier cannot judge this driver; extend harness/sys_tier") from None
            self.k.bugcheck = bugcheck
            ip = bugcheck.ip if bugcheck.ip is not None else result.pc
            self._stopped("bugcheck", step, ip, bugcheck)
        elif not result.returned:
            self._stopped("hang", step, result.pc, None)
        calls = self.k.api_calls[self._calls_seen:]
        self._calls_seen = len(self.k.api_calls)
        self.steps.append(Step(step, function, None if self.stop else result.value, seconds, calls))
        return self.stop is None

    def _stopped(self, kind: str, step: str, pc: int, bugcheck: Bugcheck | None) -> None:
        loc = self.symbols.locate(pc)
        self.stop = Stop(kind, step, loc.function if loc else f"{pc:#x} (outside the driver)",
                         str(loc) if loc else f"{pc:#x}", pc, bugcheck)

    def _call_into_unloaded_image(self, step: str, routine: int) -> None:
        """The queued routine of an unloaded driver runs: its code is gone."""
        bugcheck = Bugcheck(DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS, (routine, 0x0, routine, 0),
                            f"{step} routine {self.symbols.name(routine)} called after the driver image was "
                            "unloaded", ip=routine, address=routine, access="fetch")
        self.k.bugcheck = bugcheck
        self._stopped("bugcheck", step, routine, bugcheck)
        self.steps.append(Step(step, self.symbols.name(routine), None, 0.0))
