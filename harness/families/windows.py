"""The Windows guest family: its console markers and crash parser.

What the host reads (design notes, shared/design/windows-notes.md sections 2-3):

* **COM1, EMS/SAC.**  With `bcdedit /ems on` and `/emssettings EMSPORT:1`, the SAC
  driver prints, once per boot of the kernel::

      Computer is booting, SAC started and initialized.

      Use the "ch -?" command for information about using channels.
      Use the "?" command for general help.

      SAC>
      EVENT: The CMD command is now available.

  The banner opens a boot; the `EVENT` line says Windows came up far enough to
  run a command prompt (user mode is running).  Sources:
  cloud-hypervisor/cloud-hypervisor:docs/windows.md (the banner, prompt and
  `EVENT:` lines of a Windows guest), oxidecomputer/propolis:
  phd-tests/framework/src/guest_os/windows_server_2022.rs (waits for exactly
  these two lines on Windows Server 2016/2019/2022), Yandex Cloud's serial
  console docs (the same two lines on COM2).  A bugcheck on this port is the EMS
  BLUESCREEN record (`harness.crash.windows`).
* **The sensor's lines.**  `harnessflt.sys` prints the Linux sensor's lines with
  DbgPrintEx (drivers/windows/harnessflt.c), which reach a kernel debugger, not
  a serial port.  **Assumption**: the harness's Windows guest runs a startup task
  that relays them, unchanged, to COM1 or COM2 (the domain template logs COM2
  as the marker port):

      HARNESS-SENSOR-LOADED build=<vulnerable|hardened> files=F loaded=L rejected=R
      harness_sensor: <file>: loaded (N instances)
      harness_sensor: <file>: rejected: <text> [<reason>]

  and prints the same harness lines as the Linux reference guest's init for the
  rest: `HARNESS-SENSOR-SKIPPED` (safe mode: the boot-start minifilter does not
  load), `HARNESS-BOOT-COMPLETE`, `HARNESS-SSH-READY`, `HARNESS-BOOT-ERROR
  <reason>`, `HARNESS-RECOVERY-DONE path=<p> rc=<n>` and `recovery: ...` lines of
  a recovery script (WinPE's script writes them to COM1 with `echo ... > COM1`,
  windows-notes.md section 5).  None of these has run on a Windows VM yet.
  vm-templates/windows/setup/boot-marker.ps1 (being written when this was) prints
  `HARNESS-SENSOR-LOADED build=... loaded=? rejected=? source=fltmc`,
  `HARNESS-SENSOR-SKIPPED ...`, `HARNESS-BOOT-COMPLETE` and `HARNESS-SSH-READY` to
  COM2; these patterns match those lines.  It does not relay the `harness_sensor:`
  lines, so "content-rejected" cannot be seen on Windows until something does.
  The SAC banner and the bugcheck arrive on COM1, the markers on COM2: a monitor or
  `harness triage` must be given both streams.

Every `ConsoleMarkers` field is a pattern that can match; none is a never-match
placeholder.  The ones that only match if the assumed startup task exists are
marked "assumed" below.

Limitation: a boot-start driver that bugchecks before the SAC driver starts gives a
boot without a banner.  Two such crashes in a row are still two reports (each EMS
record is one bugcheck), but they count as one boot, so such a loop is judged
"crashed", not "boot-loop", unless something else marks the boots.
"""

from __future__ import annotations

import re

from ..crash.windows import CRASH_END_RE, WindowsConsoleParser
from . import ConsoleMarkers, CrashParser

SAC_BANNER = "Computer is booting, SAC started and initialized."
SAC_CMD_AVAILABLE = "EVENT: The CMD command is now available."

MARKERS = ConsoleMarkers(
    # One banner per kernel start (the SAC driver prints it when it loads).
    boot_start=re.compile(re.escape(SAC_BANNER)),
    # assumed: relayed from harnessflt.sys's DbgPrintEx lines by the startup task
    sensor_loaded=re.compile(r"HARNESS-SENSOR-(?:LOADED|RELOADED) build=(?P<build>\w+)"),
    # assumed: the startup task, when harnessflt is not loaded (safe mode)
    sensor_skipped=re.compile(r"HARNESS-SENSOR-SKIPPED"),
    # Windows is up: SAC's CMD channel can be opened (or the startup task said so)
    boot_complete=re.compile(re.escape(SAC_CMD_AVAILABLE) + r"|HARNESS-BOOT-COMPLETE"),
    # assumed: relayed sensor lines, as on Linux
    file_loaded=re.compile(r"harness_sensor: (?P<name>\S+): loaded \("),
    file_rejected=re.compile(r"harness_sensor: (?P<name>\S+): rejected: (?P<reason>.*)$"),
    # assumed: the startup task, once sshd answers
    ssh_ready=re.compile(r"HARNESS-SSH-READY"),
    # assumed: the startup task
    boot_error=re.compile(r"HARNESS-BOOT-ERROR (?P<reason>.*)$"),
    # the classic STOP screen's last lines, if the port shows them
    crash_end=CRASH_END_RE,
    # assumed: the recovery script (WinPE) writes to COM1
    script_output=re.compile(r"(?:^|\] )recovery: "),
    recovery_done=re.compile(r"HARNESS-RECOVERY-DONE path=(?P<path>\S+) rc=(?P<rc>-?\d+)"),
)


class WindowsFamily:
    name = "windows"
    markers = MARKERS

    def crash_parser(self) -> CrashParser:
        return WindowsConsoleParser()
