"""Windows recovery pieces, as far as they run without Windows.

* The offline BCD edit (harness/windows/bcd.py): a store shaped like a real one (boot
  manager object naming a Windows loader as its default) is built with hivex on top of
  the empty hive bcd.write_empty_hive() writes; safeboot is set and cleared on the
  default loader and read back by hivexget AND by regipy, an independent parser.
  The store's contents are stand-ins in the layout of a real store; it was never made
  by bcdedit (no Windows here).
* The WinPE/WinRE medium (harness/windows/winpe.py): a real WIM (wimcapture of a tiny
  tree shaped like WinPE: its files are stand-ins) and a media tree with a real FAT
  EFI boot image become a real El Torito UEFI ISO, read back with xorriso and wimlib.
* The recovery domain (recovery_plan.py): the CD-ROM first, the disk second; libvirt's
  schema accepts it; (vm) OVMF tries the medium first and finds its EFI boot image.
* (vm) The offline Safe Mode staging on a real GPT disk (FAT ESP + NTFS) with guestfish.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError, InfraError
from harness.recovery import bad_update_list
from harness.vm.templates import render
from harness.windows import WINDOWS_TEMPLATE, Firmware, check_host, create_overlay
from harness.windows import bcd
from harness.windows.recovery_plan import (
    PLANS,
    WINPE_MEDIA_ENV,
    RUNONCE_COMMAND,
    RUNONCE_KEY,
    RUNONCE_NAME,
    SERVICE_COMMAND,
    clear_safe_mode_offline,
    current_control_set,
    online_safe_mode_commands,
    prepare_windows_recovery,
    recovery_domain_values,
    render_safe_mode_script,
    safe_mode_files,
    sample_script,
    stage_safe_mode_offline,
    stage_safe_mode_starters,
)
from harness.windows.winpe import (
    PASSWORD_FILE,
    SAMPLE_SCRIPT,
    WinPEMediumError,
    build_winpe_medium,
    render_recover_cmd,
)
from harness.testing import skip_or_fail

from .conftest import require_tool

LOADER = "{a5a30fa2-3d06-4e9f-b5f4-a01df9d1fcba}"  # a loader GUID as Windows setup makes them
RESUME = "{a5a30fa4-3d06-4e9f-b5f4-a01df9d1fcba}"
PASSWORD = "123456-234567-345678-456789-567890-678901-789012-890123"
BAD = {"C-00000291-00000000-00000032.sys": b"\xaa\xaa\xaa\xaa bad channel file"}
HIVEX_FIX = "install libhivex-bin (make setup)"



def regipy_hive(path: Path) -> Any:
    """regipy (pip) reads a hive independently of hivex; it is optional here."""
    try:
        from regipy.registry import RegistryHive
    except ImportError:
        skip_or_fail("regipy is not installed: pip install regipy (the independent hive reader of these tests)")
    return RegistryHive(str(path))


def make_store(path: Path) -> Path:
    """A BCD store in the layout bcdedit makes (Objects\\{guid}\\Description Type,
    Elements\\<id>\\Element), with a boot manager, a Windows loader and its resume object."""
    require_tool("hivexsh", HIVEX_FIX)
    bcd.write_empty_hive(path, "NewStoreRoot", "BCD")
    s, d = bcd.string_value, bcd.dword_value
    bcd.write_values(path, "Description", {"KeyName": s("BCD00000000"), "System": d(1), "TreatAsSystem": d(1)})
    bm = f"Objects\\{bcd.BOOTMGR}"
    bcd.write_values(path, f"{bm}\\Description", {"Type": d(bcd.OBJECT_TYPE_BOOTMGR)})
    bcd.write_values(path, f"{bm}\\Elements\\12000004", {"Element": s("Windows Boot Manager")})
    bcd.write_values(path, f"{bm}\\Elements\\23000003", {"Element": s(LOADER)})
    bcd.write_values(path, f"{bm}\\Elements\\24000001",
                     {"Element": bcd.Value(7, (LOADER + "\0\0").encode("utf-16-le"))})  # displayorder
    bcd.write_values(path, f"{bm}\\Elements\\25000004", {"Element": bcd.Value(3, (30).to_bytes(8, "little"))})
    bcd.write_values(path, f"Objects\\{LOADER}\\Description", {"Type": d(bcd.OBJECT_TYPE_OSLOADER)})
    bcd.write_values(path, f"Objects\\{LOADER}\\Elements\\12000002", {"Element": s("\\Windows\\system32\\winload.efi")})
    bcd.write_values(path, f"Objects\\{LOADER}\\Elements\\12000004", {"Element": s("Windows 11")})
    bcd.write_values(path, f"Objects\\{LOADER}\\Elements\\22000002", {"Element": s("\\Windows")})
    bcd.write_values(path, f"Objects\\{LOADER}\\Elements\\23000003", {"Element": s(RESUME)})
    bcd.write_values(path, f"Objects\\{LOADER}\\Elements\\16000049", {"Element": bcd.Value(3, b"\x01")})
    bcd.write_values(path, f"Objects\\{RESUME}\\Description", {"Type": d(0x10200004)})
    return path


def hivexget(hive: Path, key: str, name: str | None = None) -> bytes:
    argv = ["hivexget", str(hive), key] + ([name] if name else [])
    return subprocess.run(argv, capture_output=True, check=True, timeout=30).stdout


# ------------------------------------------------------------------ BCD


def test_an_empty_hive_from_write_empty_hive_opens_in_hivex_and_regipy(tmp_path: Path) -> None:
    require_tool("hivexsh", HIVEX_FIX)
    hive = bcd.write_empty_hive(tmp_path / "empty", "ROOT")
    assert hive.stat().st_size == 0x2000
    header = hive.read_bytes()[:0x200]
    checksum = 0
    for offset in range(0, 0x1FC, 4):
        checksum ^= struct.unpack_from("<I", header, offset)[0]
    assert struct.unpack_from("<I", header, 0x1FC)[0] == checksum
    assert hivexget(hive, "\\") == b""  # a root without values
    bcd.write_values(hive, "A\\B", {"V": bcd.dword_value(7)})
    assert hivexget(hive, "\\A\\B", "V").strip() == b"7"
    reg = regipy_hive(hive)
    assert [(v.name, v.value) for v in reg.get_key("\\A\\B").iter_values()] == [("V", 7)]


def test_safeboot_is_set_and_cleared_on_the_default_loader_of_a_store(tmp_path: Path) -> None:
    store = make_store(tmp_path / "BCD")
    assert bcd.default_loader(store) == LOADER
    assert bcd.get_safeboot(store) is None

    assert bcd.set_safeboot(store, "minimal") == LOADER
    element = f"\\Objects\\{LOADER}\\Elements\\25000080"
    assert hivexget(store, element) == b'"Element"=hex(3):00,00,00,00,00,00,00,00\n'  # REG_BINARY, 8 bytes LE 0
    assert bcd.get_safeboot(store) == "minimal"
    reg = regipy_hive(store)
    [value] = reg.get_key(element).iter_values()
    assert (value.name, value.value_type, value.value) == ("Element", "REG_BINARY", "0000000000000000")
    # the rest of the store is untouched: the boot manager, the loader's other elements
    assert hivexget(store, f"\\Objects\\{bcd.BOOTMGR}\\Elements\\23000003", "Element").strip() == LOADER.encode()
    assert hivexget(store, f"\\Objects\\{LOADER}\\Elements\\22000002", "Element").strip() == b"\\Windows"
    assert not bcd.key_exists(store, f"Objects\\{RESUME}\\Elements\\25000080")

    bcd.set_safeboot(store, "network")
    assert hivexget(store, element, "Element") == b"\x01" + b"\0" * 7
    assert bcd.clear_safeboot(store) is True
    assert bcd.get_safeboot(store) is None
    assert not bcd.key_exists(store, element)
    assert bcd.clear_safeboot(store) is False
    reg = regipy_hive(store)
    names = {sub.name for sub in reg.get_key(f"\\Objects\\{LOADER}\\Elements").iter_subkeys()}
    assert names == {"12000002", "12000004", "22000002", "23000003", "16000049"}


def test_writing_a_value_keeps_the_keys_other_values_byte_for_byte(tmp_path: Path) -> None:
    require_tool("hivexsh", HIVEX_FIX)
    hive = bcd.write_empty_hive(tmp_path / "SOFTWARE", "ROOT")
    others = {"Other": bcd.string_value('C:\\x "quoted" \\\\ ü'), "Bin": bcd.Value(3, b"\0\1\2"),
              "Num": bcd.dword_value(0xDEADBEEF), "Exp": bcd.string_value("%SystemRoot%\\a", bcd.REG_EXPAND_SZ)}
    bcd.write_values(hive, RUNONCE_KEY, others)
    bcd.write_values(hive, RUNONCE_KEY, {RUNONCE_NAME: bcd.string_value(RUNONCE_COMMAND)})
    values = bcd.read_values(hive, RUNONCE_KEY)
    assert values == {**others, RUNONCE_NAME: bcd.string_value(RUNONCE_COMMAND)}
    reg = {v.name: v.value for v in regipy_hive(hive).get_key("\\" + RUNONCE_KEY).iter_values()}
    assert reg["*HarnessRecovery"] == RUNONCE_COMMAND and reg["Other"] == 'C:\\x "quoted" \\\\ ü'


@pytest.mark.parametrize("damage, words", [
    ("not-regf", "not a registry hive (no 'regf' signature)"),
    ("no-bootmgr", "no boot manager object"),
    ("no-default", "the boot manager has no default object (element 23000003)"),
    ("dangling", f"the default object {LOADER} does not exist in Objects"),
    ("not-a-loader", "not a Windows OS loader"),
])
def test_a_store_that_is_not_a_bootable_bcd_is_one_clear_error(tmp_path: Path, damage: str, words: str) -> None:
    store = make_store(tmp_path / "BCD")
    if damage == "not-regf":
        store.write_bytes(b"MZ" + b"\0" * 8190)
    elif damage == "no-bootmgr":
        bcd.delete_key(store, f"Objects\\{bcd.BOOTMGR}")
    elif damage == "no-default":
        bcd.delete_key(store, f"Objects\\{bcd.BOOTMGR}\\Elements\\23000003")
    elif damage == "dangling":
        bcd.delete_key(store, f"Objects\\{LOADER}")
    else:
        bcd.write_values(store, f"Objects\\{LOADER}\\Description", {"Type": bcd.dword_value(0x10100002)})
    with pytest.raises(bcd.HiveError) as caught:
        bcd.set_safeboot(store)
    assert words in str(caught.value) and str(store) in str(caught.value)


def test_the_online_path_uses_bcdedit_and_a_starred_runonce_value() -> None:
    assert bcd.bcdedit_set_safeboot() == "bcdedit /set {default} safeboot minimal"
    assert bcd.BCDEDIT_CLEAR_SAFEBOOT == "bcdedit /deletevalue {default} safeboot"
    commands = online_safe_mode_commands()
    assert commands[0] == ('reg add "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\RunOnce" /v '
                           '"*HarnessRecovery" /t REG_SZ /d "powershell.exe -NoProfile -ExecutionPolicy Bypass '
                           '-File C:\\harness\\recovery\\safe-mode.ps1" /f')
    service = "HKLM\\SYSTEM\\CurrentControlSet\\Services\\HarnessRecovery"
    assert commands[1:7] == [
        f'reg add "{service}" /v ImagePath /t REG_EXPAND_SZ /d "{SERVICE_COMMAND}" /f',
        f'reg add "{service}" /v Type /t REG_DWORD /d 16 /f', f'reg add "{service}" /v Start /t REG_DWORD /d 2 /f',
        f'reg add "{service}" /v ErrorControl /t REG_DWORD /d 0 /f',
        f'reg add "{service}" /v ObjectName /t REG_SZ /d LocalSystem /f',
        'reg add "HKLM\\SYSTEM\\CurrentControlSet\\Control\\SafeBoot\\Minimal\\HarnessRecovery" /ve /t REG_SZ '
        '/d Service /f']
    assert commands[7:] == ["bcdedit /set {default} safeboot minimal", "shutdown /r /t 0"]
    with pytest.raises(ValueError, match="'safe' is not one of minimal, network, dsrepair"):
        bcd.bcdedit_set_safeboot("safe")


def test_the_safe_mode_script_runs_the_users_script_clears_safeboot_and_reports_on_com2(tmp_path: Path) -> None:
    files = safe_mode_files(None, bad_update_list(BAD))
    assert sorted(files) == ["bad-files.txt", "remove-bad-content.cmd", "safe-mode.ps1"]
    text = files["safe-mode.ps1"].decode()
    assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
    assert ". 'C:\\harness\\lib.ps1'" in text  # Write-HarnessLine: COM2 and C:\harness\recovery.log
    assert "& cmd.exe /d /c \"`\"$script`\"\" 2>&1" in text
    assert "bcdedit.exe /deletevalue '{default}' safeboot" in text
    assert 'Write-Recovery "HARNESS-RECOVERY-DONE path=safe-mode rc=$rc"' in text
    assert text.index("deletevalue") < text.index("HARNESS-RECOVERY-DONE") < text.index("Restart-Computer -Force")
    # one run per boot whichever starter comes first; both starters removed before the user's script
    assert "[System.IO.File]::Open((Join-Path $Recovery 'started.lock'), 'CreateNew', 'Write', 'None')" in text
    for removal in ("& sc.exe delete HarnessRecovery",
                    "& reg.exe delete 'HKLM\\SYSTEM\\CurrentControlSet\\Control\\SafeBoot\\Minimal\\HarnessRecovery' /f",
                    "& reg.exe delete 'HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\RunOnce' /v '*HarnessRecovery' /f"):
        assert text.index("started.lock") < text.index(removal) < text.index("& cmd.exe /d /c"), removal
    assert files["bad-files.txt"] == (f"{bad_update_list(BAD)[0][0]}  C-00000291-00000000-00000032.sys\r\n").encode()
    ps1 = tmp_path / "fix.ps1"
    ps1.write_text("Remove-Item $env:HARNESS_CONTENT_DIR\\x\n")
    assert "& powershell.exe -NoProfile -ExecutionPolicy Bypass -File $script 2>&1" in \
        safe_mode_files(ps1, [])["safe-mode.ps1"].decode()
    assert render_safe_mode_script("x.cmd", "cmd") == render_safe_mode_script("x.cmd", "cmd")
    # the family's recovery marker parses what the script prints
    from harness.families.windows import MARKERS
    match = MARKERS.recovery_done.search("HARNESS-RECOVERY-DONE path=safe-mode rc=0")
    assert match and match.group("path") == "safe-mode" and match.group("rc") == "0"


def make_system_hive(path: Path, current: int = 1) -> Path:
    """A stand-in SYSTEM hive: Select\\Current and ControlSet00<current> with a SafeBoot\\Minimal
    list holding one entry of its own (and a ControlSet001 when current is another)."""
    bcd.write_empty_hive(path, "ROOT", "SYSTEM")
    bcd.write_values(path, "Select", {"Current": bcd.dword_value(current), "Default": bcd.dword_value(current)})
    for n in sorted({1, current}):
        bcd.write_values(path, f"ControlSet{n:03d}\\Control\\SafeBoot\\Minimal\\RpcSs",
                         {"": bcd.string_value("Service")})
        bcd.write_values(path, f"ControlSet{n:03d}\\Services\\RpcSs", {"Start": bcd.dword_value(2)})
    return path


def test_the_safe_mode_starters_are_a_safeboot_minimal_service_and_a_starred_runonce(tmp_path: Path) -> None:
    require_tool("hivexsh", HIVEX_FIX)
    system = make_system_hive(tmp_path / "SYSTEM", current=2)
    software = bcd.write_empty_hive(tmp_path / "SOFTWARE", "ROOT", "SOFTWARE")
    assert current_control_set(system) == "ControlSet002"
    assert stage_safe_mode_starters(system, software, autologon=None) == "ControlSet002"

    reg = regipy_hive(system)
    service = {v.name: v.value for v in reg.get_key("\\ControlSet002\\Services\\HarnessRecovery").iter_values()}
    assert service == {"Type": 16, "Start": 2, "ErrorControl": 0, "ImagePath": SERVICE_COMMAND,
                       "ObjectName": "LocalSystem", "DisplayName": "harness Safe Mode recovery"}
    image = bcd.read_value(system, "ControlSet002\\Services\\HarnessRecovery", "ImagePath")
    assert image is not None and image.type == bcd.REG_EXPAND_SZ  # %SystemRoot% is expanded by the SCM
    minimal = bcd.read_values(system, "ControlSet002\\Control\\SafeBoot\\Minimal\\HarnessRecovery")
    assert {n: (v.type, v.text()) for n, v in minimal.items()} == {"": (bcd.REG_SZ, "Service")}
    assert bcd.key_exists(system, "ControlSet002\\Control\\SafeBoot\\Minimal\\RpcSs")  # the list is kept
    assert not bcd.key_exists(system, "ControlSet001\\Services\\HarnessRecovery")  # only the current set
    runonce = {v.name: v.value for v in regipy_hive(software).get_key(f"\\{RUNONCE_KEY}").iter_values()}
    assert runonce == {RUNONCE_NAME: RUNONCE_COMMAND} and RUNONCE_NAME.startswith("*")
    assert not bcd.key_exists(software, "Microsoft\\Windows NT\\CurrentVersion\\Winlogon")

    bcd.write_values(system, "Select", {"Current": bcd.dword_value(3)})
    with pytest.raises(bcd.HiveError, match="Select\\\\Current names ControlSet003, which the hive does not have"):
        current_control_set(system)
    with pytest.raises(bcd.HiveError, match="no REG_DWORD Select\\\\Current: not a SYSTEM hive"):
        current_control_set(software)


# ------------------------------------------------------------------ WinPE / WinRE medium


def _tools() -> None:
    for tool in ("wimcapture", "wimlib-imagex", "xorriso"):
        require_tool(tool, "install wimtools and xorriso (make setup)")
    for tool in ("mkfs.vfat", "mcopy", "mmd"):
        require_tool(tool, "install dosfstools and mtools (make setup)")


def make_media(root: Path, images: int = 1, efi_image: str | None = "efisys_noprompt.bin",
               cdboot_noprompt: bool = False) -> Path:
    """An ADK-shaped media tree: sources/boot.wim (a real WIM of a stand-in WinPE tree),
    efi/microsoft/boot/<efi_image> (a real FAT image whose \\EFI\\BOOT\\BOOTX64.EFI is not
    a real loader; none when None), with `cdboot_noprompt` that loader stand-in as
    efi/microsoft/boot/cdboot_noprompt.efi too, EFI/Boot/bootx64.efi and
    EFI/Microsoft/Boot/BCD stand-ins."""
    media = root / "media"
    pe = root / "pe"
    (pe / "Windows" / "System32").mkdir(parents=True)
    (pe / "Windows" / "System32" / "winload.stand-in").write_text("stand-in for WinPE's System32\n")
    (media / "sources").mkdir(parents=True)
    wim = media / "sources" / "boot.wim"
    for n in range(images):
        command = "capture" if n == 0 else "append"
        subprocess.run(["wimlib-imagex", command, str(pe), str(wim), f"Microsoft Windows PE (amd64) {n + 1}"]
                       + (["--boot"] if n == 0 else []), check=True, capture_output=True, timeout=60)
    efi_dir = media / "efi" / "microsoft" / "boot"
    efi_dir.mkdir(parents=True)
    loader = root / "BOOTX64.EFI"
    loader.write_bytes(foreign_efi_application())
    if efi_image is not None:
        img = efi_dir / efi_image
        subprocess.run(["mkfs.vfat", "-C", "-n", "EFISECTOR", str(img), "1440"], check=True, capture_output=True)
        subprocess.run(["mmd", "-i", str(img), "::/EFI", "::/EFI/BOOT"], check=True, capture_output=True)
        subprocess.run(["mcopy", "-i", str(img), str(loader), "::/EFI/BOOT/BOOTX64.EFI"], check=True,
                       capture_output=True)
    if cdboot_noprompt:
        (efi_dir / "cdboot_noprompt.efi").write_bytes(loader.read_bytes())
    (media / "EFI" / "Boot").mkdir(parents=True)
    (media / "EFI" / "Boot" / "bootx64.efi").write_bytes(loader.read_bytes())
    (media / "EFI" / "Microsoft" / "Boot").mkdir(parents=True)
    bcd.write_empty_hive(media / "EFI" / "Microsoft" / "Boot" / "BCD", "NewStoreRoot", "BCD")
    return media


def foreign_efi_application() -> bytes:
    """A stand-in for Microsoft's bootmgfw.efi: the headers of a PE32+ EFI application
    (subsystem 10) for ARM64 (machine 0xAA64), no code. x64 OVMF takes it for a boot file
    and refuses to load it: an image of the wrong machine type."""
    dos = b"MZ" + b"\0" * 58 + struct.pack("<I", 0x40)
    coff = b"PE\0\0" + struct.pack("<HHIIIHH", 0xAA64, 0, 0, 0, 0, 240, 0x0022)
    optional = bytearray(240)
    struct.pack_into("<H", optional, 0, 0x20B)  # PE32+
    struct.pack_into("<I", optional, 32, 0x1000)  # section alignment
    struct.pack_into("<I", optional, 36, 0x200)  # file alignment
    struct.pack_into("<I", optional, 56, 0x1000)  # size of image
    struct.pack_into("<I", optional, 60, 0x200)  # size of headers
    struct.pack_into("<H", optional, 68, 10)  # EFI application
    return (dos + coff + bytes(optional)).ljust(0x200, b"\0")


def iso_listing(iso: Path) -> tuple[str, list[str]]:
    report = subprocess.run(["xorriso", "-indev", str(iso), "-report_el_torito", "plain"], capture_output=True,
                            text=True, check=True, timeout=60)
    files = subprocess.run(["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"], capture_output=True,
                           text=True, check=True, timeout=60)
    return report.stdout, [line.strip("'") for line in files.stdout.splitlines()]


def extract(iso: Path, path: str, dest: Path) -> Path:
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", path, str(dest)],
                   check=True, capture_output=True, timeout=60)
    return dest


def wim_file(wim: Path, index: int, path: str) -> bytes:
    return subprocess.run(["wimlib-imagex", "extract", str(wim), str(index), path, "--to-stdout"],
                          check=True, capture_output=True, timeout=60).stdout


def wim_paths(wim: Path, index: int) -> list[str]:
    return subprocess.run(["wimlib-imagex", "dir", str(wim), str(index)], check=True, capture_output=True,
                          text=True, timeout=60).stdout.split()


def test_the_recovery_medium_is_a_uefi_iso_whose_winpe_runs_the_harness_script(tmp_path: Path) -> None:
    _tools()
    # media with the prompting efisys.bin and the loader that does not prompt: the
    # medium's El Torito image is made from cdboot_noprompt.efi, efisys.bin is not used
    media = make_media(tmp_path, efi_image="efisys.bin", cdboot_noprompt=True)
    user_script = tmp_path / "fix-it.cmd"
    user_script.write_text("@echo off\necho removing the bad channel file\n")
    iso = tmp_path / "out" / "recovery.iso"
    iso.parent.mkdir()
    medium = build_winpe_medium(iso, media, script=user_script, bad_files=bad_update_list(BAD),
                                bitlocker_password=PASSWORD)
    assert medium.iso == iso and medium.wim_index == 1
    assert oct(iso.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in iso.parent.iterdir()] == ["recovery.iso"]  # the staging directory is gone

    report, files = iso_listing(iso)
    assert re.search(r"El Torito boot img :\s+1\s+UEFI\s+y\s+none\b", report), report
    assert "El Torito img path :   1  /efi/microsoft/boot/efisys_noprompt.bin" in report
    assert medium.efi_boot_image == "efi/microsoft/boot/efisys_noprompt.bin" and not medium.prompts_for_key
    assert {"/sources/boot.wim", "/efi/microsoft/boot/efisys_noprompt.bin", "/EFI/Boot/bootx64.efi",
            "/EFI/Microsoft/Boot/BCD"} <= set(files)
    made = extract(iso, "/efi/microsoft/boot/efisys_noprompt.bin", tmp_path / "efisys_noprompt.bin")
    fat = subprocess.run(["file", "-b", str(made)], capture_output=True, text=True).stdout
    assert "FAT (12 bit)" in fat, fat
    assert subprocess.run(["mtype", "-i", str(made), "::/EFI/BOOT/BOOTX64.EFI"], capture_output=True,
                          check=True).stdout == foreign_efi_application()

    wim = extract(iso, "/sources/boot.wim", tmp_path / "boot.wim")
    assert {"/Windows/System32/winpeshl.ini", "/harness/recover.cmd", "/harness/fix-it.cmd",
            "/harness/bad-files.txt", f"/harness/{PASSWORD_FILE}",
            "/Windows/System32/winload.stand-in"} <= set(wim_paths(wim, 1))
    assert wim_file(wim, 1, "/Windows/System32/winpeshl.ini") == (
        b"[LaunchApps]\r\n%SYSTEMROOT%\\System32\\wpeinit.exe\r\n"
        b"%SYSTEMROOT%\\System32\\cmd.exe, /c %SYSTEMDRIVE%\\harness\\recover.cmd\r\n")
    recover = wim_file(wim, 1, "/harness/recover.cmd").decode("ascii")
    assert recover == render_recover_cmd("fix-it.cmd", "cmd").replace("\n", "\r\n")
    for line in ('mode COM1 BAUD=115200 PARITY=N DATA=8 STOP=1 >nul 2>&1',
                 'call "%H%\\fix-it.cmd" > "%H%\\script.out" 2>&1',
                 '  >COM1 echo recovery: %%L',
                 '>COM1 echo HARNESS-RECOVERY-DONE path=recovery-env rc=%RC%',
                 'wpeutil shutdown'):
        assert line + "\r\n" in recover, line
    assert 'manage-bde -unlock %%D: -RecoveryPassword %PW% >nul 2>&1 && call :say' in recover
    assert "\\Windows\\System32\\drivers\\HarnessSensor" in recover
    assert wim_file(wim, 1, "/harness/fix-it.cmd") == user_script.read_bytes()
    assert wim_file(wim, 1, "/harness/bad-files.txt").decode() == \
        f"{bad_update_list(BAD)[0][0]}  C-00000291-00000000-00000032.sys\r\n"
    assert wim_file(wim, 1, f"/harness/{PASSWORD_FILE}") == PASSWORD.encode() + b"\r\n"
    # the password is on the medium only: not in the script, the listing, the result, or elsewhere here
    assert PASSWORD not in recover and PASSWORD not in repr(medium)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path not in (iso, wim):
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_a_winpe_iso_and_a_winre_wim_are_inputs_too(tmp_path: Path) -> None:
    _tools()
    media = make_media(tmp_path, efi_image="efisys_noprompt.bin")
    source_iso = tmp_path / "WinPE_amd64.iso"  # as MakeWinPEMedia /ISO would give it
    subprocess.run(["xorriso", "-as", "mkisofs", "-iso-level", "3", "-J", "-V", "WINPE", "-o", str(source_iso),
                    str(media)], check=True, capture_output=True, timeout=60)
    winre = tmp_path / "winre.wim"  # a WinRE image with two images; the boot index is 2
    pe = tmp_path / "pe"
    subprocess.run(["wimlib-imagex", "capture", str(pe), str(winre), "one"], check=True, capture_output=True)
    subprocess.run(["wimlib-imagex", "append", str(pe), str(winre), "Microsoft Windows Recovery Environment",
                    "--boot"], check=True, capture_output=True)
    out = tmp_path / "recovery.iso"
    medium = build_winpe_medium(out, source_iso, wim=winre, script=SAMPLE_SCRIPT, bad_files=bad_update_list(BAD))
    assert medium.wim_index == 2 and not medium.prompts_for_key
    report, files = iso_listing(out)
    assert "/efi/microsoft/boot/efisys_noprompt.bin" in report
    wim = extract(out, "/sources/boot.wim", tmp_path / "boot.wim")
    assert "/harness/recover.cmd" in wim_paths(wim, 2) and "/harness/recover.cmd" not in wim_paths(wim, 1)
    assert f"/harness/{PASSWORD_FILE}" not in wim_paths(wim, 2)
    assert wim_file(wim, 2, "/harness/remove-bad-content.cmd") == SAMPLE_SCRIPT.read_bytes()


@pytest.mark.parametrize("case, words", [
    ("no-boot-wim", "no sources\\boot.wim: give the ADK's media directory (`copype amd64"),
    ("no-efi-image", "no EFI boot image (efi\\microsoft\\boot\\efisys_noprompt.bin, cdboot_noprompt.efi or "
                     "efisys.bin)"),
    ("prompt-only", "only efi\\microsoft\\boot\\efisys.bin, whose loader waits for \"Press any key to boot from CD "
                    "or DVD\" and, with nobody at the keyboard, falls through to the looping disk: give media that "
                    "hold efi\\microsoft\\boot\\efisys_noprompt.bin or cdboot_noprompt.efi"),
    ("not-a-wim", "not a WIM file (no MSWIM header): give WinPE's sources\\boot.wim or WinRE's winre.wim"),
    ("wrong-index", "image index 3 does not exist in the boot image (it has 1 image(s); `wiminfo boot.wim` "
                    "lists them): pass index=1..1"),
    ("missing-media", "not found: give the ADK's media directory"),
    ("bad-script", "WinPE runs .cmd, .bat or .ps1 scripts, not .sh: rename it or wrap it in a .cmd"),
    ("bad-password", "bitlocker_password is not a BitLocker recovery password: 48 digits in 8 groups of 6"),
])
def test_a_bad_input_is_one_clear_error_naming_the_file_and_the_fix(tmp_path: Path, case: str, words: str) -> None:
    _tools()
    media = make_media(tmp_path, efi_image="efisys.bin" if case == "prompt-only" else "efisys_noprompt.bin")
    kwargs: dict[str, Any] = {}
    named = media
    if case == "no-boot-wim":
        (media / "sources" / "boot.wim").unlink()
    elif case == "no-efi-image":
        shutil.rmtree(media / "efi")
    elif case == "not-a-wim":
        named = kwargs["wim"] = tmp_path / "winre.wim"
        named.write_bytes(b"PK\3\4 a zip, not a WIM" + b"\0" * 100)
    elif case == "wrong-index":
        kwargs["index"] = 3
    elif case == "missing-media":
        named = media = tmp_path / "nowhere"
    elif case == "prompt-only":
        pass  # make_media gave it efisys.bin alone
    elif case == "bad-script":
        named = kwargs["script"] = tmp_path / "fix.sh"
        named.write_text("rm x\n")
    else:
        kwargs["bitlocker_password"] = "123456-999999"
        named = None
    with pytest.raises(WinPEMediumError) as caught:
        build_winpe_medium(tmp_path / "recovery.iso", media, **kwargs)
    message = str(caught.value)
    assert words in message
    if named is not None:
        assert message.startswith(str(named)) or f"recovery script {named}" in message
    assert "123456-999999" not in message
    assert not (tmp_path / "recovery.iso").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".winpe-")]


def test_the_backend_entry_point_builds_the_medium_from_the_media_the_user_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tools()
    media = make_media(tmp_path)
    work = tmp_path / "recovery-recovery-env"
    work.mkdir()
    disk = tmp_path / "disk.qcow2"  # not touched by this path
    monkeypatch.delenv(WINPE_MEDIA_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"needs the user's WinPE or WinRE media: set {WINPE_MEDIA_ENV} to the "
                                          "ADK's media directory"):
        prepare_windows_recovery(disk, "recovery-env", work, sample_script("recovery-env"), [])
    monkeypatch.setenv(WINPE_MEDIA_ENV, str(media))
    iso = prepare_windows_recovery(disk, "recovery-env", work, sample_script("recovery-env"),
                                   bad_update_list(BAD))
    assert iso == work / "recovery.iso" and "UEFI" in iso_listing(iso)[0]
    assert not disk.exists()
    with pytest.raises(ConfigError, match="unknown recovery path 'winre'"):
        prepare_windows_recovery(disk, "winre", work, SAMPLE_SCRIPT, [])


# ------------------------------------------------------------------ the recovery domain


def _boots(xml: str) -> dict[tuple[str, str], str | None]:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    return {(d.get("device"), d.find("target").get("dev")): (d.find("boot").get("order") if d.find("boot") is not None
                                                              else None) for d in root.findall("devices/disk")}


def test_the_medium_is_attached_first_in_the_boot_order_for_one_boot_and_gone_after(
        tmp_path: Path, firmware: Firmware) -> None:
    validator = require_tool("virt-xml-validate", "install libvirt-clients (make setup)")
    require_tool("xmllint", "install libxml2-utils (make setup)")
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(b"QFI\xfb" + b"\0" * 508)
    iso = tmp_path / "recovery.iso"
    iso.write_bytes(b"\0" * 2048)
    common = dict(domain_type="qemu", name="harness-win-recovery", run_id="r1", test_id="t::recovery",
                  artifacts=tmp_path, disk=disk, firmware=firmware, owner_pid=1)
    # the recovery boot: the disk on SATA (WinPE has storahci inbox, no virtio driver);
    # the boots before and after: virtio as ever
    for medium, expected in ((iso, {("disk", "sda"): "2", ("cdrom", "sdb"): "1"}),
                             (None, {("disk", "vda"): "1"})):
        xml = render(WINDOWS_TEMPLATE, **recovery_domain_values("win10", medium=medium, **common))
        path = tmp_path / f"domain-{'cd' if medium else 'disk'}.xml"
        path.write_text(xml)
        proc = subprocess.run([validator, str(path), "domain"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert _boots(xml) == expected
        if medium is not None:
            assert f"<source file='{iso}'/>" in xml
            assert "<target dev='sda' bus='sata'/>" in xml and "virtio-scsi" not in xml
    assert recovery_domain_values("win10", medium=iso, disk_bus="sata", **common)["disk"]["bus"] == "sata"
    with pytest.raises(ConfigError, match="disk_bus 'virtio' for the recovery boot: WinPE has no driver for it"):
        recovery_domain_values("win10", medium=iso, disk_bus="virtio", **common)
    with pytest.raises(ConfigError, match="cdroms is set from `medium`"):
        recovery_domain_values("win10", medium=iso, cdroms=[], **common)
    assert [s.expect for s in PLANS["recovery-env"] if s.expect] == [
        "HARNESS-RECOVERY-DONE path=recovery-env rc=", "HARNESS-SENSOR-LOADED"]
    assert [s.expect for s in PLANS["safe-mode"] if s.expect] == [
        "HARNESS-RECOVERY-DONE path=safe-mode rc=", "HARNESS-SENSOR-LOADED"]


# ------------------------------------------------------------------ real QEMU / libguestfs (vm)


OVMF_TIMEOUT_S = 120.0


@pytest.mark.vm
def test_ovmf_boots_the_recovery_medium_first_and_finds_its_efi_boot_image(
        tmp_path: Path, artifacts_dir: Path, harness_run_id: str, harness_profile: Any) -> None:
    """The medium's loader is a stand-in (an ARM64 EFI application's headers), so booting
    it fails; how it fails tells what the firmware saw. A CD without an El Torito EFI
    entry, or whose \\EFI\\BOOT\\BOOTX64.EFI is not a PE image, fails with "Not Found"
    (the blank install medium of test_windows_templates.py); this one gets further:
    OVMF found the El Torito EFI image, the loader file in it, and refused that file as
    the wrong kind of image ("Unsupported")."""
    _tools()
    require_tool("qemu-system-x86_64", "install qemu-system-x86 (make setup)")
    qemu_img = require_tool("qemu-img", "install qemu-utils (make setup)")
    try:
        check_host(tpm=False)
        import libvirt

        from harness.vm.accel import choose_domain_type
        from harness.vm.connection import open_connection
        from harness.vm.console import ConsoleBuffer, ConsoleReader

        conn = open_connection(harness_profile.uri)
    except ImportError:
        skip_or_fail("libvirt-python is not installed (make setup)")
    except InfraError as exc:
        skip_or_fail(str(exc))
    media = make_media(tmp_path, efi_image="efisys.bin", cdboot_noprompt=True)  # the image made here boots
    iso = build_winpe_medium(artifacts_dir / "recovery.iso", media, bad_files=bad_update_list(BAD)).iso
    golden = artifacts_dir / "blank.qcow2"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(golden), "256M"], check=True)
    disk = create_overlay(golden, artifacts_dir / "disk.qcow2")
    domain_type, _why = choose_domain_type(harness_profile.accel)
    name = f"harness-win-recovery-{harness_run_id}-{os.getpid()}"
    values = recovery_domain_values("win10", medium=iso, domain_type=domain_type, name=name, run_id=harness_run_id,
                                    test_id=f"{__name__}::ovmf", artifacts=artifacts_dir, disk=disk,
                                    memory_mib=512)
    assert values["disk"]["bus"] == "sata"
    xml = render(WINDOWS_TEMPLATE, **values)
    (artifacts_dir / "domain.xml").write_text(xml)
    buffer = ConsoleBuffer()
    dom = reader = None
    t0 = time.monotonic()
    try:
        dom = conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED)
        reader = ConsoleReader(conn, dom, lambda _line: None, buffer)
        dom.resume()
        first = buffer.search(re.compile(r'BdsDxe: (?:failed to load|loading) Boot\d+ "[^"]+"[^\n]*'), 0,
                              OVMF_TIMEOUT_S)
        assert first, f"OVMF printed no boot attempt within {OVMF_TIMEOUT_S:.0f} s:\n{buffer.tail(1500)}"
        # the disk on the ICH9 AHCI controller (00:1f.2), port 0: what WinPE's storahci drives
        disk_try = buffer.search(re.compile(r'BdsDxe: failed to load Boot\d+ "UEFI QEMU HARDDISK[^"]*" '
                                            r'from PciRoot\(0x0\)/Pci\(0x1F,0x2\)/Sata\(0x0,0xFFFF,0x0\)'), 0, 60)
        assert disk_try, buffer.tail(1500)
        text = buffer.text
        (artifacts_dir / "com1.txt").write_text(text)
        (artifacts_dir / "timing.txt").write_text(f"disk attempt after {time.monotonic() - t0:.1f} s\n")
        loading = re.search(r'BdsDxe: loading Boot(\d+) "UEFI QEMU DVD-ROM[^"]*"', text)
        assert loading, text[-1500:]  # boot order 1, and a boot file was found on it
        refused = re.search(rf'BdsDxe: failed to load Boot{loading.group(1)} "UEFI QEMU DVD-ROM[^"]*" '
                            r'from [^\r\n]*: Unsupported', text)
        assert refused, text[-1500:]  # the stand-in loader is read and refused (wrong machine type)
        assert loading.start() < refused.start() < disk_try.start()  # then the disk, boot order 2
        assert "Not Found" not in text[loading.start():refused.end()]
    finally:
        if reader is not None:
            reader.stop()
        if dom is not None:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
        conn.close()
        for path in (disk, golden, artifacts_dir / "OVMF_VARS.fd"):
            path.unlink(missing_ok=True)


@pytest.mark.vm
def test_safe_mode_is_staged_offline_on_the_esp_and_the_windows_volume(tmp_path: Path) -> None:
    """A real GPT disk (qcow2) in the layout autounattend.xml.j2 makes: 1 FAT ESP with a
    BCD store, 2 MSR, 3 NTFS with Windows\\System32\\config\\SOFTWARE (a stand-in hive
    holding a RunOnce value of its own). Three guestfish runs (~30 s each under TCG)."""
    require_tool("guestfish", "install libguestfs-tools (make setup)")
    require_tool("hivexsh", HIVEX_FIX)
    qemu_img = require_tool("qemu-img", "install qemu-utils (make setup)")
    store = make_store(tmp_path / "BCD")
    hives = tmp_path / "hives"
    hives.mkdir()
    # SOFTWARE as a bugchecked machine leaves it: dirty, a pending entry in LOG1, a stale one in LOG2
    software, log1, log2, sequence = _dirty_hive_with_log(hives)
    system = make_system_hive(hives / "SYSTEM")
    bcd_log = hives / "BCD.LOG1"  # a log holding only its base block: nothing pending
    bcd_log.write_bytes(store.read_bytes()[:512])
    raw = tmp_path / "disk.raw"
    subprocess.run([qemu_img, "create", "-q", "-f", "raw", str(raw), "160M"], check=True)
    bcd.run_guestfish(raw, "part-init /dev/sda gpt\npart-add /dev/sda p 2048 67583\n"
                           "part-add /dev/sda p 67584 100351\npart-add /dev/sda p 100352 -2048\n"
                           "mkfs vfat /dev/sda1\nmkfs ntfs /dev/sda3\n"
                           f"mount /dev/sda1 /\nmkdir-p /EFI/Microsoft/Boot\nupload {store} /EFI/Microsoft/Boot/BCD\n"
                           f"upload {bcd_log} /EFI/Microsoft/Boot/BCD.LOG1\n"
                           f"umount /\nmount /dev/sda3 /\nmkdir-p /Windows/System32/config\n"
                           f"mkdir-p /Windows/System32/drivers/HarnessSensor\n"
                           f"upload {software} /Windows/System32/config/SOFTWARE\n"
                           f"upload {log1} /Windows/System32/config/SOFTWARE.LOG1\n"
                           f"upload {log2} /Windows/System32/config/SOFTWARE.LOG2\n"
                           f"upload {system} /Windows/System32/config/SYSTEM\n", readonly=False)
    disk = tmp_path / "disk.qcow2"
    subprocess.run([qemu_img, "convert", "-q", "-O", "qcow2", str(raw), str(disk)], check=True)
    raw.unlink()

    work = tmp_path / "work"
    staging = stage_safe_mode_offline(disk, work, bad_files=bad_update_list(BAD),
                                      autologon=("harness", "pa55-word"))
    assert (staging.loader, staging.mode, staging.control_set) == (LOADER, "minimal", "ControlSet001")
    assert staging.replayed == (("SOFTWARE", 1),)  # SYSTEM had no logs: edited as it was
    assert staging.files == ("bad-files.txt", "remove-bad-content.cmd", "safe-mode.ps1")
    assert bcd.get_safeboot(staging.bcd_before) is None and bcd.get_safeboot(staging.bcd_after) == "minimal"
    assert not [p for p in work.rglob("*") if p.name.startswith(("SOFTWARE", "SYSTEM"))]  # no hive is kept

    out = tmp_path / "out"
    out.mkdir()
    listing = bcd.run_guestfish(disk, f"mount-ro /dev/sda1 /\ndownload /EFI/Microsoft/Boot/BCD {out}/BCD\numount /\n"
                                      f"mount-ro /dev/sda3 /\ndownload /Windows/System32/config/SOFTWARE {out}/SOFTWARE\n"
                                      f"download /Windows/System32/config/SYSTEM {out}/SYSTEM\n"
                                      f"download /harness/recovery/safe-mode.ps1 {out}/safe-mode.ps1\n"
                                      "ls /harness/recovery\n", readonly=True)
    assert listing.split() == ["bad-files.txt", "remove-bad-content.cmd", "safe-mode.ps1"]
    assert bcd.get_safeboot(out / "BCD") == "minimal"
    reg = regipy_hive(out / "BCD")
    [value] = reg.get_key(f"\\Objects\\{LOADER}\\Elements\\25000080").iter_values()
    assert (value.value_type, value.value) == ("REG_BINARY", "0000000000000000")
    runonce = bcd.read_values(out / "SOFTWARE", RUNONCE_KEY)
    assert runonce["Earlier"].text() == "C:\\earlier.exe"
    assert runonce["Pending"].text() == "C:\\pending.exe"  # replayed from LOG1 before the edit
    assert runonce[RUNONCE_NAME].text() == RUNONCE_COMMAND
    assert struct.unpack_from("<II", (out / "SOFTWARE").read_bytes(), 4)[0] > sequence  # no LOG entry pending
    assert bcd.read_value(out / "SYSTEM", "ControlSet001\\Services\\HarnessRecovery", "ImagePath").text() == \
        SERVICE_COMMAND
    assert bcd.read_value(out / "SYSTEM", "ControlSet001\\Control\\SafeBoot\\Minimal\\HarnessRecovery", "").text() \
        == "Service"
    winlogon = {n: v.text() for n, v in bcd.read_values(out / "SOFTWARE", "Microsoft\\Windows NT\\CurrentVersion\\"
                                                                           "Winlogon").items() if v.type == 1}
    assert winlogon == {"AutoAdminLogon": "1", "DefaultUserName": "harness", "DefaultPassword": "pa55-word"}
    assert (out / "safe-mode.ps1").read_bytes() == safe_mode_files(None, bad_update_list(BAD))["safe-mode.ps1"]

    # a run that never got to clean up: everything staged is taken off the disk again
    assert clear_safe_mode_offline(disk, tmp_path / "final") is True
    bcd.run_guestfish(disk, f"mount-ro /dev/sda1 /\ndownload /EFI/Microsoft/Boot/BCD {out}/BCD2\numount /\n"
                            f"mount-ro /dev/sda3 /\ndownload /Windows/System32/config/SOFTWARE {out}/SOFTWARE2\n"
                            f"download /Windows/System32/config/SYSTEM {out}/SYSTEM2\n", readonly=True)
    assert bcd.get_safeboot(out / "BCD2") is None
    assert not bcd.key_exists(out / "SYSTEM2", "ControlSet001\\Services\\HarnessRecovery")
    assert not bcd.key_exists(out / "SYSTEM2", "ControlSet001\\Control\\SafeBoot\\Minimal\\HarnessRecovery")
    assert bcd.key_exists(out / "SYSTEM2", "ControlSet001\\Control\\SafeBoot\\Minimal\\RpcSs")
    assert sorted(bcd.read_values(out / "SOFTWARE2", RUNONCE_KEY)) == ["Earlier", "Pending"]


# ------------------------------------------------------------------ hive transaction logs


def _log_entry(sequence: int, bins_size: int, pages: list[tuple[int, bytes]]) -> bytes:
    """An HvLE entry (msuhanov/regf "New format"): header, page references, pages; 512-aligned."""
    refs = b"".join(struct.pack("<II", offset, len(data)) for offset, data in pages)
    body = refs + b"".join(data for _, data in pages)
    size = (40 + len(body) + 511) & ~511
    header = struct.pack("<4sIIIII8s8s", b"HvLE", size, 0, sequence, bins_size, len(pages), b"\0" * 8, b"\0" * 8)
    return (header + body).ljust(size, b"\0")


def _dirty_hive_with_log(tmp_path: Path) -> tuple[Path, Path, Path, int]:
    from harness.windows.hivelog import header_checksum

    """SOFTWARE as Windows may leave it after a bugcheck: RunOnce "Pending" written to the
    log (entry = the primary's secondary sequence number) but not to the primary, whose
    sequence numbers differ; LOG2 holds an older, already applied entry."""
    base = bcd.write_empty_hive(tmp_path / "base", "ROOT", "SOFTWARE")
    bcd.write_values(base, RUNONCE_KEY, {"Earlier": bcd.string_value("C:\\earlier.exe")})
    after = tmp_path / "after"
    shutil.copyfile(base, after)
    bcd.write_values(after, RUNONCE_KEY, {"Pending": bcd.string_value("C:\\pending.exe")})
    old, new = base.read_bytes(), after.read_bytes()
    sequence = struct.unpack_from("<I", old, 8)[0]
    pages = [(offset - 4096, new[offset:offset + 4096]) for offset in range(4096, len(new), 4096)
             if old[offset:offset + 4096] != new[offset:offset + 4096]]
    assert pages
    hive = tmp_path / "SOFTWARE"
    primary = bytearray(old)
    struct.pack_into("<I", primary, 4, sequence + 1)  # a write began and never ended
    struct.pack_into("<I", primary, 508, header_checksum(bytes(primary[:512])))
    hive.write_bytes(bytes(primary))
    log1, log2 = tmp_path / "SOFTWARE.LOG1", tmp_path / "SOFTWARE.LOG2"
    bins = struct.unpack_from("<I", new, 40)[0]
    log1.write_bytes(old[:512] + _log_entry(sequence, bins, pages))
    # stale: an earlier sequence number, pages that would undo the pending change if applied
    log2.write_bytes(old[:512] + _log_entry(sequence - 1, struct.unpack_from("<I", old, 40)[0],
                                            [(4096, b"\0" * 4096)]))
    return hive, log1, log2, sequence


def test_a_hive_with_pending_log_entries_is_replayed_then_edited(tmp_path: Path) -> None:
    from harness.windows.hivelog import inspect_hive, prepare_for_edit

    require_tool("hivexsh", HIVEX_FIX)
    hive, log1, log2, sequence = _dirty_hive_with_log(tmp_path)
    state = inspect_hive(hive, [log1, log2])
    assert state.dirty and [e.sequence for e in state.pending] == [sequence]
    assert [e.sequence for e in state.entries] == [sequence, sequence - 1]
    # hivex alone sees the stale primary: the pending value is not there
    assert "Pending" not in bcd.read_values(hive, RUNONCE_KEY)

    ready = prepare_for_edit(hive, [log1, log2], tmp_path / "work")
    assert ready.hive == tmp_path / "work" / "SOFTWARE.replayed" and ready.replayed == 1
    head = ready.hive.read_bytes()[:512]
    assert struct.unpack_from("<II", head, 4) == (sequence + 1, sequence + 1)
    # no entry left in the logs is pending for the replayed hive
    assert not inspect_hive(ready.hive, [log1, log2]).needs_replay
    values = {n: v.text() for n, v in bcd.read_values(ready.hive, RUNONCE_KEY).items()}
    assert values == {"Earlier": "C:\\earlier.exe", "Pending": "C:\\pending.exe"}
    bcd.write_values(ready.hive, RUNONCE_KEY, {RUNONCE_NAME: bcd.string_value(RUNONCE_COMMAND)})
    reg = regipy_hive(ready.hive)
    got = {v.name: v.value for v in reg.get_key(f"\\{RUNONCE_KEY}").iter_values()}
    assert got == {"Earlier": "C:\\earlier.exe", "Pending": "C:\\pending.exe", RUNONCE_NAME: RUNONCE_COMMAND}
    assert hive.read_bytes()[4:12] == struct.pack("<II", sequence + 1, sequence)  # the original is untouched


def test_a_clean_hive_with_only_older_log_entries_is_edited_as_it_is(tmp_path: Path) -> None:
    from harness.windows.hivelog import prepare_for_edit

    hive, log1, log2, sequence = _dirty_hive_with_log(tmp_path)
    clean = tmp_path / "clean"
    shutil.copyfile(tmp_path / "base", clean)  # sequence numbers equal
    log1.unlink()
    ready = prepare_for_edit(clean, [log1, log2], tmp_path / "work")  # LOG2's entry is older
    assert (ready.hive, ready.replayed) == (clean, 0)


@pytest.mark.parametrize("damage, words", [
    ("gap", "pending transaction log entries [{s}, {s2}] do not follow one another from the hive's sequence "
            "number {s}"),
    ("no-logs", "the hive is dirty (sequence numbers {s1} and {s} differ) and no log beside it holds what is "
                "missing (logs: none)"),
    ("garbage", "not a transaction log this code reads"),
])
def test_a_hive_whose_logs_cannot_be_replayed_is_refused_with_the_fix(tmp_path: Path, damage: str,
                                                                      words: str) -> None:
    from harness.windows.hivelog import HiveLogError, prepare_for_edit

    hive, log1, log2, s = _dirty_hive_with_log(tmp_path)
    if damage == "gap":
        data = log1.read_bytes()
        log1.write_bytes(data + _log_entry(s + 2, struct.unpack_from("<I", data[512 + 16:], 0)[0], []))
    elif damage == "no-logs":
        log1.unlink()
        log2.unlink()
    else:
        log1.write_bytes(b"\0" * 512 + b"garbage!" * 64)
    with pytest.raises(HiveLogError) as caught:
        prepare_for_edit(hive, [log1, log2], tmp_path / "work")
    message = str(caught.value)
    assert words.format(s=s, s1=s + 1, s2=s + 2) in message
    assert "use the recovery-env path instead (WinPE deletes the content file and edits no hive)" in message
    assert message.startswith(str(log1 if damage == "garbage" else hive))
