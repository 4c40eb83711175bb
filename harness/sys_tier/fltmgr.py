"""A model of the Filter Manager (FLTMGR.SYS), which speakeasy does not have.

FltRegisterFilter reads the driver's FLT_REGISTRATION and FLT_OPERATION_REGISTRATION array
with the WDK's x64 layout (version 0x0203: 0x70 bytes; 0x20 bytes per operation) and checks
them as FltMgr would before accepting a filter; the callbacks it finds are what the runner
calls later: instance setup for each volume, the pre-operation callback of
IRP_MJ_CREATE_NAMED_PIPE with a FLT_CALLBACK_DATA built here, and the filter unload callback.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from .kernel import Kernel

STATUS_SUCCESS = 0
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_FLT_NOT_INITIALIZED = 0xC01C0007

REGISTRATION_SIZE = 0x70
OPERATION_SIZE = 0x20
VERSIONS = {0x0202, 0x0203}
FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS = 0x2
KNOWN_REGISTRATION_FLAGS = 0x1 | 0x2 | 0x4  # DO_NOT_SUPPORT_SERVICE_STOP, NPFS_MSFS, DAX_VOLUME
IRP_MJ_CREATE_NAMED_PIPE = 0x01
IRP_MJ_OPERATION_END = 0x80
MAX_OPERATIONS = 64
_CALLBACK_FIELDS = ("FilterUnloadCallback", "InstanceSetupCallback", "InstanceQueryTeardownCallback",
                    "InstanceTeardownStartCallback", "InstanceTeardownCompleteCallback",
                    "GenerateFileNameCallback", "NormalizeNameComponentCallback",
                    "NormalizeContextCleanupCallback", "TransactionNotificationCallback",
                    "NormalizeNameComponentExCallback", "SectionNotificationCallback")

# Structure sizes and offsets (x64, fltKernel.h / wdm.h).
FLT_CALLBACK_DATA_SIZE = 0x58
FLT_IO_PARAMETER_BLOCK_SIZE = 0x18 + 0x40  # header + FLT_PARAMETERS union
FILE_OBJECT_SIZE = 0xD8
FILE_OBJECT_FILENAME = 0x58
FLT_RELATED_OBJECTS_SIZE = 0x30
FLT_FILE_NAME_INFORMATION_SIZE = 0x78


class RegistrationError(Exception):
    """The FLT_REGISTRATION is not one FltMgr accepts; the message says which field."""


@dataclass
class Registration:
    size: int
    version: int
    flags: int
    callbacks: dict[str, int]
    operations: list[tuple[int, int, int, int]]  # (major, flags, pre, post)

    def pre_operation(self, major: int) -> int:
        return next((pre for m, _f, pre, _p in self.operations if m == major and pre), 0)


@dataclass
class FltMgrModel:
    kernel: Kernel
    registration: Registration | None = None
    registration_error: str | None = None
    filter_handle: int = 0
    started: bool = False
    unregistered: bool = False
    name_infos: dict[int, str] = field(default_factory=dict)
    pipe_name: str = ""

    def install(self) -> None:
        k = self.kernel
        k.hook("fltmgr", "FltRegisterFilter", 3, self._register)
        k.hook("fltmgr", "FltStartFiltering", 1, self._start)
        k.hook("fltmgr", "FltUnregisterFilter", 1, self._unregister)
        k.hook("fltmgr", "FltGetFileNameInformation", 3, self._get_name)
        k.hook("fltmgr", "FltReleaseFileNameInformation", 1, self._release_name)

    # ----------------------------------------------------------- registration

    def _register(self, a: list[int]) -> int:
        driver, reg_addr, out = a
        try:
            if driver != self.kernel.driver_object:
                raise RegistrationError("Driver is not the driver object DriverEntry was given")
            self.registration = self.read_registration(reg_addr)
        except RegistrationError as exc:
            self.registration_error = str(exc)
            return STATUS_INVALID_PARAMETER
        self.filter_handle = self.kernel.alloc(0x100, "flt.filter")
        self.kernel.put_u64(out, self.filter_handle)
        return STATUS_SUCCESS

    def read_registration(self, addr: int) -> Registration:
        k = self.kernel
        raw = k.read(addr, REGISTRATION_SIZE)
        size, version, flags = struct.unpack_from("<HHI", raw, 0)
        if size != REGISTRATION_SIZE:
            raise RegistrationError(f"FLT_REGISTRATION.Size is {size}, the 0x0203 layout is {REGISTRATION_SIZE}")
        if version not in VERSIONS:
            raise RegistrationError(f"FLT_REGISTRATION.Version is {version:#06x}, not 0x0202 or 0x0203")
        if flags & ~KNOWN_REGISTRATION_FLAGS:
            raise RegistrationError(f"FLT_REGISTRATION.Flags {flags:#x} has unknown bits")
        contexts, operations = struct.unpack_from("<QQ", raw, 8)
        if contexts:
            raise RegistrationError("ContextRegistration is set: this model has no contexts")
        pointers = struct.unpack_from("<11Q", raw, 24)
        callbacks = dict(zip(_CALLBACK_FIELDS, pointers))
        for name, ptr in callbacks.items():
            if ptr and not k.in_image(ptr):
                raise RegistrationError(f"FLT_REGISTRATION.{name} {ptr:#x} points outside the driver image")
        ops = []
        for i in range(MAX_OPERATIONS):
            major, op_flags, pre, post = struct.unpack("<B3xIQQ", k.read(operations + i * OPERATION_SIZE, 24))
            if major == IRP_MJ_OPERATION_END:
                break
            for what, ptr in (("PreOperation", pre), ("PostOperation", post)):
                if ptr and not k.in_image(ptr):
                    raise RegistrationError(f"OperationRegistration[{i}].{what} {ptr:#x} points outside "
                                            "the driver image")
            ops.append((major, op_flags, pre, post))
        else:
            raise RegistrationError(f"OperationRegistration has no IRP_MJ_OPERATION_END within "
                                    f"{MAX_OPERATIONS} entries")
        if any(m == IRP_MJ_CREATE_NAMED_PIPE for m, *_ in ops) and \
                not flags & FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS:
            raise RegistrationError("IRP_MJ_CREATE_NAMED_PIPE is registered without "
                                    "FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS: FltMgr never attaches to NPFS")
        return Registration(size, version, flags, callbacks, ops)

    def _start(self, a: list[int]) -> int:
        if not a[0] or a[0] != self.filter_handle or self.unregistered:
            return STATUS_INVALID_PARAMETER
        self.started = True
        return STATUS_SUCCESS

    def _unregister(self, a: list[int]) -> None:
        if a[0] and a[0] == self.filter_handle:
            self.unregistered = True
            self.started = False

    # ------------------------------------------------------------- file names

    def _get_name(self, a: list[int]) -> int:
        data, _options, out = a
        if not self.started:
            return STATUS_FLT_NOT_INITIALIZED
        iopb = self.kernel.u64(data + 0x10)
        file_object = self.kernel.u64(iopb + 0x8)
        relative = self.kernel.read_unicode_string(file_object + FILE_OBJECT_FILENAME)
        name = "\\Device\\NamedPipe\\" + relative.lstrip("\\")
        info = self.kernel.alloc(FLT_FILE_NAME_INFORMATION_SIZE, "flt.nameinfo")
        self.kernel.write(info, struct.pack("<HHI", FLT_FILE_NAME_INFORMATION_SIZE, 0, _options & 0xFF))
        self.kernel.write_unicode_string(info + 8, name, "flt.nameinfo.name")
        self.kernel.put_u64(out, info)
        self.name_infos[info] = name
        return STATUS_SUCCESS

    def _release_name(self, a: list[int]) -> None:
        self.name_infos.pop(a[0], None)

    # --------------------------------------------------- structures FltMgr passes

    def related_objects(self, volume: int, instance: int, file_object: int) -> int:
        addr = self.kernel.alloc(FLT_RELATED_OBJECTS_SIZE, "flt.related")
        self.kernel.write(addr, struct.pack("<HH4xQQQQQ", FLT_RELATED_OBJECTS_SIZE, 0, self.filter_handle,
                                            volume, instance, file_object, 0))
        return addr

    def create_named_pipe_data(self, pipe: str, instance: int) -> int:
        """FLT_CALLBACK_DATA of a kernel-mode IRP_MJ_CREATE_NAMED_PIPE for \\Device\\NamedPipe\\<pipe>."""
        k = self.kernel
        file_object = k.alloc(FILE_OBJECT_SIZE, "flt.fileobject")
        k.write(file_object, struct.pack("<HH", 5, FILE_OBJECT_SIZE))  # IO_TYPE_FILE
        k.write_unicode_string(file_object + FILE_OBJECT_FILENAME, pipe, "flt.fileobject.name")
        iopb = k.alloc(FLT_IO_PARAMETER_BLOCK_SIZE, "flt.iopb")
        k.write(iopb, struct.pack("<IBBBBQQ", 0, IRP_MJ_CREATE_NAMED_PIPE, 0, 0, 0, file_object, instance))
        data = k.alloc(FLT_CALLBACK_DATA_SIZE, "flt.callbackdata")
        k.write(data, struct.pack("<I4xQQ", 0x2, 0, iopb))  # FLTFL_CALLBACK_DATA_IRP_OPERATION
        k.write(data + 0x50, b"\x00")  # RequestorMode KernelMode
        self.pipe_name = pipe
        return data

    def leaks(self) -> list[str]:
        out = [f"FLT_FILE_NAME_INFORMATION for {n} not released" for n in self.name_infos.values()]
        if self.filter_handle and not self.unregistered:
            out.append("filter still registered (FltUnregisterFilter not called)")
        return out

    def registration_json(self, name_of: Any) -> dict[str, Any] | None:
        r = self.registration
        if r is None:
            return None
        return {"size": r.size, "version": f"{r.version:#06x}", "flags": f"{r.flags:#x}",
                "callbacks": {k: name_of(v) for k, v in r.callbacks.items() if v},
                "operations": [{"major": f"{m:#04x}", "pre": name_of(pre) if pre else None,
                                "post": name_of(post) if post else None} for m, _f, pre, post in r.operations]}
