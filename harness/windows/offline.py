r"""Content files on a Windows disk while the machine is off: the boot-time case.

    overlay = create_overlay(golden, artifacts / "disk.qcow2")
    place_content(overlay, {"C-00000291-00000000-00000032.sys": data})   # before the first boot
    ...
    read_content(overlay, artifacts / "content-after")                  # after the machine stopped

A boot-start sensor reads its content directory before any network or agent is up,
so the file that crashes the boot has to be on the disk already: it goes straight
into the NTFS volume of the machine's qcow2 overlay with libguestfs (`guestfish`, the
CLI from libguestfs-tools: this project's Python is not Debian's, so Debian's
python3-guestfs cannot be imported).  libguestfs boots a small appliance VM to do it
(about 20 s under TCG on this host; LIBGUESTFS_BACKEND=direct, and TCG forced when
KVM cannot run guests: harness/vm/accel.py).  One appliance boot per call: one
guestfish process is driven command by command over its stdin, each command
followed by a marker, so the Windows partition can be looked for and then written in
the same boot.

* The Windows volume is the NTFS file system holding \Windows\System32 (found by
  trying each NTFS file system; paths are resolved case-insensitively with
  case-sensitive-path, as Windows itself would).
* The content directory (default \Windows\System32\drivers\HarnessSensor, the sample's;
  the backend passes a vendor profile's `content_dir`: the image's install-driver.ps1
  creates either) is made when missing.
* Each file is uploaded under a temporary name and renamed, then the directory is
  listed back with sizes.
* The golden image is never written: a read-only file, or one with a golden
  manifest beside it (<image>.golden.json, stamped by harness/windows/image.py), is
  refused; write to an overlay (harness.windows.create_overlay).  Reading is allowed
  on any image.
* The machine must be off: QEMU's image locking makes libguestfs fail on a disk in use.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from ..artifacts import write_atomic
from ..errors import InfraError, InputFileError
from ..vm.accel import kvm_runs_guests

CONTENT_DIR = r"\Windows\System32\drivers\HarnessSensor"
WINDOWS_MARK = "/Windows/System32"  # what makes an NTFS volume the Windows one
LAUNCH_TIMEOUT_S = 300.0  # the appliance boot under TCG (about 20 s idle, more on a busy host)
COMMAND_TIMEOUT_S = 120.0
GUESTFISH_FIX = "apt-get install libguestfs-tools ntfs-3g (or make setup)"
_NAME = re.compile(r"^[^\\/:*?\"<>|\x00-\x1f]{1,255}$")


class OfflineError(InfraError):
    """libguestfs could not do what was asked (no Windows volume, a hibernated volume, a tool missing)."""


@dataclass(frozen=True)
class Placed:
    """What place_content() left on the disk."""

    disk: Path
    filesystem: str  # e.g. /dev/sda2
    directory: str  # the content directory as the volume spells it, e.g. /Windows/System32/drivers/HarnessSensor
    listing: dict[str, int]  # every file in the directory after the placement -> size in bytes
    seconds: float


def guestfish_env() -> dict[str, str]:
    """libguestfs without libvirt (LIBGUESTFS_BACKEND=direct); TCG unless KVM really runs guests
    (a /dev/kvm that aborts QEMU is this lab's trap: lab-notes.md).  The caller's own settings win."""
    env = dict(os.environ)
    env.setdefault("LIBGUESTFS_BACKEND", "direct")
    if "LIBGUESTFS_BACKEND_SETTINGS" not in env and not kvm_runs_guests()[0]:
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


def check_writable(disk: Path) -> None:
    """Refuse to write a golden image (or anything that is not a plain writable file)."""
    if not disk.is_file():
        raise InputFileError(f"{disk}: disk image not found")
    manifest = disk.with_name(disk.name + ".golden.json")
    if manifest.exists():
        raise InputFileError(f"{disk}: this is a golden image ({manifest} beside it) and is never written: "
                             "create an overlay with harness.windows.create_overlay() and place content there")
    if not disk.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise InputFileError(f"{disk}: the image is read-only (mode {stat.filemode(disk.stat().st_mode)}), as "
                             "golden images are: create an overlay with harness.windows.create_overlay()")


def _format(disk: Path) -> str:
    with open(disk, "rb") as handle:
        return "qcow2" if handle.read(4) == b"QFI\xfb" else "raw"


def _quote(text: str) -> str:
    """A guestfish argument in double quotes (its parser knows \\ and \" escapes)."""
    if "\n" in text or "\r" in text:
        raise InputFileError(f"{text!r}: a path with a line break cannot be given to guestfish")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _volume_path(windows_dir: str) -> str:
    r"""\Windows\System32\x (or C:\Windows\...) -> /Windows/System32/x."""
    path = PureWindowsPath(windows_dir)
    parts = [p for p in path.parts if p not in (path.anchor, "\\", "/")]
    if not parts or any(p in (".", "..") for p in parts):
        raise InputFileError(f"{windows_dir!r}: not a directory on the Windows volume (like {CONTENT_DIR})")
    return "/" + "/".join(parts)


class Guestfish:
    """One guestfish process on one disk, driven command by command (one appliance boot)."""

    def __init__(self, disk: Path, readonly: bool, launch_timeout: float = LAUNCH_TIMEOUT_S,
                 command_timeout: float = COMMAND_TIMEOUT_S) -> None:
        tool = shutil.which("guestfish")
        if tool is None:
            raise OfflineError(f"guestfish not found: {GUESTFISH_FIX}")
        self.disk = disk
        self.command_timeout = command_timeout
        self._count = 0
        argv = [tool, "--ro" if readonly else "--rw", f"--format={_format(disk)}", "-a", str(disk)]
        # stderr joins stdout: an error line then always comes before the command's marker.
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=guestfish_env())
        try:
            self.call("run", timeout=launch_timeout)
        except BaseException:
            self.kill()
            raise

    def call(self, command: str, timeout: float | None = None, check: bool = True) -> tuple[str, str | None]:
        """(output, error) of one command; check=True raises OfflineError on an error.
        Each command is sent with a leading '-' (guestfish goes on after an error) and
        followed by `echo-daemon <marker>`, whose echo ends the command's output."""
        self._count += 1
        marker = f"HARNESS-GF-{os.getpid()}-{self._count}"
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(f"-{command}\necho-daemon {marker}\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise OfflineError(f"{self.disk}: guestfish exited before {command.split()[0]}: "
                               f"{self._rest()}") from None
        limit = timeout if timeout is not None else self.command_timeout
        deadline = time.monotonic() + limit
        buf = bytearray()
        end = f"{marker}\n".encode()
        # The marker's own failure (the appliance is gone: echo-daemon cannot run) ends it too.
        dead = re.compile(rb"libguestfs: error: echo_daemon:[^\n]*\n")
        while not buf.endswith(end) and not dead.search(buf):
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise OfflineError(f"{self.disk}: guestfish {command.split()[0]} did not finish within "
                                   f"{limit:.0f} s; output so far: {buf.decode(errors='replace')[-500:]}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise OfflineError(f"{self.disk}: guestfish exited during {command.split()[0]}: "
                                       f"{_errors(buf.decode(errors='replace')) or '(no error text)'} "
                                       "(libguestfs-test-tool diagnoses the appliance)")
                buf += chunk
        text = buf[:-len(end)].decode(errors="replace") if buf.endswith(end) else buf.decode(errors="replace")
        output = "\n".join(line for line in text.splitlines() if "libguestfs: error:" not in line)
        error = _errors(text) or None
        if check and error:
            hint = ""
            if "lock" in error.lower():  # QEMU's image locking: a running VM holds the disk
                hint = " (is the machine still running on this disk? destroy it first)"
            raise OfflineError(f"{self.disk}: guestfish {command.split()[0]} failed: {error}{hint}")
        return output, error

    def _rest(self) -> str:
        """What a guestfish that stopped taking commands printed last."""
        assert self.proc.stdout is not None
        if select.select([self.proc.stdout], [], [], 5)[0]:
            return os.read(self.proc.stdout.fileno(), 65536).decode(errors="replace")[-1500:]
        return "(no output)"

    def close(self) -> None:
        """Unmount, sync and end the appliance (writes reach the disk image here)."""
        if self.proc.poll() is not None:
            return
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(b"umount-all\nsync\nshutdown\nexit\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        deadline = time.monotonic() + self.command_timeout
        out = bytearray()
        while True:
            left = deadline - time.monotonic()
            ready = select.select([self.proc.stdout], [], [], max(0.0, left))[0] if left > 0 else []
            if not ready:
                self.kill()
                raise OfflineError(f"{self.disk}: guestfish did not shut down within {self.command_timeout:.0f} s")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
        try:
            self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise OfflineError(f"{self.disk}: guestfish did not exit within {self.command_timeout:.0f} s") from None
        if self.proc.returncode != 0:
            raise OfflineError(f"{self.disk}: guestfish failed while closing (exit {self.proc.returncode}): "
                               f"{out.decode(errors='replace')[-1500:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def __enter__(self) -> Guestfish:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.kill()

    # ------------------------------------------------------------- file system

    def mount_windows(self, readonly: bool) -> str:
        """Mount the Windows volume on / and return its device."""
        listing, _ = self.call("list-filesystems")
        filesystems = [line.split(":", 1) for line in listing.splitlines() if ":" in line]
        ntfs = [dev.strip() for dev, kind in filesystems if kind.strip() == "ntfs"]
        if not ntfs:
            raise OfflineError(f"{self.disk}: no NTFS file system on this disk (found: "
                               f"{', '.join(f'{d.strip()} {k.strip()}' for d, k in filesystems) or 'none'})")
        problems = []
        for dev in ntfs:
            _, error = self.call(f"{'mount-ro' if readonly else 'mount'} {dev} /", check=False)
            if error:
                problems.append(f"{dev}: {error}")
                continue
            found, error = self.call(f"case-sensitive-path {WINDOWS_MARK}", check=False)
            if not error and self.call(f"is-dir {_quote(found.strip())}")[0].strip() == "true":
                return dev
            self.call("umount /")
            problems.append(f"{dev}: no {WINDOWS_MARK}")
        hint = ""
        if any("hibernat" in p.lower() or "unclean" in p.lower() for p in problems):
            hint = (" (a hibernated or Fast-Startup volume is refused by ntfs-3g: the golden image turns both "
                    "off, see vm-templates/windows/setup/setup.ps1 'faststartup')")
        raise OfflineError(f"{self.disk}: no Windows volume (an NTFS file system with {WINDOWS_MARK}): "
                           f"{'; '.join(problems)}{hint}")

    def resolve(self, path: str) -> str:
        """`path` with the case the volume uses for every part that exists (the rest as given)."""
        parts = [p for p in path.split("/") if p]
        resolved = ""
        for index, part in enumerate(parts):
            found, error = self.call(f"case-sensitive-path {_quote(resolved + '/' + part)}", check=False)
            if error:
                return resolved + "/" + "/".join(parts[index:])
            resolved = found.strip()
        return resolved or "/"

    def sizes(self, directory: str) -> dict[str, int]:
        """Regular files in `directory` -> size."""
        names, _ = self.call(f"ls {_quote(directory)}")
        out = {}
        for name in names.splitlines():
            if not name:
                continue
            path = f"{directory}/{name}"
            if self.call(f"is-file {_quote(path)}")[0].strip() == "true":
                out[name] = int(self.call(f"filesize {_quote(path)}")[0].strip())
        return out


def _errors(text: str) -> str:
    """The libguestfs error lines of `text`, joined (the marker's own failure left out)."""
    return "; ".join(line.split("libguestfs: error:", 1)[1].strip() for line in text.splitlines()
                     if "libguestfs: error:" in line and "error: echo_daemon:" not in line)


def _check_names(files: dict[str, bytes]) -> None:
    for name in files:
        if not _NAME.match(name) or name in (".", "..") or name.endswith((" ", ".")):
            raise InputFileError(f"{name!r}: not a plain Windows file name (no \\ / : * ? \" < > |, no "
                                 "control characters, not ending in a dot or space)")


def place_content(disk: Path, files: dict[str, bytes], content_dir: str = CONTENT_DIR,
                  launch_timeout: float = LAUNCH_TIMEOUT_S) -> Placed:
    r"""Put `files` (name -> bytes) into `content_dir` (default \Windows\System32\drivers\HarnessSensor)
    on the Windows volume of the shut-off `disk` (an overlay, never a golden image)."""
    check_writable(disk)
    _check_names(files)
    start = time.monotonic()
    target = _volume_path(content_dir)
    with tempfile.TemporaryDirectory(prefix="offline-") as tmp, Guestfish(disk, readonly=False,
                                                                          launch_timeout=launch_timeout) as gf:
        dev = gf.mount_windows(readonly=False)
        directory = gf.resolve(target)
        gf.call(f"mkdir-p {_quote(directory)}")
        for index, (name, data) in enumerate(sorted(files.items())):
            local = Path(tmp) / f"file-{index}"
            local.write_bytes(data)
            final = gf.resolve(f"{directory}/{name}")  # a file of that name in another case: replaced
            part = f"{directory}/.{name}.part"
            gf.call(f"upload {_quote(str(local))} {_quote(part)}")
            gf.call(f"mv {_quote(part)} {_quote(final)}")
        listing = gf.sizes(directory)
    for name, data in files.items():
        got = next((size for n, size in listing.items() if n.lower() == name.lower()), None)
        if got != len(data):
            raise OfflineError(f"{disk}: {directory}/{name} is {got} bytes after the placement, not {len(data)}")
    return Placed(disk, dev, directory, listing, time.monotonic() - start)


def read_content(disk: Path, dest: Path | None = None, content_dir: str = CONTENT_DIR,
                 launch_timeout: float = LAUNCH_TIMEOUT_S) -> dict[str, bytes]:
    """Every file in `content_dir` on the Windows volume of the shut-off `disk` (read-only: any
    image, golden included), by name; written to `dest` too when given (artifacts).  A missing
    directory is an empty result."""
    if not disk.is_file():
        raise InputFileError(f"{disk}: disk image not found")
    target = _volume_path(content_dir)
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="offline-") as tmp, Guestfish(disk, readonly=True,
                                                                          launch_timeout=launch_timeout) as gf:
        gf.mount_windows(readonly=True)
        directory = gf.resolve(target)
        if gf.call(f"is-dir {_quote(directory)}")[0].strip() != "true":
            return out
        for index, name in enumerate(gf.sizes(directory)):
            local = Path(tmp) / f"file-{index}"
            gf.call(f"download {_quote(f'{directory}/{name}')} {_quote(str(local))}")
            out[name] = local.read_bytes()
    if dest is not None:
        dest.mkdir(parents=True, exist_ok=True)
        for name, data in out.items():
            write_atomic(dest / name, data)
    return out
