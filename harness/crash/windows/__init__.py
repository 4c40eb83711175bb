"""Windows bugchecks (BSOD) -> crash reports, from what the host can see of them.

A Windows bugcheck reaches the host through up to three channels (design notes:
shared/design/windows-notes.md section 2).  This module reads all three and makes
one `CrashReport` per crash:

1. **COM1 text** (`WindowsConsoleParser`, same interface as `LinuxConsoleParser`):

   * the EMS "BLUESCREEN" record.  With EMS on (`bcdedit /ems on`), the kernel's
     headless terminal code sends, once per bugcheck::

         \\a\\a\\a<?xml>\\a<BP>
         <INSTANCE CLASSNAME="BLUESCREEN">
         <PROPERTY NAME="STOPCODE" TYPE="string"><VALUE>"0x50"</VALUE></PROPERTY>
         ...the XML fragments components registered (e.g. <machine-info>...)...
         </INSTANCE>
         </BP>\\a

     Sources: Avocent/Cyclades ACS command reference, "<BP> Tags Description"
     (https://www.manualslib.com/manual/536887/Avocent-Cyclades-Acs.html?page=140),
     and decompiled x64 ntoskrnl `HdlspSendBlueScreenInfo`, whose format strings are
     exactly the lines above (`"0x%0X"`: upper-case hex, no padding).  The
     documented record carries the STOP code only.  The parser also reads
     parameter PROPERTY elements named `PARAMETER1`..`PARAMETER4` (or `PARAMn`,
     `Pn`, `ARGn`) if a record has them: those names are **our assumption**; no
     source shows Windows emitting them.  The record may be split over any
     number of lines (the Avocent sample even splits `</` from `VALUE>`), and may
     lack its `<?xml>`/`<BP>` wrapper.
   * the kernel debugger's bugcheck text (kd/WinDbg on the serial port)::

         *** Fatal System Error: 0x00000050
                                (0xFFFF9C8E0000008A,0x0000000000000000,0xFFFFF8012345678A,0x0000000000000002)

         Driver at fault:
         ***   harnessflt.sys - Address FFFFF8012345678A base at FFFFF80123450000, DateStamp 66a1b2c3

     (the parameter list on the same line or the next one), plus the summary
     `BugCheck 50, {p1, p2, p3, p4}` / `Probably caused by : x.sys` and the
     `!analyze -v` lines `NAME (50)`, `Arg1: ...`, `IMAGE_NAME:`, `SYMBOL_NAME:`.
     Sources: MicrosoftDocs/windows-driver-docs debugger/blue-screen-data.md and
     bug-check-0x50--page-fault-in-nonpaged-area.md (!analyze example); kd
     transcripts published with CVE-2020-0796 and MSKSSRV.sys analyses
     (`*** Fatal System Error:`, `Driver at fault:`, `***   MSKSSRV.sys -
     Address ... base at ..., DateStamp ...`).
   * the text STOP screen, if the port shows it: the classic
     `*** STOP: 0x00000050 (0x..., 0x..., 0x..., 0x...)` with the symbolic name
     on the next line and `***  x.sys - Address ... base at ..., DateStamp ...`
     (old WinDbg help "Blue Screen Data": `STOP: 0x00000079 (0x00000002,
     0x00000001, 0x00000002, 0x00000000)`), and the Windows 10+ lines
     `Stop code: PAGE_FAULT_IN_NONPAGED_AREA` / `What failed: x.sys`
     (blue-screen-data.md: "The stop code is displayed ... the module name ...
     is also displayed, such as AcmeVideo.sys").  Whether a Windows 10/11 guest
     mirrors any stop text to the EMS port is **not confirmed**.

2. **The libvirt domain log** (`parse_domain_log`).  With `hv-crash`, Windows writes
   the STOP code and its four parameters to the Hyper-V crash MSRs; QEMU raises
   GUEST_PANICKED with `GuestPanicInformationHyperV {arg1..arg5}` ("arg1: for
   Windows, STOP code for the guest crash"; "arg2: for Windows, first argument of
   the STOP" ... arg5 the fourth: qemu/qemu:qapi/run-state.json,
   docs/system/i386/hyperv.rst), and libvirt appends to
   /var/log/libvirt/qemu/<domain>.log::

       2024-09-30 16:30:49.506+0000: panic hyper-v: arg1='0x5a', arg2='0x1', arg3='0x2', arg4='0x3', arg5='0x4'

   (format of libvirt's qemuMonitorGuestPanicEventInfoFormatMsg as parsed by
   kubevirt/kubevirt:pkg/virt-launcher/virtwrap/util/panic_info.go and its test;
   a real line, `panic hyper-v: arg1='0x3e', arg2='0x46d359bbdff', ...`, is
   quoted in the qemu-devel vCPU-hotplug thread of 2025-06-09).  The unquoted
   form `arg1=0x50, ...` is accepted too.  QEMU's own guest-error log line
   `HV crash parameters: (0x50 0x... 0x... 0x... 0x...)` (qemu/qemu:
   system/runstate.c, printed with `-d guest_errors`) is read as well.

3. **Fusion** (`fuse_reports`): one report per crash when several channels saw it.
   Within one console stream, evidence from different channels joins the open
   report while the STOP codes agree; a second record from a channel that already
   spoke is a new crash (each channel reports a bugcheck once).  Across the
   serial log and the domain log, the i-th Hyper-V panic is matched, in order,
   with the next serial report that has the same STOP code.  The merged report
   keeps the Hyper-V code and parameters (read from the MSRs, exact, 64-bit) and
   the text's module and function.

Report fields (`kind="bugcheck"`, `family="windows"`):

* `stop_code`: the code as an int, `_M` variants normalised (0x1000007E -> 0x7E,
  `bugcheck_codes.normalize_code`); `stop_name` from `bugcheck_codes`.
* `parameters`: four strings, **always "0x" + 16 lower-case hex digits**
  (`0xffff9c8e0000008a`), whatever the channel printed (kd: 16 upper-case digits,
  libvirt: `%llx`, the classic STOP screen: 8 or 16 digits).  Empty when no
  channel gave them (an EMS record alone).
* `address`: the parameter that is the referenced memory address, where the docs
  say one is (parameter 1 of 0xA, 0x50, 0xD1, 0xD6; parameter 4 of 0x1E when the
  exception is 0xC0000005); `ip`: the faulting instruction's address (the
  parameter the docs name, else the `Address` of the driver line).  Same
  16-digit form.
* `module`: from `*** x.sys - Address ...`, `What failed:`, `Probably caused
  by :` or `IMAGE_NAME:`; `function` only when the text names one
  (`SYMBOL_NAME: mod!Func+0x4a`, `Probably caused by : x.sys ( mod!Func+4a )`).
* `title`: `PAGE_FAULT_IN_NONPAGED_AREA (0x50) in harnessflt.sys`; without a
  module `PAGE_FAULT_IN_NONPAGED_AREA (0x50)`; a code not in the table
  `BUGCHECK 0x1234ABCD`; no code at all `BUGCHECK (stop code unknown)`.  Titles
  are built from parsed fields, so they go through `sanitize_title` only:
  syzkaller's `normalize_title` would turn an 8-digit code into `ADDR`.  The
  function is left out of the title so that a crash keeps one title whether or
  not `!analyze` ran (syzkaller's one bug, one title).
* `corrupted`: a record was cut (end of log, next boot) or garbled (a value that
  is not hex, fewer than four parameters) and no other channel made up for it.
  The title is still right whenever the STOP code itself was read.
* `panic` is True: a bugcheck always stops the machine.
"""

from __future__ import annotations

from .lines import (
    ANALYZE, CRASH_END_RE, EMS, HYPERV, KD, NO_CODE, QEMU_HV, STOP_SCREEN, TOO_LONG, TRUNCATED_EMS, bugcheck_title,
    clean_line, format_param, is_crash_start,
)
from .parser import (
    WindowsConsoleParser, build_report, parse_reports,
)
from .domain import (
    fuse_reports, merge_reports, parse_domain_log,
)

__all__ = [
    "ANALYZE", "CRASH_END_RE", "EMS", "HYPERV", "KD", "NO_CODE", "QEMU_HV", "STOP_SCREEN", "TOO_LONG",
    "TRUNCATED_EMS", "WindowsConsoleParser", "bugcheck_title", "build_report", "clean_line", "format_param",
    "fuse_reports", "is_crash_start", "merge_reports", "parse_domain_log", "parse_reports",
]
