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
* **The sensor's lines: the driver's own word.**  `harnessflt.sys` writes what it
  loaded, what it rejected and why, and that it finished, as volatile values under
  its service key (`Parameters\\State`: Status, Loaded, Rejected, Finished, ...;
  drivers/windows/harnessflt.c "status key", checked on the real image by the sys
  tier, tests/test_sys_tier_status.py).  The startup task
  (vm-templates/windows/setup/boot-marker.ps1, lib.ps1 Get-DriverWordLines) prints
  that word on COM2 in the Linux sensor's lines::

      harness_sensor: <file>: loaded (reported by the driver)
      harness_sensor: <file>: rejected: <text> [<reason>]
      HARNESS-SENSOR-LOADED build=<b> files=F loaded=L rejected=R instances=I generation=G status=<s> source=driver

  and the online reload (harness/windows/powershell.py RELOAD_SCRIPT) prints the
  same with `HARNESS-SENSOR-RELOADED`.  `sensor_loaded` needs the numbers: the old
  `loaded=? rejected=? source=fltmc` line (fltmc lists the filter, nothing says what
  it read) is not a loaded sensor.  A filter that is listed but wrote no word, or
  has not finished, is `HARNESS-BOOT-ERROR sensor: ...`.  The task also prints
  `HARNESS-SENSOR-SKIPPED` (harnessflt not loaded: safe mode),
  `HARNESS-BOOT-COMPLETE`, `HARNESS-SSH-READY`; a recovery script prints
  `HARNESS-RECOVERY-DONE path=<p> rc=<n>` and `recovery: ...` lines (WinPE's
  script writes them to COM1 with `echo ... > COM1`, windows-notes.md section 5).
  None of these has run on a Windows VM yet.  The SAC banner and the bugcheck
  arrive on COM1, the markers on COM2: a monitor or `harness triage` must be given
  both streams.

**How boots are counted.**  SAC is an optional capability that Windows 10/11 do not
install (the image recipe adds it, setup.ps1 step 'sac'), and a boot-start driver
that bugchecks in DriverEntry or in its boot-driver reinitialization callback does it
before the SAC driver starts: a banner-only count would see one boot in a whole boot
loop.  So boots are counted from what every boot produces, whatever the OS prints:

* libvirt's events: a CRASHED/PANICKED event (pvpanic, or the Hyper-V crash MSRs;
  the guest is paused and libvirt restarts it, `on_crash=restart`) or a REBOOT
  event (a guest reset: Windows' AutoReboot after a bugcheck without a crash
  device) ends the boot;
* the firmware's own lines on COM1: OVMF prints, at every reset, which boot option
  it tries (edk2 BdsDxe)::

      BdsDxe: loading Boot0001 "Windows Boot Manager" from HD(1,GPT,...)/\\EFI\\Microsoft\\Boot\\bootmgfw.efi
      BdsDxe: starting Boot0001 "Windows Boot Manager" from HD(1,GPT,...)/\\EFI\\Microsoft\\Boot\\bootmgfw.efi

  (`failed to load Boot0001 ...` when an option does not boot).  The first such
  line after the end of a boot (or after a boot that got past the firmware) opens
  the next one;
* the SAC banner still opens a boot it did not see begin (a log cut mid-boot), and
  a crash event or crash text after an ended boot with no firmware line between
  opens one (a firmware that prints nothing).

SAC and EMS text enrich a report; they never gate a verdict.  The STOP code comes
from whichever channel arrives: the EMS BLUESCREEN record, the domain log's
`panic hyper-v` line (read at the CRASHED event), kd text.  A crash that none of
them described is still a crash, titled `BUGCHECK: unknown (pvpanic only)`
(`untold_bugcheck`).  What this cannot see: two resets in a row with a firmware
that prints nothing and no crash event count as one boot; a dump (MEMORY.DMP) is
not read.

Every `ConsoleMarkers` field is a pattern that can match; none is a never-match
placeholder.  The ones that only match if the assumed startup task exists are
marked "assumed" below.
"""

from __future__ import annotations

import dataclasses
import re

from ..crash.report import CrashReport
from ..driver import DriverSpec
from ..crash.windows import CRASH_END_RE, WindowsConsoleParser
from . import ConsoleMarkers, CrashParser

SAC_BANNER = "Computer is booting, SAC started and initialized."
SAC_CMD_AVAILABLE = "EVENT: The CMD command is now available."
# OVMF's boot manager (edk2 MdeModulePkg BdsDxe), once per boot option it tries at every reset.
FIRMWARE_BOOT_RE = re.compile(r"BdsDxe: (?:loading|starting|failed to load) Boot[0-9A-Fa-f]{4}\b")
UNTOLD_TITLE = "BUGCHECK: unknown (pvpanic only)"


def untold_bugcheck(event: str, lineno: int) -> CrashReport:
    """The report of a bugcheck that libvirt's crash event announced and no text described:
    no EMS record on COM1, no `panic hyper-v` line in the domain log (pvpanic carries no STOP
    code; the Hyper-V crash MSRs need KVM, and a remote host's log is not read here)."""
    text = (f"libvirt raised {event}; no bugcheck text arrived: no EMS BLUESCREEN record on COM1, "
            "no panic hyper-v line in the domain log")
    return CrashReport(title=UNTOLD_TITLE, kind="bugcheck", text=text, first_line=lineno, last_line=lineno,
                       panic=True, fatal=True, family="windows")

MARKERS = ConsoleMarkers(
    # One banner per kernel start (the SAC driver prints it when it loads).
    boot_start=re.compile(re.escape(SAC_BANNER)),
    # the driver's word (its status key) printed by the startup task or the reload script:
    # counts, never fltmc's "loaded=?"
    sensor_loaded=re.compile(r"HARNESS-SENSOR-(?:LOADED|RELOADED) build=(?P<build>\w+) files=\d+ "
                             r"loaded=\d+ rejected=\d+"),
    # assumed: the startup task, when harnessflt is not loaded (safe mode)
    sensor_skipped=re.compile(r"HARNESS-SENSOR-SKIPPED"),
    # Windows is up: SAC's CMD channel can be opened (or the startup task said so)
    boot_complete=re.compile(re.escape(SAC_CMD_AVAILABLE) + r"|HARNESS-BOOT-COMPLETE"),
    # the driver's word, one line per file, as on Linux
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
    # every boot, whatever Windows prints: the firmware's line and libvirt's events
    firmware_boot=FIRMWARE_BOOT_RE,
    resets_end_boots=True,
    untold_crash=untold_bugcheck,
)


NEVER = re.compile(r"(?!)")  # a line no driver prints


def driver_markers(driver: DriverSpec) -> ConsoleMarkers:
    """The Windows markers with a vendor driver's own words. On Windows the driver's "console"
    is what the startup task prints on COM2 for it (boot-marker.ps1, lib.ps1
    Get-VendorDriverLines; docs/windows-vendor-driver.md): its HARNESS-DRIVER-STATE,
    -FILTER, one HARNESS-DRIVER-VALUE line per value under its service key, and
    HARNESS-DRIVER-DONE. `ready` matched on one of them is the driver up with its content;
    `rejected` (groups file, reason) a content file it refused. The sample's lines
    (harness_sensor: ..., HARNESS-SENSOR-LOADED) mean nothing for a vendor driver;
    HARNESS-SENSOR-SKIPPED (Safe Mode), HARNESS-BOOT-COMPLETE and HARNESS-BOOT-ERROR stay."""
    rejected = driver.rejected_re
    return dataclasses.replace(
        MARKERS, sensor_loaded=driver.ready_re, file_loaded=NEVER,
        # the monitor reads the file's name from the group `name`
        file_rejected=re.compile(rejected.pattern.replace("(?P<file>", "(?P<name>")) if rejected else NEVER)


class WindowsFamily:
    """`driver`: a vendor's driver installed in the image; its `ready`/`rejected` replace the
    sample's markers (None: the sample sensor)."""

    name = "windows"

    def __init__(self, driver: DriverSpec | None = None) -> None:
        self.driver = driver
        self.markers = driver_markers(driver) if driver is not None else MARKERS

    def crash_parser(self) -> CrashParser:
        return WindowsConsoleParser()
