"""The Windows recovery-environment medium: the user's WinPE or WinRE image, made to run
the recovery script by itself, as a bootable UEFI ISO.

    medium = build_winpe_medium(artifacts / "recovery.iso", media=Path("C:/WinPE_amd64/media" copy),
                                script=Path("my-fix.cmd"), bad_files=bad_update_list(files),
                                bitlocker_password=None)

Input: the media tree that the ADK's `copype amd64 <dir>` makes (`<dir>\\media`:
`sources\\boot.wim`, `EFI\\Boot\\bootx64.efi`, `EFI\\Microsoft\\Boot\\BCD`,
`efi\\microsoft\\boot\\efisys.bin` ...), or the ISO `MakeWinPEMedia /ISO` makes from it;
optionally `wim=` another boot image put in as `sources\\boot.wim` (a `winre.wim`, or a
customised boot.wim). Nothing here can make the boot files themselves: they are
Microsoft's and come with the user's media.

What is changed, inside image `index` of boot.wim (default: the WIM's boot index),
with wimlib's `wimlib-imagex update` (as wimlib's own mkwinpeimg does, case-insensitive):

    \\Windows\\System32\\winpeshl.ini   [LaunchApps]: wpeinit, then cmd /c X:\\harness\\recover.cmd
    \\harness\\recover.cmd              vm-templates/windows/recovery/recover.cmd.j2
    \\harness\\<the user's script>      .cmd/.bat (call) or .ps1 (needs WinPE-PowerShell)
    \\harness\\bad-files.txt            "<sha256>  <name>" lines, as on the Linux medium
    \\harness\\bitlocker-recovery-password.txt   only when a password is given

winpeshl.ini replaces WinPE's default shell: its [LaunchApps] entries run in order,
each "path, arguments" (Microsoft: "Winpeshl.ini reference: Launching an app when
WinPE starts", learn.microsoft.com/windows-hardware/manufacture/desktop/winpeshlini-reference-launching-an-app-when-winpe-starts);
with the file present nothing runs wpeinit by itself, hence the first line.

The ISO: ISO 9660 level 3 + Joliet, one El Torito entry for UEFI (platform 0xEF,
no emulation) whose image is the media's `efi\\microsoft\\boot\\efisys_noprompt.bin`
or, failing that, one made here from `cdboot_noprompt.efi` (never `efisys.bin`,
whose "Press any key" prompt nobody answers: such media are refused): the layout of the ADK's MakeWinPEMedia / oscdimg
`-bootdata:2#p0,e,b<media>\\boot\\etfsboot.com#pEF,e,b<media>\\efi\\microsoft\\boot\\efisys.bin`
(MicrosoftDocs/SupportArticles-docs: support/windows-server/setup-upgrade-and-drivers/
create-iso-image-for-uefi-platforms.md), made with `xorriso -as mkisofs -e <image>
-no-emul-boot`. No BIOS entry: the Windows domains boot OVMF. The recovery boot
attaches the disk on SATA (recovery_plan.recovery_domain_values): WinPE has AHCI's
storahci inbox and no virtio driver, so nothing third-party is injected into boot.wim.

The BitLocker recovery password is written only into the WIM on the medium (the ISO
is mode 0600, like every harness medium holding a secret) and is never logged; the
staging directory (mode 0700) is deleted.

Not verified on Windows (no Windows here): that recover.cmd runs as written in a real
WinPE/WinRE (mode, manage-bde, wpeutil, COM1 from WinPE), see
vm-templates/windows/README.md "Recovery".
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..bad_update import BAD_FILES_NAME, bad_files_text
from ..errors import InfraError, InputFileError, RecoveryMediumError
from ..vm.templates import TEMPLATES, render
from .package import SAMPLE_CONTENT_DIR, volume_relative

RECOVERY_DIR = TEMPLATES / "windows" / "recovery"
RECOVER_TEMPLATE = "windows/recovery/recover.cmd.j2"
WINPESHL = RECOVERY_DIR / "winpeshl.ini"
SAMPLE_SCRIPT = RECOVERY_DIR / "remove-bad-content.cmd"
BOOT_WIM = "sources/boot.wim"
NOPROMPT_IMAGE = "efi/microsoft/boot/efisys_noprompt.bin"
PROMPT_IMAGE = "efi/microsoft/boot/efisys.bin"
NOPROMPT_LOADER = "efi/microsoft/boot/cdboot_noprompt.efi"
NOPROMPT_FIX = ("give media that hold efi\\microsoft\\boot\\efisys_noprompt.bin or cdboot_noprompt.efi (every "
                "Windows 10/11 install ISO has both; the ADK has efisys_noprompt.bin in Deployment Tools\\amd64\\"
                "Oscdimg: copy it to <media>\\efi\\microsoft\\boot\\)")
WIM_MAGIC = b"MSWIM\0\0\0"
PAYLOAD_DIR = "harness"  # X:\harness in the running WinPE
PASSWORD_FILE = "bitlocker-recovery-password.txt"
SCRIPT_KINDS = {".cmd": "cmd", ".bat": "cmd", ".ps1": "ps1"}
FINISH = ("shutdown", "reboot")
VOLUME_LABEL = "HARNESS_RECOVERY"
MAX_SCRIPT_BYTES = 64 << 20
_PASSWORD_RE = re.compile(r"\d{6}(?:-\d{6}){7}")
WIMTOOLS_FIX = "install Debian's wimtools (apt-get install wimtools)"
XORRISO_FIX = "install Debian's xorriso (apt-get install xorriso)"
DOSFS_FIX = "install Debian's dosfstools (apt-get install dosfstools)"
MTOOLS_FIX = "install Debian's mtools (apt-get install mtools)"
MEDIA_FIX = ("give the ADK's media directory (`copype amd64 C:\\WinPE_amd64` makes C:\\WinPE_amd64\\media) "
             "or the ISO `MakeWinPEMedia /ISO` makes")


class WinPEMediumError(InputFileError):
    """The user's WinPE/WinRE input cannot make a recovery medium; names the file and the fix."""


@dataclass(frozen=True)
class RecoveryMedium:
    iso: Path
    wim_index: int
    efi_boot_image: str  # its path on the ISO
    prompts_for_key: bool  # always False: a medium whose loader would ask is refused or remade
    script_name: str
    payload: tuple[str, ...]  # paths added inside the WIM image (no contents: one may be the password)


def _tool(name: str, fix: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise InfraError(f"{name} not found: {fix}")
    return path


def _find(root: Path, relative: str) -> Path | None:
    """`relative` under `root`, matching each part case-insensitively (Windows media
    spell EFI/efi, Boot/boot as they like; a tree made on Linux may hold both)."""
    head, _, rest = relative.partition("/")
    if not root.is_dir():
        return None
    for child in sorted(root.iterdir()):
        if child.name.lower() == head.lower():
            found = _find(child, rest) if rest else child
            if found is not None:
                return found
    return None


def check_script(script: Path) -> tuple[bytes, str]:
    if not script.is_file():
        what = "is a directory" if script.is_dir() else "does not exist"
        raise WinPEMediumError(f"recovery script {script} {what}: give a .cmd, .bat or .ps1 file "
                               f"(e.g. {SAMPLE_SCRIPT})")
    kind = SCRIPT_KINDS.get(script.suffix.lower())
    if kind is None:
        raise WinPEMediumError(f"recovery script {script}: WinPE runs .cmd, .bat or .ps1 scripts, not "
                               f"{script.suffix or 'a file without extension'}: rename it or wrap it in a .cmd")
    if script.stat().st_size > MAX_SCRIPT_BYTES:
        raise WinPEMediumError(f"recovery script {script} is larger than {MAX_SCRIPT_BYTES >> 20} MiB")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", script.name):
        raise WinPEMediumError(f"recovery script {script}: use a plain file name (letters, digits, . _ -): "
                               "recover.cmd quotes it, but cmd's for/call are fragile beyond that")
    return script.read_bytes(), kind


def _wim_images(wim: Path, shown: str) -> tuple[int, int]:
    """(image count, boot index) from wiminfo; a file that is not a WIM is one clear error
    naming `shown` (the user's file, not the staged copy)."""
    with open(wim, "rb") as handle:
        if handle.read(8) != WIM_MAGIC:
            raise WinPEMediumError(f"{shown}: not a WIM file (no MSWIM header): give WinPE's sources\\boot.wim "
                                   "or WinRE's winre.wim (C:\\Windows\\System32\\Recovery\\winre.wim, or "
                                   "`reagentc /info` says where)")
    proc = subprocess.run([_tool("wiminfo", WIMTOOLS_FIX), str(wim)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise WinPEMediumError(f"{shown}: wiminfo cannot read it: {(proc.stderr or proc.stdout).strip()}")
    count = re.search(r"^Image Count:\s*(\d+)", proc.stdout, re.M)
    boot = re.search(r"^Boot Index:\s*(\d+)", proc.stdout, re.M)
    if count is None:
        raise WinPEMediumError(f"{shown}: wiminfo shows no image count:\n{proc.stdout[:500]}")
    return int(count.group(1)), int(boot.group(1)) if boot else 0


def _stage_media(media: Path, tree: Path) -> None:
    if media.is_dir():
        shutil.copytree(media, tree, symlinks=False)
    elif media.is_file():
        with open(media, "rb") as handle:
            handle.seek(0x8001)
            if handle.read(5) != b"CD001":
                raise WinPEMediumError(f"{media}: neither a directory nor an ISO 9660 image: {MEDIA_FIX}")
        proc = subprocess.run([_tool("xorriso", XORRISO_FIX), "-osirrox", "on", "-indev", str(media),
                               "-extract", "/", str(tree)], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise WinPEMediumError(f"{media}: xorriso cannot extract it: {proc.stderr.strip()[-800:]}")
    else:
        raise WinPEMediumError(f"{media}: not found: {MEDIA_FIX}")
    for path in [tree, *tree.rglob("*")]:  # an ISO's files come out read-only
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR | stat.S_IRUSR | (stat.S_IXUSR if path.is_dir() else 0))


def _noprompt_image(tree: Path, media: Path) -> Path:
    """The El Torito EFI image that boots without "Press any key to boot from CD or DVD".

    efisys.bin's loader (cdboot.efi) waits a few seconds for that key and, when nobody
    presses one, returns to the firmware, which boots the next device: the looping
    disk. So: the media's efisys_noprompt.bin; else one made here from the media's
    cdboot_noprompt.efi (the same FAT image: the loader as \\EFI\\BOOT\\BOOTX64.EFI,
    the path UEFI firmware starts on removable media); else the medium is refused."""
    found = _find(tree, NOPROMPT_IMAGE)
    if found is not None:
        return found
    loader = _find(tree, NOPROMPT_LOADER)
    if loader is not None:
        return _fat_image_with_loader(loader, loader.parent / "efisys_noprompt.bin")
    if _find(tree, PROMPT_IMAGE) is not None:
        raise WinPEMediumError(f"{media}: only efi\\microsoft\\boot\\efisys.bin, whose loader waits for \"Press any "
                               "key to boot from CD or DVD\" and, with nobody at the keyboard, falls through to the "
                               f"looping disk: {NOPROMPT_FIX}")
    raise WinPEMediumError(f"{media}: no EFI boot image (efi\\microsoft\\boot\\efisys_noprompt.bin, "
                           f"cdboot_noprompt.efi or efisys.bin): {MEDIA_FIX}; a bare boot.wim cannot boot by itself")


def _fat_image_with_loader(loader: Path, image: Path) -> Path:
    """A FAT image holding `loader` as \\EFI\\BOOT\\BOOTX64.EFI (at least a 1.44 MB floppy's
    size, like efisys.bin; larger when the loader needs it)."""
    size_kib = max(1440, (loader.stat().st_size >> 10) + 256)
    for argv in ([_tool("mkfs.vfat", DOSFS_FIX), "-C", "-n", "EFISECTOR", str(image), str(size_kib)],
                 [_tool("mmd", MTOOLS_FIX), "-i", str(image), "::/EFI", "::/EFI/BOOT"],
                 [_tool("mcopy", MTOOLS_FIX), "-i", str(image), str(loader), "::/EFI/BOOT/BOOTX64.EFI"]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise InfraError(f"{image}: {Path(argv[0]).name} failed making the no-prompt EFI boot image: "
                             f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return image


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def bad_files_listing(where: Path, bad_files: Sequence[tuple[str | bytes, str]]) -> bytes:
    """bad-files.txt for a Windows medium: the Linux medium's "<sha256>  <name>" lines
    (checked the same way, harness/guest/recovery.py), with CRLF line ends."""
    try:
        return _crlf(bad_files_text(where, bad_files))
    except RecoveryMediumError as exc:
        raise WinPEMediumError(str(exc)) from None


def render_recover_cmd(script_name: str, script_kind: str, finish: str = "shutdown",
                       content_dir: str = SAMPLE_CONTENT_DIR) -> str:
    """recover.cmd for the driver whose content directory is `content_dir` (C:\\...: WinPE finds
    the Windows volume by it, whatever letter the volume gets there)."""
    if finish not in FINISH:
        raise ValueError(f"finish {finish!r} is not one of {', '.join(FINISH)}")
    return render(RECOVER_TEMPLATE, script_name=script_name, script_kind=script_kind, finish=finish,
                  content_rel=volume_relative(content_dir))


def build_winpe_medium(out: Path, media: Path, *, wim: Path | None = None, index: int | None = None,
                       script: Path | None = None, bad_files: Sequence[tuple[str | bytes, str]] = (),
                       bitlocker_password: str | None = None, finish: str = "shutdown",
                       label: str = VOLUME_LABEL, content_dir: str = SAMPLE_CONTENT_DIR) -> RecoveryMedium:
    """Make the recovery ISO `out` (mode 0600) from the user's WinPE/WinRE media.

    `finish` is what recover.cmd does last: `shutdown` (the default: the domain stops and
    the harness detaches the medium; `reboot` would boot the medium again while it is
    first in the boot order). Errors: WinPEMediumError naming the file and the fix.
    """
    out = Path(out)
    media = Path(media)
    script = Path(script) if script is not None else SAMPLE_SCRIPT
    if bitlocker_password is not None and not _PASSWORD_RE.fullmatch(bitlocker_password):
        # The value itself is never shown.
        raise WinPEMediumError("bitlocker_password is not a BitLocker recovery password: 48 digits in 8 "
                               "groups of 6 separated by '-' (manage-bde -protectors -get C: shows it)")
    if finish not in FINISH:
        raise WinPEMediumError(f"finish {finish!r} is not one of {', '.join(FINISH)}")
    script_bytes, kind = check_script(script)
    listing = bad_files_listing(out, bad_files)
    if wim is not None and not Path(wim).is_file():
        raise WinPEMediumError(f"{wim}: boot image not found: give a WinPE boot.wim or WinRE's winre.wim")
    if not out.parent.is_dir():
        raise WinPEMediumError(f"{out}: directory {out.parent} does not exist")
    wimlib = _tool("wimlib-imagex", WIMTOOLS_FIX)
    xorriso = _tool("xorriso", XORRISO_FIX)

    with tempfile.TemporaryDirectory(prefix=".winpe-", dir=out.parent) as tmp:  # mode 0700
        tree = Path(tmp) / "media"
        _stage_media(media, tree)
        boot_wim = _find(tree, BOOT_WIM)
        if wim is not None:
            target = boot_wim or tree / "sources" / "boot.wim"
            target.parent.mkdir(exist_ok=True)
            shutil.copyfile(wim, target)
            target.chmod(0o600)
            boot_wim = target
        if boot_wim is None:
            raise WinPEMediumError(f"{media}: no sources\\boot.wim: {MEDIA_FIX}, or pass wim= (a boot.wim "
                                   "or winre.wim) together with the media's boot files")
        efi_image = _noprompt_image(tree, media)
        source_name = str(wim) if wim is not None else f"{media}: sources\\boot.wim"
        count, boot_index = _wim_images(boot_wim, source_name)
        chosen = index if index is not None else (boot_index or 1)
        if isinstance(chosen, bool) or not isinstance(chosen, int) or not 1 <= chosen <= count:
            raise WinPEMediumError(f"{source_name}: image index {chosen!r} does not exist in the boot image "
                                   f"(it has {count} image(s); `wiminfo {boot_wim.name}` lists them): pass "
                                   f"index=1..{count}")

        payload = Path(tmp) / "payload"
        (payload / PAYLOAD_DIR).mkdir(parents=True)
        files = {
            "recover.cmd": _crlf(render_recover_cmd(script.name, kind, finish, content_dir).encode("ascii")),
            script.name: script_bytes,
            BAD_FILES_NAME: listing,
        }
        if bitlocker_password is not None:
            files[PASSWORD_FILE] = bitlocker_password.encode("ascii") + b"\r\n"
        for name, data in files.items():
            path = payload / PAYLOAD_DIR / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        (payload / "winpeshl.ini").write_bytes(_crlf(WINPESHL.read_bytes()))

        commands = ("delete --force /Windows/System32/winpeshl.ini\n"
                    f"add '{payload / 'winpeshl.ini'}' /Windows/System32/winpeshl.ini\n"
                    f"delete --force --recursive /{PAYLOAD_DIR}\n"
                    f"add '{payload / PAYLOAD_DIR}' /{PAYLOAD_DIR}\n")
        env = dict(os.environ, WIMLIB_IMAGEX_IGNORE_CASE="1")
        proc = subprocess.run([wimlib, "update", str(boot_wim), str(chosen), "--rebuild"], input=commands,
                              capture_output=True, text=True, timeout=1200, env=env)
        if proc.returncode != 0:
            raise WinPEMediumError(f"{source_name}: wimlib-imagex update of image {chosen} failed: "
                                   f"{(proc.stderr or proc.stdout).strip()[-800:]}")
        shutil.rmtree(payload)

        efi_rel = efi_image.relative_to(tree).as_posix()
        iso = Path(tmp) / "medium.iso"
        proc = subprocess.run([xorriso, "-as", "mkisofs", "-iso-level", "3", "-J", "-joliet-long", "-V", label,
                               "-e", efi_rel, "-no-emul-boot", "-o", str(iso), str(tree)],
                              capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            raise InfraError(f"{out}: xorriso could not write the ISO: {proc.stderr.strip()[-800:]}")
        iso.chmod(0o600)
        os.replace(iso, out)
    return RecoveryMedium(out, chosen, efi_rel, prompts_for_key=False,
                          script_name=script.name,
                          payload=tuple(sorted(f"{PAYLOAD_DIR}/{name}" for name in files))
                          + ("Windows/System32/winpeshl.ini",))
