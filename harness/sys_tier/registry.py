"""The registry calls of the driver (ZwCreateKey, ZwSetValueKey, and ZwClose of a key handle).

The driver writes its own word for the host under its service key
(drivers/windows/harnessflt.c, "status key"): volatile values under
<service key>\\Parameters\\State.  This model keeps a small registry with the keys the I/O
manager and the INF leave before DriverEntry (the service key and its Parameters key) and
follows the documented rules the driver relies on: names are case-insensitive, ZwCreateKey
opens an existing key or creates one whose parent exists (it never creates the path above it),
a non-volatile key cannot be made under a volatile one (STATUS_CHILD_MUST_BE_VOLATILE),
ZwSetValueKey needs a handle opened with KEY_SET_VALUE, and every handle must be closed.
A REG_SZ without its terminating NUL or a REG_MULTI_SZ without its final empty string is
recorded as misuse (what a user-mode reader would trip on), and reported with the leaks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .kernel import Kernel

STATUS_SUCCESS = 0
STATUS_INVALID_HANDLE = 0xC0000008
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_CHILD_MUST_BE_VOLATILE = 0xC0000181

KEY_SET_VALUE = 0x0002
KEY_CREATE_SUB_KEY = 0x0004
GENERIC_WRITE = 0x40000000
GENERIC_ALL = 0x10000000
KEY_WRITE = 0x20006
REG_OPTION_VOLATILE = 0x1
REG_CREATED_NEW_KEY = 1
REG_OPENED_EXISTING_KEY = 2
REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD, REG_MULTI_SZ = 1, 2, 3, 4, 7
TYPE_NAMES = {REG_SZ: "REG_SZ", REG_EXPAND_SZ: "REG_EXPAND_SZ", REG_BINARY: "REG_BINARY",
              REG_DWORD: "REG_DWORD", REG_MULTI_SZ: "REG_MULTI_SZ"}
SERVICES = "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\"
HANDLE_BASE = 0xFFFFFFFF80100000  # kernel handles, apart from the file model's
MAX_VALUE_BYTES = 1 << 20


@dataclass
class Key:
    path: str  # as first spelled
    volatile: bool
    values: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # lower name -> (type, data)
    names: dict[str, str] = field(default_factory=dict)  # lower name -> name as written


@dataclass
class _Handle:
    key: str  # lower path
    access: int


@dataclass
class RegistryModel:
    """`service` is the driver's service name (the image's base name, as speakeasy names it)."""

    kernel: Kernel
    service: str
    close_other: Callable[[list[int]], int] | None = None  # ZwClose of a handle that is not a key
    keys: dict[str, Key] = field(default_factory=dict)
    handles: dict[int, _Handle] = field(default_factory=dict)
    misuse: list[str] = field(default_factory=list)
    writes: int = 0
    next_handle: int = HANDLE_BASE

    def __post_init__(self) -> None:
        for path in (self.service_key, self.service_key + "\\Parameters"):
            self.keys[path.lower()] = Key(path, volatile=False)

    @property
    def service_key(self) -> str:
        return SERVICES + self.service

    def install(self) -> None:
        k = self.kernel
        k.hook("ntoskrnl", "ZwCreateKey", 7, self._create_key)
        k.hook("ntoskrnl", "ZwSetValueKey", 6, self._set_value)
        k.hook("ntoskrnl", "ZwClose", 1, self._close)

    # ------------------------------------------------------------------ calls

    def _create_key(self, a: list[int]) -> int:
        handle_out, access, oa, _title, _class, options, disposition = a
        access, options = access & 0xFFFFFFFF, options & 0xFFFFFFFF  # ULONGs: upper halves are not set
        k = self.kernel
        root = k.u64(oa + 8)
        name = k.read_unicode_string(k.u64(oa + 16))
        if root:
            parent = self.handles.get(root)
            if parent is None:
                return STATUS_INVALID_HANDLE
            path = self.keys[parent.key].path + "\\" + name.strip("\\")
        else:
            path = name.rstrip("\\")
        lower = path.lower()
        created = lower not in self.keys
        if created:
            parent_path = lower.rsplit("\\", 1)[0]
            parent_key = self.keys.get(parent_path)
            if parent_key is None:
                return STATUS_OBJECT_NAME_NOT_FOUND
            volatile = bool(options & REG_OPTION_VOLATILE)
            if parent_key.volatile and not volatile:
                return STATUS_CHILD_MUST_BE_VOLATILE
            self.keys[lower] = Key(path, volatile)
        handle = self.next_handle
        self.next_handle += 4
        self.handles[handle] = _Handle(lower, access)
        k.put_u64(handle_out, handle)
        if disposition:
            k.put_u32(disposition, REG_CREATED_NEW_KEY if created else REG_OPENED_EXISTING_KEY)
        return STATUS_SUCCESS

    def _set_value(self, a: list[int]) -> int:
        handle, name_ptr, _title, value_type, data, size = a
        value_type, size = value_type & 0xFFFFFFFF, size & 0xFFFFFFFF  # ULONGs in 64-bit slots
        h = self.handles.get(handle)
        if h is None:
            return STATUS_INVALID_HANDLE
        if not h.access & (KEY_SET_VALUE | GENERIC_WRITE | GENERIC_ALL):
            return STATUS_ACCESS_DENIED
        if size > MAX_VALUE_BYTES:
            return STATUS_INVALID_PARAMETER
        name = self.kernel.read_unicode_string(name_ptr) if name_ptr else ""
        raw = self.kernel.read(data, size) if size else b""
        self._check(name, value_type, raw)
        key = self.keys[h.key]
        key.values[name.lower()] = (value_type, raw)
        key.names[name.lower()] = name
        self.writes += 1
        return STATUS_SUCCESS

    def _check(self, name: str, value_type: int, raw: bytes) -> None:
        if value_type in (REG_SZ, REG_EXPAND_SZ) and (len(raw) % 2 or not raw.endswith(b"\0\0")):
            self.misuse.append(f"{name}: {TYPE_NAMES[value_type]} of {len(raw)} bytes without its "
                               "terminating NUL")
        elif value_type == REG_MULTI_SZ and (len(raw) % 2 or not raw.endswith(b"\0\0\0\0")):
            self.misuse.append(f"{name}: REG_MULTI_SZ of {len(raw)} bytes without its final empty string")
        elif value_type == REG_DWORD and len(raw) != 4:
            self.misuse.append(f"{name}: REG_DWORD of {len(raw)} bytes")

    def _close(self, a: list[int]) -> int:
        if self.handles.pop(a[0], None) is not None:
            return STATUS_SUCCESS
        if self.close_other is not None:
            return self.close_other(a)
        return STATUS_INVALID_HANDLE

    # ---------------------------------------------------------------- results

    def values(self, relative: str) -> dict[str, Any] | None:
        """The values of <service key>\\<relative>, decoded; None when the key does not exist."""
        key = self.keys.get((self.service_key + "\\" + relative).lower())
        if key is None:
            return None
        return {key.names[n]: decode(t, raw) for n, (t, raw) in key.values.items()}

    def leaks(self) -> list[str]:
        out = [f"registry: {m}" for m in self.misuse]
        out += [f"registry handle {h:#x} ({self.keys[k.key].path}) not closed" for h, k in self.handles.items()]
        return out


def decode(value_type: int, raw: bytes) -> Any:
    """A value as a reader sees it: text, a list of texts, a number, or hex."""
    if value_type in (REG_SZ, REG_EXPAND_SZ):
        return raw.decode("utf-16-le", "replace").split("\0", 1)[0]
    if value_type == REG_MULTI_SZ:
        return [s for s in raw.decode("utf-16-le", "replace").split("\0") if s]
    if value_type == REG_DWORD and len(raw) == 4:
        return int(struct.unpack("<I", raw)[0])
    return raw.hex()
