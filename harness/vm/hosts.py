"""libvirt hosts other than this machine, reached over SSH: host-key policy and shared paths.

A profile may name remote hosts such as `qemu+ssh://root@kvm2/system`. Two rules
apply to each of them:

* The host's SSH key is pinned, never accepted blindly. libvirt's `ssh`
  transport runs the OpenSSH client but ignores the `known_hosts=` URI
  parameter (libvirt passes it only to its libssh/libssh2 transports), so the
  harness hands libvirt a small generated client command (`command=`) that runs
  `ssh -o StrictHostKeyChecking=yes -o BatchMode=yes [-o UserKnownHostsFile=...]`.
  An unknown or changed key then fails the connection instead of being added or
  prompted for; `no_verify=1` and `known_hosts_verify=auto|ignore` are refused.
* The domain XML carries paths of this machine (kernel, initrd, data disk,
  serial log). The remote host must see the guest files and the artifacts
  directory at the same paths, i.e. a shared mount; `check_shared_paths` proves it
  by reading, over SSH, files written here a moment before.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from ..errors import ConfigError, InfraError
from ..paths import cache_dir

SSH_TRANSPORTS = ("ssh", "libssh", "libssh2")
WRAPPERS = cache_dir() / "ssh"  # generated OpenSSH client commands, one per pinning


@dataclass(frozen=True)
class HostUri:
    """The parts of a libvirt URI the harness needs to reason about a host."""

    uri: str
    transport: str  # "" (local), ssh, libssh, libssh2, tls, tcp, unix, ...
    user: str
    host: str
    port: int | None
    params: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, uri: str) -> HostUri:
        parts = urlsplit(uri)
        transport = parts.scheme.split("+", 1)[1] if "+" in parts.scheme else ""
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"libvirt URI {uri}: the port is not a number") from None
        return cls(uri, transport, parts.username or "", parts.hostname or "", port,
                   tuple(parse_qsl(parts.query, keep_blank_values=True)))

    @property
    def over_ssh(self) -> bool:
        return self.transport in SSH_TRANSPORTS

    @property
    def remote(self) -> bool:
        """A daemon reached over the network (not the local UNIX socket)."""
        return bool(self.host) and self.transport not in ("", "unix")

    def param(self, name: str) -> str | None:
        return next((v for k, v in reversed(self.params) if k == name), None)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host


def check_policy(host: HostUri) -> None:
    """Refuse URIs that would accept any host key."""
    if host.param("no_verify") not in (None, "0"):
        raise ConfigError(f"libvirt URI {host.uri}: no_verify={host.param('no_verify')} accepts any host key; "
                          f"the harness pins host keys: remove it and put the host's key in a known_hosts "
                          f"file (known_hosts=/path/to/file)")
    if host.param("known_hosts_verify") not in (None, "normal"):
        raise ConfigError(f"libvirt URI {host.uri}: known_hosts_verify={host.param('known_hosts_verify')} "
                          f"accepts unknown host keys; remove it (normal is the only value allowed)")


def libvirt_uri(uri: str) -> str:
    """The URI to hand libvirt for `uri`: unchanged unless it goes through the OpenSSH client,
    which then runs with the pinning options (see the module docstring)."""
    host = HostUri.parse(uri)
    if not host.over_ssh:
        return uri
    check_policy(host)
    if host.transport != "ssh":
        return uri  # libssh/libssh2 verify against known_hosts= themselves (known_hosts_verify=normal)
    wrapper = ssh_wrapper(host.param("command") or "ssh", host.param("known_hosts"))
    query = "&".join(f"{k}={quote(v, safe='/:@,')}" for k, v in host.params
                     if k not in ("command", "known_hosts"))
    query = (query + "&" if query else "") + f"command={quote(str(wrapper), safe='/')}"
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def ssh_options(known_hosts: str | None) -> list[str]:
    """OpenSSH client options of the harness policy: pinned host keys, never a prompt."""
    options = ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    if known_hosts:
        options += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
    return options


def ssh_wrapper(client: str, known_hosts: str | None) -> Path:
    """A shell script that runs `client` with the policy options, written once (content-addressed)."""
    binary = shutil.which(client)
    if binary is None:
        raise InfraError(f"{client} not found: the OpenSSH client runs qemu+ssh:// connections "
                         f"(apt-get install openssh-client)")
    if known_hosts and not Path(known_hosts).is_file():
        raise ConfigError(f"known_hosts={known_hosts}: no such file; put the host's key there "
                          f"(ssh-keyscan shows it; compare its fingerprint with the host's before trusting it)")
    script = f"#!/bin/sh\nexec {shlex.join([binary, *ssh_options(known_hosts)])} \"$@\"\n"
    path = WRAPPERS / f"ssh-{hashlib.sha256(script.encode()).hexdigest()[:16]}"
    if not path.exists():
        WRAPPERS.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(script)
        tmp.chmod(0o755)
        os.replace(tmp, path)  # atomic: xdist workers may write it at the same time
    return path


def explain_failure(uri: str, message: str) -> str:
    """An InfraError message for a failed connection to `uri`: what failed and the fix."""
    host = HostUri.parse(uri)
    if not host.remote:
        return (f"libvirt is not reachable at {uri}: {message}; "
                "start the daemons with tools/libvirtd.sh start (or make setup)")
    lower = message.lower()
    pinned = host.param("known_hosts") or "~/.ssh/known_hosts"
    if "host key verification failed" in lower or "host key" in lower and "mismatch" in lower:
        fix = (f"the SSH host key of {host.where} is not in {pinned} (or it changed); the harness never "
               f"accepts an unknown key: check the key's fingerprint on the host (ssh-keygen -lf "
               f"/etc/ssh/ssh_host_ed25519_key.pub), then add its line to {pinned}")
    elif "permission denied" in lower or "authentication failed" in lower:
        fix = (f"the SSH login as {host.user or 'the current user'} was refused: name the private key with "
               f"keyfile=/path/to/key and put its public key in the host's authorized_keys")
    elif any(s in lower for s in ("connection refused", "timed out", "no route", "could not resolve")):
        fix = f"no SSH server answers at {host.where}: start sshd there, or fix the host name and port"
    elif "not found" in lower and ("nc" in lower or "virt-ssh-helper" in lower):
        fix = f"{host.host} lacks virt-ssh-helper (libvirt >= 6.8; apt-get install libvirt-clients there)"
    elif "libvirt-sock" in lower or "failed to connect socket" in lower:
        fix = f"libvirtd is not running on {host.host}: start it there (tools/libvirtd.sh start)"
    else:
        fix = f"check that libvirtd runs on {host.host} and that `virsh -c '{uri}' version` works"
    return f"libvirt host {uri} is not reachable: {message}; {fix}"


def check_shared_paths(uri: str, files: list[Path], directories: list[Path], timeout: float = 30.0) -> None:
    """Prove that the host of `uri` sees `files` (same size) and `directories` (same contents:
    a token written here is read there) at the same paths. No-op for a local URI."""
    host = HostUri.parse(uri)
    if not host.remote:
        return
    if not host.over_ssh:
        raise InfraError(f"libvirt host {uri}: the harness checks shared paths over SSH only; use a "
                         f"qemu+ssh:// URI (transport {host.transport!r} is not supported)")
    files = [f.absolute() for f in files]
    directories = [d.absolute() for d in directories]
    tokens: dict[Path, str] = {}
    try:
        for directory in directories:
            directory.mkdir(parents=True, exist_ok=True)
            token = directory / f".host-check-{secrets.token_hex(8)}"
            token.write_text(token.name)
            tokens[token] = token.name
        script = "; ".join([f"stat -c %s {shlex.quote(str(f))} 2>/dev/null || echo missing" for f in files]
                           + [f"cat {shlex.quote(str(t))} 2>/dev/null; echo" for t in tokens])
        answer = _run_over_ssh(host, script, timeout).splitlines()
        for path, line in zip(files, answer):
            size = path.stat().st_size
            if line.strip() != str(size):
                seen = "does not exist" if line.strip() == "missing" else f"has {line.strip()} bytes, not {size}"
                raise InfraError(f"libvirt host {uri}: {path} {seen} there; the remote host must see the "
                                 f"harness cache at the same path: mount it there at {cache_dir()}")
        for (token, expected), line in zip(tokens.items(), answer[len(files):]):
            if line.strip() != expected:
                raise InfraError(f"libvirt host {uri}: {token.parent} is not shared with this machine (a file "
                                 f"written here is not seen there); mount the artifacts directory there at "
                                 f"the same path (or pass --harness-artifacts on a shared mount)")
    finally:
        for token in tokens:
            token.unlink(missing_ok=True)


def _run_over_ssh(host: HostUri, script: str, timeout: float) -> str:
    command = [host.param("command") or "ssh", *ssh_options(host.param("known_hosts")), "-T"]
    if host.port:
        command += ["-p", str(host.port)]
    if host.user:
        command += ["-l", host.user]
    if host.param("keyfile"):
        command += ["-i", host.param("keyfile") or ""]
    command += ["--", host.host, f"sh -c {shlex.quote(script)}"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise InfraError(f"{command[0]} not found: the OpenSSH client is needed for {host.uri} "
                         f"(apt-get install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise InfraError(f"libvirt host {host.uri}: ssh did not answer within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise InfraError(explain_failure(host.uri, proc.stderr.strip() or f"ssh exit status {proc.returncode}"))
    return proc.stdout
