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

What this cannot show: Windows itself (EMS output timing, the startup task, the
Hyper-V crash MSRs, which need KVM and a Windows kernel).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

SAC_BANNER = ['echo "Computer is booting, SAC started and initialized."',
              'echo "Use the ^"ch -?^" command for information about using channels."',
              'echo "SAC>"']
HEALTHY = [*SAC_BANNER,
           'echo "EVENT: The CMD command is now available."',
           'echo "HARNESS-SENSOR-LOADED build=vulnerable files=1 loaded=? rejected=? source=fltmc"',
           'echo "HARNESS-BOOT-COMPLETE"']
# PAGE_FAULT_IN_NONPAGED_AREA, as the EMS record reports it (STOP code only).
BUGCHECK_0X50 = [*SAC_BANNER,
                 'echo "<INSTANCE CLASSNAME=^"BLUESCREEN^">"',
                 'echo "<PROPERTY NAME=^"STOPCODE^" TYPE=^"string^"><VALUE>^"0x50^"</VALUE></PROPERTY>"',
                 'echo "</INSTANCE>"',
                 "mm 505 1 -IO -w 1 -n"]


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
