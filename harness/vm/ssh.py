"""Commands and files over SSH (paramiko), with a timeout on every command.

Each run makes its own client key; the guest's host key is pinned from the
image build, never accepted blindly.
"""

from __future__ import annotations

import base64
import socket
from dataclasses import dataclass
from pathlib import Path

import paramiko

from ..errors import InfraError


@dataclass(frozen=True)
class CommandResult:
    command: str
    rc: int
    stdout: str
    stderr: str


class CommandFailed(InfraError):
    pass


def new_client_key() -> paramiko.ECDSAKey:
    return paramiko.ECDSAKey.generate(bits=256)


def public_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()} harness"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SshSession:
    def __init__(self, port: int, key: paramiko.PKey, host_key_pub: Path, timeout: float,
                 username: str = "root") -> None:
        self.timeout = timeout
        keytype, b64 = host_key_pub.read_text().split()[:2]
        self.client = paramiko.SSHClient()
        self.client.get_host_keys().add(f"[127.0.0.1]:{port}", keytype, paramiko.PKey.from_type_string(
            keytype, base64.b64decode(b64)))
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            self.client.connect("127.0.0.1", port=port, username=username, pkey=key, timeout=timeout,
                                banner_timeout=timeout, auth_timeout=timeout, allow_agent=False,
                                look_for_keys=False)
        except (OSError, paramiko.SSHException) as exc:
            raise InfraError(f"ssh to 127.0.0.1:{port} failed: {exc}") from None
        transport = self.client.get_transport()
        assert transport is not None
        transport.set_keepalive(5)

    def close(self) -> None:
        self.client.close()
