"""Filter Manager communication ports: the kernel side the driver calls and the user-mode side
the runner plays.

FltBuildDefaultSecurityDescriptor / FltFreeSecurityDescriptor, FltCreateCommunicationPort,
FltCloseCommunicationPort and FltCloseClientPort are modelled as documented: the port needs
the filter handle FltRegisterFilter returned, a name in its OBJECT_ATTRIBUTES, and its
callbacks in the driver image; MaxConnections bounds the clients.  The user-mode side
(FilterConnectCommunicationPort, FilterSendMessage, CloseHandle of the port handle, as the
harness's PowerShell does in the guest) is `connect()`, `message()` and `disconnect()`: each
returns the driver callback to call and its arguments, so the runner runs it as one lifecycle
step.  A security descriptor not freed, a server port not closed at unload or a client port
the disconnect callback did not close is reported as a leak.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .fltmgr import FltMgrModel
from .kernel import Kernel

STATUS_SUCCESS = 0
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_OBJECT_NAME_COLLISION = 0xC0000035
STATUS_CONNECTION_COUNT_LIMIT = 0xC0000246
STATUS_PORT_DISCONNECTED = 0xC0000037
SECURITY_DESCRIPTOR_SIZE = 0x40


@dataclass
class Port:
    name: str
    handle: int
    cookie: int
    connect: int
    disconnect: int
    message: int
    max_connections: int
    secured: bool  # a security descriptor was given in the OBJECT_ATTRIBUTES
    closed: bool = False


@dataclass
class CommPortModel:
    kernel: Kernel
    flt: FltMgrModel
    ports: dict[str, Port] = field(default_factory=dict)  # by lower name
    descriptors: set[int] = field(default_factory=set)
    clients: dict[int, str] = field(default_factory=dict)  # open client port -> port name
    misuse: list[str] = field(default_factory=list)

    def install(self) -> None:
        k = self.kernel
        k.hook("fltmgr", "FltBuildDefaultSecurityDescriptor", 2, self._build_sd)
        k.hook("fltmgr", "FltFreeSecurityDescriptor", 1, self._free_sd)
        k.hook("fltmgr", "FltCreateCommunicationPort", 8, self._create)
        k.hook("fltmgr", "FltCloseCommunicationPort", 1, self._close)
        k.hook("fltmgr", "FltCloseClientPort", 2, self._close_client)

    # ----------------------------------------------------------- kernel side

    def _build_sd(self, a: list[int]) -> int:
        sd = self.kernel.alloc(SECURITY_DESCRIPTOR_SIZE, "flt.security_descriptor")
        self.kernel.put_u64(a[0], sd)
        self.descriptors.add(sd)
        return STATUS_SUCCESS

    def _free_sd(self, a: list[int]) -> None:
        if a[0] not in self.descriptors:
            self.misuse.append(f"FltFreeSecurityDescriptor of {a[0]:#x}, not one FltBuildDefaultSecurityDescriptor made")
        self.descriptors.discard(a[0])

    def _create(self, a: list[int]) -> int:
        filt, port_out, oa, cookie, connect, disconnect, message, max_connections = a
        k = self.kernel
        max_connections = int.from_bytes((max_connections & 0xFFFFFFFF).to_bytes(4, "little"), "little",
                                         signed=True)  # a LONG in a 64-bit register
        if not filt or filt != self.flt.filter_handle or self.flt.unregistered:
            return STATUS_INVALID_PARAMETER
        name_ptr = k.u64(oa + 16) if oa else 0
        name = k.read_unicode_string(name_ptr) if name_ptr else ""
        if not name.startswith("\\") or max_connections < 1 or not connect or not disconnect:
            return STATUS_INVALID_PARAMETER
        for what, ptr in (("ConnectNotifyCallback", connect), ("DisconnectNotifyCallback", disconnect),
                          ("MessageNotifyCallback", message)):
            if ptr and not k.in_image(ptr):
                self.misuse.append(f"FltCreateCommunicationPort {name}: {what} {ptr:#x} outside the driver image")
                return STATUS_INVALID_PARAMETER
        open_port = self.ports.get(name.lower())
        if open_port is not None and not open_port.closed:
            return STATUS_OBJECT_NAME_COLLISION
        handle = k.alloc(0x80, "flt.port")
        k.put_u64(port_out, handle)
        self.ports[name.lower()] = Port(name, handle, cookie, connect, disconnect, message, max_connections,
                                        secured=bool(k.u64(oa + 32)))
        return STATUS_SUCCESS

    def _close(self, a: list[int]) -> None:
        port = next((p for p in self.ports.values() if p.handle == a[0] and not p.closed), None)
        if port is None:
            self.misuse.append(f"FltCloseCommunicationPort of {a[0]:#x}, not an open server port")
        else:
            port.closed = True

    def _close_client(self, a: list[int]) -> None:
        _filter, client_ptr = a
        client = self.kernel.u64(client_ptr) if client_ptr else 0
        if client:
            self.clients.pop(client, None)
            self.kernel.put_u64(client_ptr, 0)

    # -------------------------------------------------------- user-mode side

    def open_port(self, name: str) -> Port | None:
        port = self.ports.get(name.lower())
        return port if port is not None and not port.closed else None

    def connect(self, name: str) -> tuple[int, list[int]] | None:
        """FilterConnectCommunicationPort: (the driver's connect callback, its arguments), or None
        when no such port is open or it is full."""
        port = self.open_port(name)
        if port is None or sum(1 for n in self.clients.values() if n == port.name) >= port.max_connections:
            return None
        client = self.kernel.alloc(0x80, "flt.clientport")
        self.clients[client] = port.name
        cookie_out = self.kernel.alloc(8, "flt.connectioncookie")
        return port.connect, [client, port.cookie, 0, 0, cookie_out]

    def message(self, name: str, payload: bytes, cookie: int = 0) -> tuple[int, list[int]] | None:
        """FilterSendMessage with `payload` and no reply buffer."""
        port = self.open_port(name)
        if port is None or not port.message:
            return None
        buf = self.kernel.alloc(max(len(payload), 1), "flt.message")
        self.kernel.write(buf, payload)
        returned = self.kernel.alloc(4, "flt.returned")
        return port.message, [cookie, buf, len(payload), 0, 0, returned]

    def disconnect(self, name: str, cookie: int = 0) -> tuple[int, list[int]] | None:
        """The client closed its handle: FltMgr calls the disconnect callback."""
        port = self.ports.get(name.lower())
        if port is None:
            return None
        return port.disconnect, [cookie]

    def leaks(self) -> list[str]:
        out = list(self.misuse)
        out += [f"security descriptor {sd:#x} not freed (FltFreeSecurityDescriptor)" for sd in self.descriptors]
        out += [f"communication port {p.name} not closed (FltCloseCommunicationPort)"
                for p in self.ports.values() if not p.closed]
        out += [f"client port {c:#x} of {n} not closed (FltCloseClientPort)" for c, n in self.clients.items()]
        return out

    def to_json(self) -> list[dict[str, object]]:
        return [{"name": p.name, "max_connections": p.max_connections, "secured": p.secured,
                 "closed": p.closed} for p in self.ports.values()]
