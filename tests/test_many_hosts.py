"""Many hosts: a profile lists several libvirt URIs and the xdist workers are spread across them.

The second host is this machine again, reached the way a remote one is: libvirt's
qemu+ssh:// transport through a real OpenSSH server that the tests start on
127.0.0.1, with its host key pinned in a known_hosts file and a client key made
for the run. Everything remote-specific runs for real: the ssh client and
virt-ssh-helper, events and the console stream over the SSH link, the host-key
refusal, the sweep, and the shared-path check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from harness.config import Profile
from harness.content.format import file_name
from harness.errors import ConfigError, InfraError
from harness.paths import CONTENT_FIXTURES
from harness.testing import require_module
from harness.vm.connection import open_connection
from harness.vm.hosts import check_shared_paths
from harness.vm.machine import Machine, MachineSpec
from harness.vm.ssh import free_port
from harness.vm.templates import METADATA_NS

from .conftest import REPO, require_tool, run_harness

pytestmark = pytest.mark.vm

GOOD = (CONTENT_FIXTURES / "good.sys").read_bytes()
CF291 = (CONTENT_FIXTURES / "cf291-field21.sys").read_bytes()
LOCAL = "qemu:///system"


@dataclass
class SshHost:
    """An OpenSSH server on 127.0.0.1 and what a client needs to log in to it."""

    port: int
    client_key: Path
    known_hosts: Path  # the server's host key, pinned
    log: Path
    proc: subprocess.Popen[str]

    def uri(self, known_hosts: Path | None = None, extra: str = "") -> str:
        return (f"qemu+ssh://root@127.0.0.1:{self.port}/system?keyfile={self.client_key}"
                f"&known_hosts={known_hosts or self.known_hosts}{extra}")

    def accepted_logins(self) -> int:
        return self.log.read_text().count("Accepted publickey for root")


def start_sshd(directory: Path, hide: Path | None = None) -> SshHost:
    """sshd -D on a free loopback port with keys made here. With `hide`, sshd runs in its own
    mount namespace where an empty tmpfs covers that directory: a host that does not share it."""
    sshd = require_tool("/usr/sbin/sshd", "apt-get install openssh-server")  # absolute: sshd re-executes itself
    keygen = require_tool("ssh-keygen", "apt-get install openssh-client")
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):  # ssh-keygen writes private keys 0600, as sshd and ssh demand
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(directory / name)],
                       check=True, timeout=30)
    (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
    port = free_port()
    host_key = (directory / "host_key.pub").read_text().split()[:2]
    (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_key)}\n")
    config = directory / "sshd_config"
    config.write_text(f"""\
ListenAddress 127.0.0.1
Port {port}
HostKey {directory / 'host_key'}
PidFile none
AuthorizedKeysFile {directory / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The authorized keys live under /tmp (world-writable): StrictModes would refuse them.
StrictModes no
LogLevel VERBOSE
""")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    command = [sshd, "-D", "-e", "-f", str(config)]
    if hide is not None:
        unshare = require_tool("unshare", "apt-get install util-linux")
        hide.mkdir(parents=True, exist_ok=True)
        command = [unshare, "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t tmpfs harness-hidden "$0" && exec "$@"', str(hide), *command]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    log = directory / "sshd.log"
    listening = threading.Event()

    def drain() -> None:  # sshd's log, kept in a file; the listening line is the ready signal
        assert proc.stderr is not None
        with log.open("a") as out:
            for line in proc.stderr:
                out.write(line)
                out.flush()
                if f"Server listening on 127.0.0.1 port {port}" in line:
                    listening.set()

    threading.Thread(target=drain, name="sshd-log", daemon=True).start()
    if not listening.wait(15):
        proc.kill()
        proc.wait(10)
        pytest.fail(f"sshd did not start listening within 15 s: {log.read_text()[-2000:]}")
    return SshHost(port, directory / "client_key", directory / "known_hosts", log, proc)


def stop_sshd(host: SshHost) -> None:
    host.proc.terminate()
    host.proc.wait(10)


@pytest.fixture(scope="module")
def ssh_host(tmp_path_factory: pytest.TempPathFactory) -> Generator[SshHost, None, None]:
    host = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield host
    stop_sshd(host)


def machine(uri: str, guest: object, artifacts: Path, run_id: str) -> Machine:
    return Machine(MachineSpec(profile=Profile(uri=uri), guest=guest, artifacts=artifacts,  # type: ignore[arg-type]
                               run_id=run_id, test_id="tests/test_many_hosts.py"))


def test_two_workers_run_their_machines_on_two_hosts(reference_guest: object, ssh_host: SshHost,
                                                     tmp_path: Path) -> None:
    require_module("xdist", "make setup (pip install pytest-xdist)")
    remote = ssh_host.uri()
    config = tmp_path / "hosts.yaml"
    config.write_text(f"profiles:\n  two-hosts:\n    uris: [{LOCAL}, '{remote}']\n")
    artifacts = tmp_path / "artifacts"
    logins_before = ssh_host.accepted_logins()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", f"--harness-config={config}",
         "--harness-profile=two-hosts", f"--harness-artifacts={artifacts}", "tests/test_vm_linux.py",
         "-k", "good_content or zeroed", "-q"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
    [run] = artifacts.iterdir()
    verdicts = {d.name: json.loads((d / "verdict.json").read_text()) for d in run.iterdir()}
    hosts = {name: verdict["uri"] for name, verdict in verdicts.items()}  # the URI the machine opened
    assert sorted(hosts.values()) == sorted([LOCAL, remote])  # one machine on each host
    for test, verdict in verdicts.items():  # worker gw0 ran on the first host, gw1 on the second
        worker = verdict["domain"].split("-")[-2]
        assert hosts[test] == {"gw0": LOCAL, "gw1": remote}[worker], (test, worker, hosts[test])
        expected = "healthy" if "good_content" in test else "content-rejected"
        assert verdict["verdict"] == expected, verdict
    assert ssh_host.accepted_logins() > logins_before  # the second host really was reached over SSH


@pytest.mark.expect_boot_loop
def test_over_ssh_a_machine_gets_its_events_and_console_and_a_crash_with_its_report(
        reference_guest: object, ssh_host: SshHost, tmp_path: Path) -> None:
    vm = machine(ssh_host.uri(), reference_guest, tmp_path, "ssh-crash")
    try:
        vm.install_content({file_name(291, 0, 31): GOOD, file_name(291, 0, 32): CF291})
        vm.boot()
        assert vm.conn is not None and vm.conn.getURI().startswith("qemu+ssh://root@127.0.0.1:")
        verdict = vm.wait_verdict()
        assert verdict.verdict == "boot-loop", verdict.one_line()
        assert verdict.crash is not None and verdict.crash.function == "chf_match_criterion"
        console = vm.serial_tail(50000)  # what the console stream brought over the SSH link
        assert "chf_match_criterion" in console and "Kernel panic" in console
        events = [json.loads(line)["event"] for line in (tmp_path / "events.jsonl").read_text().splitlines()]
        assert events.count("lifecycle:crashed:panicked") >= 2  # lifecycle events over the SSH link
    finally:
        vm.close()


def test_an_unknown_host_key_is_refused_never_accepted(ssh_host: SshHost, tmp_path: Path) -> None:
    require_tool("ssh", "apt-get install openssh-client")
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30)
    wrong = tmp_path / "known_hosts"  # pins some other server's key for this address
    wrong.write_text(f"[127.0.0.1]:{ssh_host.port} {' '.join(Path(f'{other}.pub').read_text().split()[:2])}\n")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    logins_before = ssh_host.accepted_logins()
    for pinned in (wrong, empty):
        with pytest.raises(InfraError) as refused:
            open_connection(ssh_host.uri(known_hosts=pinned))
        message = str(refused.value)
        assert f"host key of 127.0.0.1:{ssh_host.port} is not in {pinned}" in message, message
        assert "never accepts an unknown key" in message
        assert pinned.read_text() in (wrong.read_text(), "")  # nothing was added to the file
    assert ssh_host.accepted_logins() == logins_before  # no session was opened
    with pytest.raises(ConfigError, match="no_verify=1 accepts any host key"):
        open_connection(ssh_host.uri(extra="&no_verify=1"))


def leaked_domain_xml(name: str, guest: object, artifacts: Path, owner_pid: int, owner_host: str = "") -> str:
    """A domain of a harness run as the templates make it: our prefix and our metadata."""
    host = f"<harness:host>{owner_host}</harness:host>" if owner_host else ""
    return f"""<domain type='qemu'><name>{name}</name>
      <metadata><harness:vm xmlns:harness='{METADATA_NS}'><harness:run>leak</harness:run>
        <harness:test>t</harness:test><harness:artifacts>{artifacts}</harness:artifacts>
        <harness:pid>{owner_pid}</harness:pid>{host}</harness:vm></metadata>
      <memory unit='MiB'>128</memory>
      <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{guest.kernel}</kernel>
      <initrd>{guest.initrd}</initrd><cmdline>console=ttyS0 harness.hang=1</cmdline></os>
      <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
      <devices><serial type='pty'/><memballoon model='none'/></devices></domain>"""  # type: ignore[attr-defined]


def test_clean_sweeps_every_host_and_leaves_another_machines_domain_alone(
        reference_guest: object, ssh_host: SshHost, tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])  # the owner of a killed run: its pid is gone
    gone.wait()
    conn = open_connection(ssh_host.uri())
    leaked_dir, foreign_dir = tmp_path / "leaked", tmp_path / "other-runner"
    leaked, foreign = f"harness-leak-{os.getpid()}-a", f"harness-leak-{os.getpid()}-b"
    domains = []
    try:
        for name, directory, owner_host in ((leaked, leaked_dir, ""),
                                            (foreign, foreign_dir, "other-runner.example")):
            directory.mkdir()
            (directory / "data-disk.img").write_bytes(bytes(1 << 20))
            xml = leaked_domain_xml(name, reference_guest, directory, gone.pid, owner_host)
            domains.append(conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED))  # paused: no CPU spent

        unreachable = f"qemu+ssh://root@127.0.0.1:{free_port()}/system?keyfile={ssh_host.client_key}"
        proc = run_harness("clean", "--uri", unreachable, "--uri", ssh_host.uri(),
                           "--artifacts", tmp_path / "no-artifacts")
        assert proc.returncode == 3, proc.stdout + proc.stderr  # one host could not be swept
        assert "no SSH server answers at 127.0.0.1" in proc.stderr
        assert f"destroying {leaked} on qemu+ssh://root@127.0.0.1:{ssh_host.port}/system" in proc.stderr
        assert "on 1 host(s)" in proc.stdout
        names = [d.name() for d in conn.listAllDomains()]
        assert leaked not in names and not (leaked_dir / "data-disk.img").exists()
        assert foreign in names and (foreign_dir / "data-disk.img").exists()  # its owner lives elsewhere
    finally:
        for dom in domains:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass  # swept already
        conn.close()


def test_a_host_that_does_not_share_the_paths_is_refused_with_the_path_and_the_fix(
        reference_guest: object, tmp_path: Path) -> None:
    hidden = tmp_path / "not-shared"
    host = start_sshd(tmp_path / "sshd", hide=hidden)
    try:
        check_shared_paths(host.uri(), [reference_guest.kernel], [tmp_path / "shared"])  # type: ignore[attr-defined]
        with pytest.raises(InfraError) as refused:
            check_shared_paths(host.uri(), [], [hidden])
        assert f"{hidden} is not shared with this machine" in str(refused.value)
        assert "mount the artifacts directory there at the same path" in str(refused.value)
        (hidden / "vmlinux").write_bytes(b"only here")
        with pytest.raises(InfraError, match=f"{hidden / 'vmlinux'} does not exist there"):
            check_shared_paths(host.uri(), [hidden / "vmlinux"], [])
    finally:
        stop_sshd(host)
