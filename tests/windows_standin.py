"""A stand-in for a Windows golden image, for the tests of the Windows machine path.

No Windows image exists on our machines. What the harness does with one -- the
overlay of a read-only golden image, the machine's own UEFI variable store, COM1
and COM2 read live, the Windows family's markers and bugcheck parser, the pvpanic
CRASHED event, the boot loop -- is the same whatever speaks on the ports. Here
OVMF's UEFI shell speaks: the stand-in "golden image" is a whole-disk FAT file
system holding a `startup.nsh`, which the shell runs at every boot (after its 5 s
countdown) once the disk's boot option fails (no \\EFI\\BOOT\\BOOTX64.EFI).

The script echoes what a Windows guest prints, in the documented formats (the
SAC banner and `EVENT:` line of COM1, the EMS BLUESCREEN record: sources in
harness/families/windows.py and harness/crash/windows.py), and the markers of the
image's startup task (vm-templates/windows/setup/boot-marker.ps1). A bugcheck is
the record followed by a write of 1 to the pvpanic port 0x505 (`mm 505 1 -IO -w 1`),
so QEMU really reports GUEST_PANICKED and libvirt really restarts the domain.
The shell's `echo` goes to both serial ports (OVMF mirrors its console), so the
markers also reach COM2, which the harness reads for `HARNESS-` lines only.

The stand-ins are adversarial: most print no SAC banner at all (SAC is an optional
capability Windows 10/11 do not install, and a boot-start driver can bugcheck before
SAC starts), so the harness must count boots from what every boot produces: OVMF's
own `BdsDxe: loading Boot0002 "EFI Internal Shell" ...` lines on COM1 at every reset
and libvirt's CRASHED and REBOOT events.

* `HEALTHY_NO_SAC`: the startup task's markers, nothing else.
* `BUGCHECK_BEFORE_SAC`: the EMS record and the pvpanic write, no banner.
* `PVPANIC_ONLY`: only the pvpanic write (no EMS, no Hyper-V crash MSRs).
* `BUGCHECK_THEN_RESET`: the EMS record, then a reset (`reset`: AutoReboot without
  a crash device), so no CRASHED event, only REBOOT.
* `HANG_SILENT`: the shell waits for a key (`pause -q`, idle) and prints nothing.
* `HEALTHY` and `BUGCHECK_0X50`: the same with the SAC banner (SAC enriches).

Each boot costs 9-12 s here under TCG, 5 s of it the shell's startup.nsh
countdown (`Press ESC in 5 seconds`), which only a key press or the shell's own
command line would shorten.

What this cannot show: Windows itself (EMS output timing, the startup task, the
Hyper-V crash MSRs, which need KVM and a Windows kernel).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
from pathlib import Path

from harness.config import Profile, Timeouts
from harness.vm.machine import Machine, MachineSpec
from harness.windows.golden import load_golden

SAC_BANNER = ['echo "Computer is booting, SAC started and initialized."',
              'echo "Use the ^"ch -?^" command for information about using channels."',
              'echo "SAC>"']
MARKERS = ['echo "HARNESS-SENSOR-LOADED build=vulnerable files=1 loaded=1 rejected=0 source=driver"',
           'echo "HARNESS-BOOT-COMPLETE"']
# PAGE_FAULT_IN_NONPAGED_AREA, as the EMS record reports it (STOP code only).
EMS_RECORD_0X50 = ['echo "<INSTANCE CLASSNAME=^"BLUESCREEN^">"',
                   'echo "<PROPERTY NAME=^"STOPCODE^" TYPE=^"string^"><VALUE>^"0x50^"</VALUE></PROPERTY>"',
                   'echo "</INSTANCE>"']
PVPANIC_WRITE = "mm 505 1 -IO -w 1 -n"  # pvpanic's "guest panicked" bit: QEMU stops, libvirt restarts

HEALTHY_NO_SAC = list(MARKERS)
BUGCHECK_BEFORE_SAC = [*EMS_RECORD_0X50, PVPANIC_WRITE]
PVPANIC_ONLY = [PVPANIC_WRITE]
BUGCHECK_THEN_RESET = [*EMS_RECORD_0X50, "reset"]  # a cold reset: REBOOT, no CRASHED event
HANG_SILENT = ["pause -q"]  # waits for a key that never comes, halted in the idle loop
HEALTHY = [*SAC_BANNER, 'echo "EVENT: The CMD command is now available."', *MARKERS]
BUGCHECK_0X50 = [*SAC_BANNER, *EMS_RECORD_0X50, PVPANIC_WRITE]


def build_standin_golden(directory: Path, name: str, script: list[str], edition: str = "win10") -> Path:
    """A read-only raw image `<name>.img` with startup.nsh, and its golden manifest beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    image = directory / f"{name}.img"
    nsh = directory / f"{name}.startup.nsh"
    nsh.write_bytes(("\r\n".join(["echo -off", *script]) + "\r\n").encode())
    subprocess.run(["mkfs.fat", "-C", str(image), "4096"], check=True, capture_output=True)
    subprocess.run(["mcopy", "-i", str(image), str(nsh), "::/startup.nsh"], check=True, capture_output=True)
    os.chmod(image, 0o444)
    manifest = {"image": str(image), "format": "raw", "bytes": image.stat().st_size,
                "sha256": hashlib.sha256(image.read_bytes()).hexdigest(), "edition": edition,
                "sensor": {"build": "vulnerable"}, "nvram": None, "ssh_key": None,
                "standin": "UEFI shell startup.nsh (tests/windows_standin.py)"}
    (directory / f"{image.name}.golden.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return image


def standin_machine(profile: Profile, image: Path, artifacts: Path, run_id: str, slot: str,
                    hang: float = 60) -> Machine:
    """A Machine of a `family: windows` profile on the stand-in golden image `image` (512 MiB,
    one vCPU, no network: the UEFI shell needs no more)."""
    windows = dataclasses.replace(
        profile, family="windows", edition="win10", image=str(image), memory_mib=512, vcpus=1, network="none",
        timeouts=Timeouts(boot=240, hang=hang, grace=3, ssh=60))
    golden = load_golden(image, windows.edition)
    return Machine(MachineSpec(profile=windows, guest=golden, artifacts=artifacts, run_id=run_id,
                               test_id=f"{__name__}::{slot}", slot=f"win-{slot}"))
