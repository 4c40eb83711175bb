"""The Windows recovery flow (Safe Mode, WinPE/WinRE) as data, and its host-side steps.

The paths are harness/recovery.py's RecoveryPath values; the markers are the Windows
family's (harness/families/windows.py): `recovery: ...` lines and
`HARNESS-RECOVERY-DONE path=<p> rc=<n>`, then the normal boot's `HARNESS-SENSOR-LOADED`
from boot-marker.ps1 (`fltmc filters` lists harnessflt again).

safe-mode (the machine cannot boot: everything is staged offline, on the shut-off disk)

    host   stage_safe_mode_offline(disk, ...): the ESP's BCD gets safeboot=minimal on its
           default loader (bcd.set_safeboot); C:\\harness\\recovery\\ gets safe-mode.ps1, the
           user's script and bad-files.txt; two starters, either of which runs it in
           Safe Mode (Task Scheduler does not run there):
             SYSTEM hive: the service HarnessRecovery (auto start, LocalSystem), listed
               under Control\\SafeBoot\\Minimal, so Safe Mode's service control manager
               starts it without any logon;
             SOFTWARE hive: RunOnce "*HarnessRecovery" (the "*" makes it run in Safe
               Mode, at the first logon; AutoAdminLogon for one logon when the image's
               password is known).
           Each hive's transaction logs (the BCD's too) are replayed first, or the
           staging is refused (hivelog.py): the machine bugchecked, its hives may be dirty.
    guest  Safe Mode boot -> the service (or the logon's RunOnce) -> safe-mode.ps1 (the
           first starter wins, the other finds its lock): the script, `recovery:` lines
           and HARNESS-RECOVERY-DONE path=safe-mode rc=N on COM2, both starters removed,
           bcdedit /deletevalue {default} safeboot, restart
    guest  normal boot -> HARNESS-SENSOR-LOADED (fltmc)
    While Windows still runs, online_safe_mode_commands() does the same from inside.

recovery-env

    host   build_winpe_medium(...) (winpe.py); the domain rendered by
           recovery_domain_values(..., medium=iso): CD-ROM boot order 1, disk 2,
           the disk on SATA (WinPE's inbox storahci; it has no virtio driver)
    guest  WinPE/WinRE -> recover.cmd: `recovery:` lines and HARNESS-RECOVERY-DONE
           path=recovery-env rc=N on COM1, wpeutil shutdown (the transient domain ends)
    host   the domain rendered with medium=None: no CD-ROM, disk boot order 1
    guest  normal boot -> HARNESS-SENSOR-LOADED (fltmc)

The machine is a transient libvirt domain that ends at every power-off, so "attach for
one boot, detach after" is two renderings of the same domain, not a hot-plug.

Nothing here has run against Windows: what is unverified is listed in
vm-templates/windows/README.md, "Recovery (Safe Mode and WinRE/WinPE)".
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import sha256_file
from ..errors import ConfigError, InfraError
from ..vm.backend import RecoveryPath
from ..vm.templates import render
from . import bcd
from .hivelog import prepare_for_edit
from .package import SAMPLE_CONTENT_DIR
from .powershell import ps_quote
from .domain import RECOVERY_DISK_BUS, Cdrom, windows_domain_values
from .winpe import SAMPLE_SCRIPT, WinPEMediumError, bad_files_listing, build_winpe_medium, check_script

SAFE_MODE_TEMPLATE = "windows/recovery/safe-mode.ps1.j2"
WINPE_MEDIA_ENV = "HARNESS_WINPE_MEDIA"  # the user's WinPE/WinRE media (ADK media directory or ISO)
GUEST_RECOVERY_DIR = "C:\\harness\\recovery"
SOFTWARE_HIVE = "/Windows/System32/config/SOFTWARE"  # on the Windows partition (NTFS)
SYSTEM_HIVE = "/Windows/System32/config/SYSTEM"
LOG_SUFFIXES = (".LOG1", ".LOG2")  # the hives' transaction logs beside them
SERVICE_NAME = "HarnessRecovery"
# A service process that never talks to the service control manager is given up after
# 30 s; `start` detaches PowerShell from cmd, so the script outlives that.
SERVICE_COMMAND = ("%SystemRoot%\\System32\\cmd.exe /c start %SystemRoot%\\System32\\WindowsPowerShell\\v1.0\\"
                   f"powershell.exe -NoProfile -ExecutionPolicy Bypass -File {GUEST_RECOVERY_DIR}\\safe-mode.ps1")
SAFEBOOT_MINIMAL = "Control\\SafeBoot\\Minimal"  # under the control set: what Safe Mode starts
RUNONCE_KEY = "Microsoft\\Windows\\CurrentVersion\\RunOnce"  # in the SOFTWARE hive (HKLM\SOFTWARE)
RUNONCE_NAME = "*HarnessRecovery"  # "*": run in Safe Mode too (KB 314866)
RUNONCE_COMMAND = ("powershell.exe -NoProfile -ExecutionPolicy Bypass -File "
                   f"{GUEST_RECOVERY_DIR}\\safe-mode.ps1")
# "Configure Windows to automate logon" (learn.microsoft.com/troubleshoot/windows-server/
# user-profiles-and-logon/turn-on-automatic-logon): these values under Winlogon.
WINLOGON_KEY = "Microsoft\\Windows NT\\CurrentVersion\\Winlogon"


@dataclass(frozen=True)
class Step:
    where: str  # "host" or "guest"
    action: str
    expect: str | None = None  # the console line that ends the step, if any


PLANS: dict[RecoveryPath, tuple[Step, ...]] = {
    "safe-mode": (
        Step("host", "destroy the looping domain (the disk is a qcow2 overlay of the golden image)"),
        Step("host", "stage_safe_mode_offline: hive logs replayed or refused; BCD safeboot, C:\\harness\\recovery, "
                     "the HarnessRecovery service under SafeBoot\\Minimal, RunOnce *HarnessRecovery"),
        Step("host", "start the domain: recovery_domain_values(medium=None)"),
        Step("guest", "Safe Mode: harnessflt (a boot-start filter) is not loaded; the service (or the "
                      "logon's RunOnce) runs safe-mode.ps1", "HARNESS-RECOVERY-DONE path=safe-mode rc="),
        Step("guest", "safe-mode.ps1 deleted safeboot and restarted Windows"),
        Step("guest", "normal boot; boot-marker.ps1 reads fltmc filters", "HARNESS-SENSOR-LOADED"),
    ),
    "recovery-env": (
        Step("host", "destroy the looping domain"),
        Step("host", "build_winpe_medium: the user's WinPE/WinRE with winpeshl.ini and recover.cmd, no-prompt "
                     "EFI boot image"),
        Step("host", "start the domain: recovery_domain_values(medium=iso): CD-ROM boot order 1, disk 2 on SATA"),
        Step("guest", "WinPE runs recover.cmd (COM1)", "HARNESS-RECOVERY-DONE path=recovery-env rc="),
        Step("guest", "wpeutil shutdown: the domain ends"),
        Step("host", "start the domain: recovery_domain_values(medium=None): no CD-ROM, disk boot order 1"),
        Step("guest", "normal boot; boot-marker.ps1 reads fltmc filters", "HARNESS-SENSOR-LOADED"),
    ),
}


# ------------------------------------------------------------------ the domain


def recovery_domain_values(edition: str, *, medium: Path | None, **kwargs: Any) -> dict[str, Any]:
    """windows_domain_values() for a recovery boot (`medium` = the recovery ISO: CD-ROM
    first, disk second, the disk on SATA) or for the boots before and after it (`medium`
    None: the disk on the bus given, virtio by default).

    The recovery boot's disk is on SATA because WinPE/WinRE have no virtio storage
    driver: on virtio-blk or virtio-scsi recover.cmd would find no Windows volume.
    AHCI's driver (storahci) is inbox in WinPE, so nothing third-party goes on the
    medium; the same qcow2 overlay is simply attached on another bus for that boot."""
    for key in ("cdroms", "disk_boot_order"):
        if key in kwargs:
            raise ConfigError(f"recovery_domain_values: {key} is set from `medium`; do not pass it")
    if medium is None:
        return windows_domain_values(edition, cdroms=(), disk_boot_order=1, **kwargs)
    bus = kwargs.pop("disk_bus", RECOVERY_DISK_BUS)
    if bus != RECOVERY_DISK_BUS:
        raise ConfigError(f"recovery_domain_values: disk_bus {bus!r} for the recovery boot: WinPE has no "
                          f"driver for it; the recovery boot attaches the disk on {RECOVERY_DISK_BUS} (AHCI, inbox)")
    return windows_domain_values(edition, cdroms=[Cdrom(Path(medium), boot_order=1)], disk_boot_order=2,
                                 disk_bus=RECOVERY_DISK_BUS, **kwargs)


# ------------------------------------------------------------------ Safe Mode


def render_safe_mode_script(script_name: str, script_kind: str, content_dir: str = SAMPLE_CONTENT_DIR) -> str:
    """safe-mode.ps1 for the driver whose content directory is `content_dir` (HARNESS_CONTENT_DIR)."""
    return render(SAFE_MODE_TEMPLATE, script_name=script_name, script_kind=script_kind,
                  content_dir=ps_quote(content_dir))


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def safe_mode_files(script: Path | None, bad_files: Sequence[tuple[str | bytes, str]],
                    content_dir: str = SAMPLE_CONTENT_DIR) -> dict[str, bytes]:
    """Name -> bytes of what goes into C:\\harness\\recovery\\ for the Safe Mode run."""
    script = Path(script) if script is not None else SAMPLE_SCRIPT
    data, kind = check_script(script)
    listing = bad_files_listing(Path(GUEST_RECOVERY_DIR), bad_files)
    return {
        "safe-mode.ps1": _crlf(render_safe_mode_script(script.name, kind, content_dir).encode("utf-8")),
        script.name: data,
        "bad-files.txt": listing,
    }


def online_safe_mode_commands(mode: str = "minimal") -> list[str]:
    """What the running guest runs (elevated, e.g. over SSH) after the files of
    safe_mode_files() were copied to C:\\harness\\recovery\\: the same state the
    offline staging makes, then a restart."""
    service = f"HKLM\\SYSTEM\\CurrentControlSet\\Services\\{SERVICE_NAME}"
    return [
        f'reg add "HKLM\\SOFTWARE\\{RUNONCE_KEY}" /v "{RUNONCE_NAME}" /t REG_SZ /d "{RUNONCE_COMMAND}" /f',
        f'reg add "{service}" /v ImagePath /t REG_EXPAND_SZ /d "{SERVICE_COMMAND}" /f',
        f'reg add "{service}" /v Type /t REG_DWORD /d 16 /f',
        f'reg add "{service}" /v Start /t REG_DWORD /d 2 /f',
        f'reg add "{service}" /v ErrorControl /t REG_DWORD /d 0 /f',
        f'reg add "{service}" /v ObjectName /t REG_SZ /d LocalSystem /f',
        f'reg add "HKLM\\SYSTEM\\CurrentControlSet\\{SAFEBOOT_MINIMAL}\\{SERVICE_NAME}" /ve /t REG_SZ /d Service /f',
        bcd.bcdedit_set_safeboot(mode),
        "shutdown /r /t 0",
    ]


def current_control_set(system: Path) -> str:
    """`ControlSet00N` of an offline SYSTEM hive: CurrentControlSet exists only while
    Windows runs; Select\\Current names the set it will use."""
    value = bcd.read_value(system, "Select", "Current") if bcd.key_exists(system, "Select") else None
    if value is None or value.type != bcd.REG_DWORD:
        raise bcd.HiveError(f"{system}: no REG_DWORD Select\\Current: not a SYSTEM hive "
                            f"(give Windows\\System32\\config\\SYSTEM)")
    name = f"ControlSet{int.from_bytes(value.data[:4], 'little'):03d}"
    if not bcd.key_exists(system, name):
        raise bcd.HiveError(f"{system}: Select\\Current names {name}, which the hive does not have")
    return name


def service_values() -> dict[str, bcd.Value]:
    """The HarnessRecovery service: own process, auto start, errors ignored, LocalSystem."""
    return {"Type": bcd.dword_value(0x10), "Start": bcd.dword_value(2), "ErrorControl": bcd.dword_value(0),
            "ImagePath": bcd.string_value(SERVICE_COMMAND, bcd.REG_EXPAND_SZ),
            "ObjectName": bcd.string_value("LocalSystem"), "DisplayName": bcd.string_value("harness Safe Mode recovery")}


def stage_safe_mode_starters(system: Path, software: Path, autologon: tuple[str, str] | None) -> str:
    """Both starters of safe-mode.ps1 into the (replayed) hives; returns the control set."""
    control_set = current_control_set(system)
    bcd.write_values(system, f"{control_set}\\Services\\{SERVICE_NAME}", service_values())
    bcd.write_values(system, f"{control_set}\\{SAFEBOOT_MINIMAL}\\{SERVICE_NAME}", {"": bcd.string_value("Service")})
    bcd.write_values(software, RUNONCE_KEY, {RUNONCE_NAME: bcd.string_value(RUNONCE_COMMAND)})
    if autologon is not None:
        user, password = autologon
        bcd.write_values(software, WINLOGON_KEY, {
            "AutoAdminLogon": bcd.string_value("1"), "DefaultUserName": bcd.string_value(user),
            "DefaultPassword": bcd.string_value(password), "AutoLogonCount": bcd.dword_value(1)})
    return control_set


@dataclass(frozen=True)
class SafeModeStaging:
    loader: str  # the BCD object given safeboot
    mode: str
    files: tuple[str, ...]  # under C:\harness\recovery
    bcd_before: Path  # copies kept in the work directory (artifacts)
    bcd_after: Path
    control_set: str = "ControlSet001"
    replayed: tuple[tuple[str, int], ...] = ()  # (BCD/SOFTWARE/SYSTEM, log entries replayed) where needed


def _q(path: Path | str) -> str:
    text = str(path)
    if '"' in text or "\n" in text:
        raise ConfigError(f"{text!r}: a path with a double quote or newline cannot be passed to guestfish")
    return f'"{text}"'


def _fetch_hives(disk: Path, workdir: Path, esp_partition: int, windows_partition: int) -> Path:
    """One read-only guestfish run: the BCD, SOFTWARE and SYSTEM hives with their logs
    (a log that does not exist is skipped: '-' lets guestfish go on). Returns the BCD copy."""
    store = workdir / "BCD"
    esp_logs = "".join(f"-download {bcd.ESP_BCD_PATH}{suffix} {_q(workdir / ('BCD' + suffix))}\n"
                       for suffix in LOG_SUFFIXES)
    for suffix in LOG_SUFFIXES:
        (workdir / ("BCD" + suffix)).unlink(missing_ok=True)
    downloads = "".join(f"-download {hive}{suffix} {_q(workdir / (Path(hive).name + suffix))}\n"
                        for hive in (SOFTWARE_HIVE, SYSTEM_HIVE) for suffix in ("", *LOG_SUFFIXES))
    for hive in (SOFTWARE_HIVE, SYSTEM_HIVE):
        for suffix in ("", *LOG_SUFFIXES):
            (workdir / (Path(hive).name + suffix)).unlink(missing_ok=True)
    bcd.run_guestfish(disk, f"mount-ro /dev/sda{esp_partition} /\ndownload {bcd.ESP_BCD_PATH} {_q(store)}\n"
                            f"{esp_logs}umount /\nmount-ro /dev/sda{windows_partition} /\n{downloads}", readonly=True)
    for hive in (SOFTWARE_HIVE, SYSTEM_HIVE):
        if not (workdir / Path(hive).name).is_file():
            raise InfraError(f"{disk}: no {hive} on partition {windows_partition}: not the Windows volume "
                             "(pass windows_partition=)")
    return store


def _ready(workdir: Path, name: str) -> tuple[Path, int]:
    """The hive copy to edit (replayed when its logs had pending entries; refused when they
    cannot be replayed: hivelog.HiveLogError names the hive and the fix)."""
    hive = workdir / name
    ready = prepare_for_edit(hive, [workdir / (name + suffix) for suffix in LOG_SUFFIXES], workdir / "replay")
    return ready.hive, ready.replayed


def stage_safe_mode_offline(disk: Path, workdir: Path, *, script: Path | None = None,
                            bad_files: Sequence[tuple[str | bytes, str]] = (), mode: str = "minimal",
                            autologon: tuple[str, str] | None = None, esp_partition: int = bcd.ESP_PARTITION,
                            windows_partition: int = bcd.WINDOWS_PARTITION,
                            content_dir: str = SAMPLE_CONTENT_DIR) -> SafeModeStaging:
    """Prepare the shut-off `disk` for one Safe Mode recovery boot (two guestfish runs:
    fetch the BCD and the SOFTWARE and SYSTEM hives with their logs; put them back with
    the recovery files, read back and compared). `autologon` (user, password) sets
    AutoAdminLogon for one logon, which the RunOnce starter needs (the service starter
    does not); the password goes only into the guest's SOFTWARE hive."""
    files = safe_mode_files(script, bad_files, content_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    original = _fetch_hives(disk, workdir, esp_partition, windows_partition)
    before = workdir / "BCD.before"
    shutil.copyfile(original, before)
    store, bcd_replayed = _ready(workdir, "BCD")  # the ESP's BCD has its .LOG1/.LOG2 too
    loader = bcd.set_safeboot(store, mode)
    software, software_replayed = _ready(workdir, "SOFTWARE")
    system, system_replayed = _ready(workdir, "SYSTEM")
    control_set = stage_safe_mode_starters(system, software, autologon)
    staged = workdir / "recovery-files"
    staged.mkdir(exist_ok=True)
    for name, data in files.items():
        (staged / name).write_bytes(data)
    back = workdir / "readback"
    back.mkdir(exist_ok=True)
    uploads = "".join(f"upload {_q(staged / name)} /harness/recovery/{name}\n" for name in files)
    bcd.run_guestfish(disk, f"mount /dev/sda{esp_partition} /\nupload {_q(store)} {bcd.ESP_BCD_PATH}\n"
                            f"download {bcd.ESP_BCD_PATH} {_q(back / 'BCD')}\numount /\n"
                            f"mount /dev/sda{windows_partition} /\nmkdir-p /harness/recovery\n{uploads}"
                            f"upload {_q(software)} {SOFTWARE_HIVE}\n"
                            f"download {SOFTWARE_HIVE} {_q(back / 'SOFTWARE')}\n"
                            f"upload {_q(system)} {SYSTEM_HIVE}\n"
                            f"download {SYSTEM_HIVE} {_q(back / 'SYSTEM')}\nsync\n", readonly=False)
    for name, local in (("BCD", store), ("SOFTWARE", software), ("SYSTEM", system)):
        if sha256_file(back / name) != sha256_file(local):
            raise InfraError(f"{disk}: {name} read back after the upload differs from {local}")
    # large hives, and with autologon SOFTWARE holds a password: none is kept
    for path in [back / "SOFTWARE", back / "SYSTEM", software, system,
                 *(workdir / (h + s) for h in ("SOFTWARE", "SYSTEM") for s in ("", *LOG_SUFFIXES))]:
        path.unlink(missing_ok=True)
    shutil.copyfile(store, workdir / "BCD.after")
    for path in [original, *(workdir / ("BCD" + s) for s in LOG_SUFFIXES)]:
        path.unlink(missing_ok=True)
    shutil.rmtree(workdir / "replay", ignore_errors=True)
    replayed = tuple((n, c) for n, c in (("BCD", bcd_replayed), ("SOFTWARE", software_replayed),
                                         ("SYSTEM", system_replayed)) if c)
    return SafeModeStaging(loader, mode, tuple(sorted(files)), before, workdir / "BCD.after", control_set, replayed)


def clear_safe_mode_offline(disk: Path, workdir: Path, esp_partition: int = bcd.ESP_PARTITION,
                            windows_partition: int = bcd.WINDOWS_PARTITION) -> bool:
    """Undo what stage_safe_mode_offline() left if the Safe Mode run did not get to it:
    safeboot in the BCD, the HarnessRecovery service and its SafeBoot\\Minimal entry, the
    RunOnce value. True when something had to go. One guestfish run, two when it writes."""
    workdir.mkdir(parents=True, exist_ok=True)
    _fetch_hives(disk, workdir, esp_partition, windows_partition)
    store, _ = _ready(workdir, "BCD")
    system, _ = _ready(workdir, "SYSTEM")
    software, _ = _ready(workdir, "SOFTWARE")
    control_set = current_control_set(system)
    changed: list[str] = []
    if bcd.get_safeboot(store) is not None:
        bcd.clear_safeboot(store)
        changed.append(f"upload {_q(store)} {bcd.ESP_BCD_PATH}\n")
    service_gone = bcd.delete_key(system, f"{control_set}\\Services\\{SERVICE_NAME}")
    if bcd.delete_key(system, f"{control_set}\\{SAFEBOOT_MINIMAL}\\{SERVICE_NAME}") or service_gone:
        changed.append(f"upload {_q(system)} {SYSTEM_HIVE}\n")
    if bcd.key_exists(software, RUNONCE_KEY) and RUNONCE_NAME in bcd.read_values(software, RUNONCE_KEY):
        bcd.write_values(software, RUNONCE_KEY, {RUNONCE_NAME: None}, create=False)
        changed.append(f"upload {_q(software)} {SOFTWARE_HIVE}\n")
    if changed:
        esp = [c for c in changed if bcd.ESP_BCD_PATH in c]
        rest = [c for c in changed if bcd.ESP_BCD_PATH not in c]
        script = (f"mount /dev/sda{esp_partition} /\n{''.join(esp)}umount /\n" if esp else "") + \
            (f"mount /dev/sda{windows_partition} /\n{''.join(rest)}" if rest else "") + "sync\n"
        bcd.run_guestfish(disk, script, readonly=False)
    shutil.copyfile(store, workdir / "BCD.final")
    for path in [store, system, software,
                 *(workdir / (h + s) for h in ("BCD", "SOFTWARE", "SYSTEM") for s in ("", *LOG_SUFFIXES))]:
        path.unlink(missing_ok=True)
    shutil.rmtree(workdir / "replay", ignore_errors=True)
    return bool(changed)


# ------------------------------------------------------------------ the backend's entry points
# harness/windows/backend.py (WindowsBackend) calls these three.


def sample_script(path: str) -> Path:
    """The shipped sample recovery script: the same .cmd for both paths."""
    return SAMPLE_SCRIPT


def prepare_windows_recovery(disk: Path, path: str, workdir: Path, script: Path,
                             bad_update: Sequence[tuple[str, str]], *, media: Path | None = None,
                             bitlocker_password: str | None = None,
                             autologon: tuple[str, str] | None = None,
                             content_dir: str = SAMPLE_CONTENT_DIR) -> Path | None:
    """Make what the next boot in recovery `path` needs, with the machine off. Returns the
    recovery medium (recovery-env: the ISO to attach with boot order 1) or None (safe-mode:
    the disk itself was staged). `media` defaults to $HARNESS_WINPE_MEDIA. `content_dir`: the
    driver's content directory, which the scripts get as HARNESS_CONTENT_DIR."""
    if path == "safe-mode":
        stage_safe_mode_offline(disk, workdir, script=script, bad_files=bad_update, autologon=autologon,
                                content_dir=content_dir)
        return None
    if path != "recovery-env":
        raise ConfigError(f"unknown recovery path {path!r}; use safe-mode or recovery-env")
    source = media if media is not None else os.environ.get(WINPE_MEDIA_ENV)
    if not source:
        raise ConfigError(f"recovery-env on Windows needs the user's WinPE or WinRE media: set "
                          f"{WINPE_MEDIA_ENV} to the ADK's media directory (copype amd64 <dir> makes <dir>\\media) "
                          "or to a WinPE ISO (MakeWinPEMedia /ISO)")
    return build_winpe_medium(workdir / "recovery.iso", Path(source), script=script, bad_files=bad_update,
                              bitlocker_password=bitlocker_password, content_dir=content_dir).iso


def finish_windows_recovery(disk: Path, path: str, workdir: Path | None = None) -> None:
    """After the recovery boot: for safe-mode, make sure the BCD no longer asks for Safe
    Mode (safe-mode.ps1 clears it itself; this covers a run that never got there). For
    recovery-env nothing is on the disk: the medium is simply not attached again."""
    if path == "safe-mode":
        clear_safe_mode_offline(disk, workdir or disk.parent / "recovery-safe-mode")


__all__ = ["PLANS", "RUNONCE_COMMAND", "RUNONCE_KEY", "RUNONCE_NAME", "SERVICE_COMMAND", "SERVICE_NAME",
           "SafeModeStaging", "Step", "current_control_set", "service_values", "stage_safe_mode_starters",
           "WinPEMediumError", "clear_safe_mode_offline", "finish_windows_recovery", "online_safe_mode_commands",
           "prepare_windows_recovery", "recovery_domain_values", "render_safe_mode_script", "safe_mode_files",
           "sample_script", "stage_safe_mode_offline"]
