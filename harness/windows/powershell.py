"""PowerShell commands for Windows guests, quoting-proof, over any transport.

    result = run_powershell(shell, "Get-ChildItem -LiteralPath $dir | Select -Expand Name",
                            args={"dir": CONTENT_DIR}, timeout=60)

The script travels as `powershell.exe ... -EncodedCommand <base64 of UTF-16LE>`: the
only characters on the command line are base64's, so neither cmd.exe (the default
shell of Windows OpenSSH, which runs `cmd.exe /c <command>`) nor PowerShell's own
command-line parser can mangle a quote, a newline or a `%`.  Values reach the script
as variables assigned from single-quoted PowerShell literals (ps_quote), never pasted
into code.

Every script runs under a prelude: $ErrorActionPreference = 'Stop' (a failing cmdlet
ends the script), no progress records (they would arrive on stderr as CLIXML), UTF-8
output.  The exit code is the script's own `exit N`; else 1 for an error nothing
caught (its message on stderr); else the exit code of the last native program the
script ran ($LASTEXITCODE); else 0.

Windows PowerShell writes error records to a redirected stderr as CLIXML
("#< CLIXML" then <Objs ...>); decode_clixml() turns them back into text.

Nothing here has run against a real Windows PowerShell (none can run on this host):
the encoding is checked by decoding it back (tests/test_transports.py).
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Protocol

from ..errors import HarnessError
from ..vm.ssh import CommandResult

# The sensor's content directory on the golden image (vm-templates/windows/setup/setup.ps1,
# step 'sensor'; lib.ps1 Get-SensorState): %SystemRoot%\System32\drivers\HarnessSensor.
CONTENT_DIR = r"C:\Windows\System32\drivers\HarnessSensor"
POWERSHELL = "powershell.exe"  # Windows PowerShell 5.1, present on every supported edition
FLAGS = ("-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand")
# cmd.exe refuses command lines longer than 8191 characters; Windows OpenSSH runs exec
# requests through it.  The base64 of UTF-16LE is 8/3 the script's length.
CMD_LINE_LIMIT = 8191

PRELUDE = """\
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
try { [Console]::OutputEncoding = [System.Text.Encoding]::UTF8 } catch { }
$OutputEncoding = [System.Text.Encoding]::UTF8
"""
# The script runs in a child scope; an `exit N` inside it ends the process with N.
BODY = """\
try {{
    $global:LASTEXITCODE = 0
    & {{
{script}
    }}
    if ($global:LASTEXITCODE) {{ exit $global:LASTEXITCODE }}
    exit 0
}} catch {{
    [Console]::Error.WriteLine(($_ | Out-String).Trim())
    exit 1
}}
"""

# The online reload (drivers/windows/harnessflt.c, "the port"): connect to the driver's FltMgr
# communication port through fltlib.dll (P/Invoke from Add-Type: no tool to install on the
# guest), send one message, close the handle.  The driver re-reads its content directory in
# that call; the hardened build keeps the last good content of a file whose update is bad.
# Then the driver's new word (lib.ps1 Get-DriverWord, the status key) goes to COM2 and stdout
# in the lines the Windows family parses, with HARNESS-SENSOR-RELOADED.  Not unload + load:
# that would throw the last good content away.  fltlib's calls return an HRESULT:
# 0x80070015 (ERROR_NOT_READY, from STATUS_DEVICE_NOT_READY) when the first load has not run,
# 0x800700AA (ERROR_BUSY, from STATUS_DEVICE_BUSY) while another load pass runs.
PORT_NAME = "\\HarnessFltPort"
RELOAD_SCRIPT = """\
. (Join-Path 'C:\\harness' 'lib.ps1')
Add-Type -TypeDefinition @'
using System;
using System.Runtime.InteropServices;
public static class HarnessFltPort {
    [DllImport("fltlib.dll", CharSet = CharSet.Unicode)]
    public static extern int FilterConnectCommunicationPort(string portName, uint options, IntPtr context,
        ushort sizeOfContext, IntPtr securityAttributes, out IntPtr port);
    [DllImport("fltlib.dll")]
    public static extern int FilterSendMessage(IntPtr port, byte[] inBuffer, uint inBufferSize,
        IntPtr outBuffer, uint outBufferSize, out uint bytesReturned);
    [DllImport("kernel32.dll")]
    public static extern bool CloseHandle(IntPtr handle);
}
'@
$port = [IntPtr]::Zero
$hr = [HarnessFltPort]::FilterConnectCommunicationPort($PortName, 0, [IntPtr]::Zero, 0, [IntPtr]::Zero, [ref]$port)
if ($hr -ne 0) { throw ('FilterConnectCommunicationPort({0}) failed: HRESULT 0x{1:X8}' -f $PortName, $hr) }
try {
    $message = [System.Text.Encoding]::ASCII.GetBytes('RELD')
    $returned = [uint32]0
    $hr = [HarnessFltPort]::FilterSendMessage($port, $message, [uint32]$message.Length, [IntPtr]::Zero, 0, [ref]$returned)
    if ($hr -ne 0) { throw ('FilterSendMessage({0}) failed: HRESULT 0x{1:X8}' -f $PortName, $hr) }
} finally {
    [void][HarnessFltPort]::CloseHandle($port)
}
foreach ($line in (Get-DriverWordLines -Word (Get-DriverWord) -Listed $true -Kind 'RELOADED')) {
    Write-HarnessLine -Line $line -LogName 'reload.log'
    Write-Output $line
}
"""


# A vendor driver's online reload (lib.ps1 Restart-VendorDriver: FltMgr's unload and load for a
# listed minifilter, else sc.exe stop and start), then its lines again (Get-VendorDriverLines,
# event=reload) on COM2 and stdout: the profile's `ready`/`rejected` are matched against them
# (docs/windows-vendor-driver.md).
VENDOR_RELOAD_SCRIPT = """\
. (Join-Path 'C:\\harness' 'lib.ps1')
$driver = Get-ImageDriver
Restart-VendorDriver -Service $driver.Service
$result = Get-VendorDriverLines -Service $driver.Service -ContentDir $driver.ContentDir -Event 'reload'
foreach ($line in $result.Lines) {
    Write-HarnessLine -Line $line -LogName 'reload.log'
    Write-Output $line
}
"""


def reload_command_line() -> str:
    """The SSH command line of the online reload (RELOAD_SCRIPT with the port name)."""
    return powershell_command_line(RELOAD_SCRIPT, {"PortName": PORT_NAME})


class PowerShellError(HarnessError):
    """A PowerShell command cannot be made (too long, a bad variable name) or it failed."""


class _Runner(Protocol):
    def run(self, command: str, stdin: bytes = b"", timeout: float | None = None,
            check: bool = False) -> CommandResult: ...


# Characters PowerShell treats as a single quote inside a '...' literal: ' and the
# typographic ones (U+2018, U+2019, U+201A, U+201B).  Each is escaped by doubling it.
_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ps_quote(value: str) -> str:
    """`value` as a PowerShell single-quoted literal: nothing in it is expanded ($, `, ")."""
    return "'" + "".join(c + c if c in _SINGLE_QUOTES else c for c in value) + "'"


def build_script(script: str, args: Mapping[str, str] | None = None) -> str:
    """The full script: the prelude, `$name = '<value>'` for each argument, the body."""
    lines = [PRELUDE]
    for name, value in (args or {}).items():
        if not _VARIABLE.match(name):
            raise PowerShellError(f"PowerShell variable name {name!r} is not a plain identifier "
                                  "(letters, digits, _; not starting with a digit)")
        lines.append(f"${name} = {ps_quote(str(value))}\n")
    # Not indented: a here-string's closing '@ must stay at the start of its line.
    lines.append(BODY.format(script=script.rstrip("\n")))
    return "".join(lines)


def encode(script: str) -> str:
    """base64 of the script's UTF-16LE bytes: what -EncodedCommand takes."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def powershell_argv(script: str, args: Mapping[str, str] | None = None,
                    executable: str = POWERSHELL) -> list[str]:
    """The argument vector (for a program runner with no shell: the guest agent's guest-exec)."""
    return [executable, *FLAGS, encode(build_script(script, args))]


def powershell_command_line(script: str, args: Mapping[str, str] | None = None,
                            executable: str = POWERSHELL) -> str:
    """The one command line for an SSH exec request (parsed by cmd.exe on the guest)."""
    line = " ".join(powershell_argv(script, args, executable))
    if len(line) > CMD_LINE_LIMIT:
        raise PowerShellError(f"the encoded PowerShell command is {len(line)} characters, over cmd.exe's "
                              f"{CMD_LINE_LIMIT}: put the script in a file (SFTP) and run it with -File")
    return line


@dataclass(frozen=True)
class PowerShellResult:
    script: str
    rc: int
    stdout: str
    stderr: str  # CLIXML decoded to text

    @property
    def ok(self) -> bool:
        return self.rc == 0


def run_powershell(runner: _Runner, script: str, args: Mapping[str, str] | None = None,
                   timeout: float | None = None, check: bool = True) -> PowerShellResult:
    """Run `script` through `runner` (an SshTransport, or an SshSession): exit code, stdout,
    stderr.  check=True raises PowerShellError on a non-zero exit code, with the error text."""
    result = runner.run(powershell_command_line(script, args), timeout=timeout)
    stderr = decode_clixml(result.stderr)
    out = PowerShellResult(script, result.rc, result.stdout.replace("\r\n", "\n"), stderr)
    if check and result.rc != 0:
        first = script.strip().splitlines()[0] if script.strip() else "(empty script)"
        raise PowerShellError(f"PowerShell exited {result.rc} running {first[:120]!r}: "
                              f"{stderr.strip()[-800:] or '(no error text)'}")
    return out


_ESCAPE = re.compile(r"(?:_x[0-9A-Fa-f]{4}_)+")


def _unescape(text: str) -> str:
    """CLIXML escapes control characters and surrogates as _xHHHH_ UTF-16 code units."""

    def units(match: re.Match[str]) -> str:
        raw = b"".join(int(u, 16).to_bytes(2, "little") for u in re.findall(r"_x([0-9A-Fa-f]{4})_", match[0]))
        return raw.decode("utf-16-le", errors="replace")

    return _ESCAPE.sub(units, text)


def decode_clixml(stderr: str, streams: tuple[str, ...] = ("Error", "Warning")) -> str:
    """Plain text from Windows PowerShell's CLIXML stderr (other text is returned as is).
    Keeps the <S S="Error"> (and Warning) strings, drops progress records."""
    marker = "#< CLIXML"
    if marker not in stderr:
        return stderr
    before, _, rest = stderr.partition(marker)
    pieces = [before.strip()] if before.strip() else []
    for block in re.findall(r"<Objs\b.*?</Objs>", rest, flags=re.S):
        try:
            root = ET.fromstring(block)
        except ET.ParseError:
            pieces.append(block)
            continue
        for element in root.iter():
            if element.tag.rsplit("}", 1)[-1] == "S" and element.get("S") in streams:
                pieces.append(_unescape(element.text or "").rstrip("\r\n"))
    return "\n".join(pieces)


def sftp_path(windows_path: str) -> str:
    r"""A Windows path as Windows OpenSSH's SFTP server names it: C:\Windows\x -> /C:/Windows/x."""
    path = PureWindowsPath(windows_path)
    if not path.drive or not path.root:
        raise PowerShellError(f"{windows_path!r} is not an absolute Windows path (like C:\\Windows\\...)")
    return "/" + path.drive + "/" + "/".join(path.parts[1:])


def content_path(name: str, directory: str = CONTENT_DIR) -> str:
    """The SFTP path of a content file in the driver's content directory (default: the sample's)."""
    if not name or any(c in name for c in '\\/:*?"<>|'):
        raise PowerShellError(f"{name!r} is not a plain Windows file name")
    base = directory.rstrip("\\")
    return sftp_path(f"{base}\\{name}")
