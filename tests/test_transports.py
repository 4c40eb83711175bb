"""Transports into a guest: SSH commands and SFTP, the QEMU guest agent, PowerShell command lines.

The SSH, SFTP and guest-agent stories run against the real Linux reference guest
(dropbear with OpenSSH's sftp-server, qemu-ga on the org.qemu.guest_agent.0 port),
booted through libvirt.  The same classes serve Windows guests (Windows OpenSSH,
QEMU-GA of the virtio-win tools); no Windows guest runs here, so the PowerShell
command lines are checked by decoding them back, byte for byte.
"""

from __future__ import annotations

import base64
import time

import pytest

from harness.content.format import file_name
from harness.paths import CONTENT_FIXTURES
from harness.vm.guest_agent import GuestAgent, GuestAgentError, GuestExecTimeout
from harness.vm.machine import Machine
from harness.vm.transport import (
    CommandTimeout,
    CrashDuringCommand,
    SshTransport,
    sftp_put_atomic,
)
from harness.windows.powershell import (
    CMD_LINE_LIMIT,
    CONTENT_DIR,
    PowerShellError,
    build_script,
    content_path,
    decode_clixml,
    powershell_argv,
    powershell_command_line,
    ps_quote,
    run_powershell,
    sftp_path,
)
from harness.vm.ssh import CommandResult

from .conftest import REPO

GOOD = (CONTENT_FIXTURES / "good.sys").read_bytes()
CF291 = (CONTENT_FIXTURES / "cf291-field21.sys").read_bytes()
GOOD_NAME = file_name(291, 0, 31)
UPDATE_NAME = file_name(291, 0, 33)
BAD_NAME = file_name(291, 0, 32)
RELOAD = "/sys/module/harness_sensor/parameters/reload"


# ------------------------------------------------------------------ PowerShell command lines

def _decoded(line: str) -> str:
    words = line.split(" ")
    assert words[:-1] == ["powershell.exe", "-NoLogo", "-NoProfile", "-NonInteractive",
                          "-ExecutionPolicy", "Bypass", "-EncodedCommand"]
    raw = base64.b64decode(words[-1], validate=True)
    assert len(raw) % 2 == 0
    return raw.decode("utf-16-le")


def test_the_command_line_is_base64_of_utf16le_with_the_prelude_first() -> None:
    line = powershell_command_line("Get-ChildItem -LiteralPath $dir | Select-Object -ExpandProperty Name",
                                   {"dir": CONTENT_DIR})
    assert set(line.split(" ")[-1]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    script = _decoded(line)
    assert script.startswith("$ErrorActionPreference = 'Stop'\n")
    assert "$ProgressPreference = 'SilentlyContinue'" in script
    assert f"$dir = '{CONTENT_DIR}'\n" in script
    body = script.index("Get-ChildItem -LiteralPath $dir")
    assert script.index("$dir = ") < body < script.index("exit $global:LASTEXITCODE")
    assert script == build_script("Get-ChildItem -LiteralPath $dir | Select-Object -ExpandProperty Name",
                                  {"dir": CONTENT_DIR})


def test_the_windows_reload_talks_to_the_driver_port_and_never_unloads_it() -> None:
    """The online reload (harness/windows/backend.py RELOAD_COMMAND): fltlib's
    FilterConnectCommunicationPort / FilterSendMessage on the driver's port, then the driver's
    word printed as HARNESS-SENSOR-RELOADED lines; never `fltmc unload`, which would throw the
    hardened build's last good content away (tests/test_sys_tier_status.py runs the driver side)."""
    from harness.sys_tier.runner import PORT_NAME as DRIVER_PORT
    from harness.windows.backend import RELOAD_ARGS, RELOAD_COMMAND
    from harness.windows.powershell import PORT_NAME, reload_command_line

    assert PORT_NAME == DRIVER_PORT == "\\HarnessFltPort"
    line = reload_command_line()
    assert len(line) <= CMD_LINE_LIMIT
    script = _decoded(line)
    assert script == build_script(RELOAD_COMMAND, RELOAD_ARGS)
    assert "$PortName = '\\HarnessFltPort'\n" in script
    assert "fltmc" not in script.lower()
    for needle in ('[DllImport("fltlib.dll", CharSet = CharSet.Unicode)]', "FilterConnectCommunicationPort($PortName",
                   "FilterSendMessage($port", "CloseHandle($port)", "Get-DriverWordLines",
                   "-Kind 'RELOADED'", ". (Join-Path 'C:\\harness' 'lib.ps1')"):
        assert needle in script, needle
    # the C# here-string closes at the start of a line, or PowerShell reads on to the end
    lines = script.splitlines()
    opened = lines.index("Add-Type -TypeDefinition @'")
    assert "'@" in lines[opened + 1:]
    lib = (REPO / "vm-templates" / "windows" / "setup" / "lib.ps1").read_text()
    assert "function Get-DriverWordLines" in lib and "function Get-DriverWord " in lib


def test_an_argument_with_quotes_newlines_and_dollars_survives_as_a_literal() -> None:
    nasty = "it's a \"test\" with $env:PATH, `backticks`, 50% %PATH% & | > <\nsecond line \u2019smart\u2019"
    script = _decoded(powershell_command_line("Write-Output $value", {"value": nasty}))
    assignment = script[script.index("$value = "):]
    literal = assignment[len("$value = "):]
    # PowerShell reads '...' literally, a doubled quote (any of the five it knows) standing for one.
    assert literal.startswith("'")
    body, end = [], 1
    while True:
        c = literal[end]
        if c in "'\u2018\u2019\u201a\u201b":
            if literal[end + 1] == c:
                body.append(c)
                end += 2
                continue
            break
        body.append(c)
        end += 1
    assert "".join(body) == nasty
    assert literal[end + 1] == "\n"


def test_quote_helper_and_guest_exec_argv() -> None:
    assert ps_quote("plain") == "'plain'"
    assert ps_quote("it's") == "'it''s'"
    assert ps_quote("\u2018x\u2019") == "'\u2018\u2018x\u2019\u2019'"
    argv = powershell_argv("exit 3")
    assert argv[0] == "powershell.exe" and argv[-2] == "-EncodedCommand"
    assert "exit 3" in base64.b64decode(argv[-1]).decode("utf-16-le")
    with pytest.raises(PowerShellError, match="not a plain identifier"):
        build_script("x", {"bad name": "v"})


def test_a_script_too_long_for_cmd_exe_is_refused_with_the_fix() -> None:
    with pytest.raises(PowerShellError, match=f"over cmd.exe's {CMD_LINE_LIMIT}: put the script in a file"):
        powershell_command_line("Write-Output 'x'\n" * 400)


def test_clixml_stderr_is_decoded_to_text() -> None:
    stderr = ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
              '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T></TN>'
              '<MS><I64 N="SourceId">1</I64></MS></Obj>'
              '<S S="Error">Remove-Item : Cannot find path \'C:\\x\' because it does not exist._x000D__x000A_</S>'
              '<S S="Error">At line:1 char:1_x000D__x000A_</S></Objs>')
    assert decode_clixml(stderr) == ("Remove-Item : Cannot find path 'C:\\x' because it does not exist.\n"
                                     "At line:1 char:1")
    assert decode_clixml("plain text\n") == "plain text\n"


def test_windows_paths_for_sftp() -> None:
    assert sftp_path(CONTENT_DIR) == "/C:/Windows/System32/drivers/HarnessSensor"
    assert content_path(GOOD_NAME) == f"/C:/Windows/System32/drivers/HarnessSensor/{GOOD_NAME}"
    with pytest.raises(PowerShellError):
        sftp_path(r"Windows\System32")
    with pytest.raises(PowerShellError):
        content_path("..\\evil.sys")


def test_run_powershell_propagates_the_exit_code_and_the_error_text() -> None:
    class Recorder:
        """Stands in for the guest's sshd: records the exact line, answers like powershell.exe would."""

        def __init__(self) -> None:
            self.lines: list[str] = []

        def run(self, command: str, stdin: bytes = b"", timeout: float | None = None,
                check: bool = False) -> CommandResult:
            self.lines.append(command)
            return CommandResult(command, 1, "", '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.'
                                 'microsoft.com/powershell/2004/04"><S S="Error">denied_x000D__x000A_</S></Objs>')

    runner = Recorder()
    with pytest.raises(PowerShellError, match="PowerShell exited 1 running 'Remove-Item -LiteralPath \\$p': denied"):
        run_powershell(runner, "Remove-Item -LiteralPath $p", {"p": "C:\\x"}, timeout=5)
    assert "Remove-Item -LiteralPath $p" in _decoded(runner.lines[0])
    result = run_powershell(runner, "exit 1", check=False)
    assert result.rc == 1 and result.stderr == "denied"


# ------------------------------------------------------------------ the guest agent (real guest)

@pytest.mark.vm
def test_guest_agent_runs_commands_and_delivers_content_the_sensor_loads(vm: Machine) -> None:
    vm.install_content({GOOD_NAME: GOOD})
    vm.boot()
    assert vm.wait_verdict().verdict == "healthy"
    agent = GuestAgent(vm.dom, timeout=30, crash_probe=vm.crash_probe())
    waited = agent.wait_connected(timeout=30)
    agent.ping()
    agent.sync()

    build = agent.exec("/bin/cat", ["/sys/module/harness_sensor/parameters/build"], timeout=30)
    assert (build.rc, build.stdout, build.stderr) == (0, b"vulnerable\n", b"")
    failing = agent.exec("/bin/sh", ["-c", "echo out; echo 'it''s bad' >&2; exit 7"], timeout=30)
    assert (failing.rc, failing.stdout, failing.stderr) == (7, b"out\n", b"its bad\n")
    fed = agent.exec("/bin/cat", stdin=b"through stdin\n", timeout=30)
    assert fed.stdout == b"through stdin\n"

    # A content update through the agent alone: the file, then the sensor's reload knob.
    since = vm.buffer.end
    agent.put_file(f"/data/content/{UPDATE_NAME}", GOOD)
    assert agent.read_file(f"/data/content/{UPDATE_NAME}") == GOOD
    listing = agent.exec("/bin/ls", ["/data/content"], timeout=30).text().split()
    assert listing == sorted([GOOD_NAME, UPDATE_NAME])  # no .part file left behind
    agent.write_file(RELOAD, b"1\n")
    vm.expect(rf"harness_sensor: {UPDATE_NAME}: loaded", timeout=60, since=since)
    vm.expect(r"HARNESS-SENSOR-RELOADED build=vulnerable files=2 loaded=2 rejected=0", timeout=60, since=since)

    # A command that outlives its deadline is reported as such, naming the command.
    t0 = time.monotonic()
    with pytest.raises(GuestExecTimeout, match=r"guest-exec /bin/sleep 30 \(pid \d+\) did not end within 1 s"):
        agent.exec("/bin/sleep", ["30"], timeout=1)
    assert time.monotonic() - t0 < 20  # the 1 s deadline, not the command's 30 s (slack: a loaded CI host)
    with pytest.raises(GuestAgentError, match="guest-file-open /nonexistent/x"):
        agent.read_file("/nonexistent/x")
    print(f"\n[agent] connected {waited:.2f} s after the verdict")


# ------------------------------------------------------------------ SSH and SFTP (real guest)

@pytest.mark.vm
def test_sftp_round_trip_and_a_command_timeout_over_the_pinned_session(vm: Machine) -> None:
    vm.enable_network()
    vm.install_content({GOOD_NAME: GOOD})
    vm.boot()
    assert vm.wait_verdict().verdict == "healthy"
    shell = SshTransport(vm.ssh(), timeout=20)  # host key pinned from the guest build

    big = bytes(range(256)) * 4096  # 1 MiB, every byte value
    shell.put(big, "/data/content/blob.bin")
    assert shell.get("/data/content/blob.bin") == big
    sftp_put_atomic(vm.ssh(), f"/data/content/{GOOD_NAME}", GOOD)  # over an existing file
    assert shell.listdir("/data/content") == sorted(["blob.bin", GOOD_NAME])  # no temp names left
    local = shell.get_to(f"/data/content/{GOOD_NAME}", vm.artifacts / "fetched" / GOOD_NAME)
    assert local.read_bytes() == GOOD

    result = shell.run("cmp /data/content/blob.bin - && echo same; echo to-stderr >&2; exit 5", stdin=big)
    assert (result.rc, result.stdout, result.stderr) == (5, "same\n", "to-stderr\n")

    t0 = time.monotonic()
    with pytest.raises(CommandTimeout, match="ssh command timed out after 2 s: sleep 30"):
        shell.run("sleep 30", timeout=2)
    assert time.monotonic() - t0 < 6
    assert shell.run("echo still-here").stdout == "still-here\n"  # the session outlived the timeout


# ------------------------------------------------------------------ a crash takes the session

@pytest.mark.vm
@pytest.mark.expect_crash
def test_a_session_killed_by_a_guest_crash_is_reported_as_the_crash(vm: Machine) -> None:
    vm.enable_network()
    vm.install_content({GOOD_NAME: GOOD})
    vm.boot()
    assert vm.wait_verdict().verdict == "healthy"
    shell = SshTransport(vm.ssh(), timeout=30, crash_probe=vm.crash_probe())
    shell.put(CF291, f"/data/content/{BAD_NAME}")  # the online update of 04:09 UTC, by SFTP

    t0 = time.monotonic()
    with pytest.raises(CrashDuringCommand) as crash:
        shell.run(f"echo 1 > {RELOAD}; echo reloaded")
    seconds = time.monotonic() - t0
    assert crash.value.report.title == "BUG: unable to handle page fault in chf_match_criterion"
    assert crash.value.report.function == "chf_match_criterion"
    assert "chf_match_criterion" in str(crash.value) and f"echo 1 > {RELOAD}" in str(crash.value)
    assert seconds < 15, f"the crash took {seconds:.1f} s to be reported (the command timeout is 30 s)"
    verdict = vm.wait_verdict()
    assert verdict.verdict in ("crashed", "boot-loop"), verdict.one_line()
    assert verdict.crash is not None and verdict.crash.title == crash.value.report.title
