"""The guest kernel's parts: the ELF vmlinux inside a bzImage, ELF notes, module dependencies.

Direct kernel boot of the *uncompressed* vmlinux uses its PVH entry point
(Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY): under TCG that skips ~4 s of in-guest
XZ decompression compared with booting /boot/vmlinuz (lab notes section 3).
"""

from __future__ import annotations

import lzma
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.guest import GuestBuildError

XEN_ELFNOTE_PHYS32_ENTRY = 18
_XZ_MAGIC = b"\xfd7zXZ\x00"
_PT_NOTE = 4


def extract_vmlinux(bzimage: Path, out: Path) -> None:
    """Write the ELF vmlinux found in `bzimage`'s XZ payload to `out`."""
    try:
        blob = bzimage.read_bytes()
    except FileNotFoundError:
        raise GuestBuildError(
            f"guest kernel {bzimage} not found: install the guest kernel package "
            "(apt-get install linux-image-amd64, or run make setup)") from None
    except OSError as exc:
        raise GuestBuildError(f"cannot read the guest kernel {bzimage}: {exc}") from None
    xz = shutil.which("xz")
    if xz is None:
        raise GuestBuildError("xz is not installed (needed to unpack the guest kernel): "
                              "run make setup (or apt-get install xz-utils)")
    start = 0
    tried = 0
    while (offset := blob.find(_XZ_MAGIC, start)) >= 0:
        tried += 1
        start = offset + 1
        with out.open("wb") as sink:
            proc = subprocess.run([xz, "-dc", "--single-stream"], input=blob[offset:],
                                  stdout=sink, stderr=subprocess.PIPE, check=False)
        if proc.returncode == 0 and is_elf(out):
            return
    out.unlink(missing_ok=True)
    if not tried:
        raise GuestBuildError(
            f"{bzimage} holds no XZ-compressed payload: only XZ kernels (Debian's) can be "
            "unpacked to a PVH vmlinux")
    raise GuestBuildError(f"{bzimage}: none of its {tried} XZ streams unpacks to an ELF vmlinux")


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_notes(path: Path) -> list[tuple[str, int, bytes]]:
    """(name, type, desc) of every note in the PT_NOTE segments of a 64-bit little-endian ELF."""
    notes: list[tuple[str, int, bytes]] = []
    with path.open("rb") as f:
        ident = f.read(64)
        if len(ident) < 64 or ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
            raise ValueError(f"{path} is not a 64-bit little-endian ELF file")
        phoff = struct.unpack_from("<Q", ident, 0x20)[0]
        phentsize, phnum = struct.unpack_from("<HH", ident, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        for i in range(phnum):
            p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
                "<IIQQQQ", table, i * phentsize)
            if p_type != _PT_NOTE:
                continue
            f.seek(p_offset)
            seg = f.read(p_filesz)
            pos = 0
            while pos + 12 <= len(seg):
                namesz, descsz, ntype = struct.unpack_from("<III", seg, pos)
                pos += 12
                name = seg[pos:pos + namesz].rstrip(b"\0").decode(errors="replace")
                pos += (namesz + 3) & ~3
                desc = seg[pos:pos + descsz]
                pos += (descsz + 3) & ~3
                notes.append((name, ntype, desc))
    return notes


def has_pvh_note(path: Path) -> bool:
    try:
        return any(name == "Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY
                   for name, ntype, _ in elf_notes(path))
    except (OSError, ValueError, struct.error):
        return False


def modinfo(ko_bytes: bytes) -> dict[str, str]:
    """The key=value strings of a module's .modinfo section (first value of each key)."""
    elf = ko_bytes
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", elf, shoff + index * shentsize)
        return name, offset, size

    _, names_offset, _ = section(shstrndx)
    info: dict[str, str] = {}
    for index in range(shnum):
        name, offset, size = section(index)
        if elf[names_offset + name:].split(b"\0", 1)[0] == b".modinfo":
            for raw in elf[offset:offset + size].split(b"\0"):
                key, eq, value = raw.decode(errors="replace").partition("=")
                if eq:
                    info.setdefault(key, value)
    return info


@dataclass(frozen=True)
class KernelModule:
    name: str  # file name without the compression suffix, e.g. "virtio_blk.ko"
    host_path: Path  # as found under /lib/modules/<kver>/ (maybe .ko.xz)
    guest_path: str  # where the initramfs holds it, uncompressed (.ko)


def resolve_modules(kver: str, names: tuple[str, ...]) -> list[KernelModule]:
    """Modules needed to load `names` on `kver`, dependencies first, each once."""
    modprobe = shutil.which("modprobe") or next(
        (p for p in ("/usr/sbin/modprobe", "/sbin/modprobe") if os.access(p, os.X_OK)), None)
    if modprobe is None:
        raise GuestBuildError("modprobe is not installed (needed to resolve the guest's kernel "
                              "modules): run make setup (or apt-get install kmod)")
    root = Path("/lib/modules") / kver
    if not (root / "modules.dep").is_file():
        raise GuestBuildError(
            f"no kernel modules for {kver} ({root}/modules.dep missing): install "
            f"linux-image-{kver} (apt-get install linux-image-amd64, or run make setup)")
    found: list[KernelModule] = []
    seen: set[Path] = set()
    for name in names:
        argv = [modprobe, "-S", kver, "--show-depends", name]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise GuestBuildError(
                f"kernel module {name} not found for {kver}: {' '.join(argv)} said "
                f"{proc.stderr.strip() or proc.returncode}")
        for line in proc.stdout.splitlines():
            words = line.split()
            if len(words) < 2 or words[0] != "insmod":
                continue  # "builtin <name>": nothing to load
            path = Path(words[1])
            if path in seen:
                continue
            seen.add(path)
            try:
                rel = path.relative_to(root)
            except ValueError:
                rel = Path("kernel") / path.name
            base = path.name
            for suffix in (".xz", ".zst", ".gz"):
                if base.endswith(".ko" + suffix):
                    base = base[: -len(suffix)]
                    rel = rel.with_name(base)
            found.append(KernelModule(base, path, f"/lib/modules/{kver}/{rel.as_posix()}"))
    return found


def read_module(path: Path) -> bytes:
    """A module file's bytes, decompressed when it is .ko.xz/.ko.gz/.ko.zst."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        import gzip
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise GuestBuildError(f"{path} is zstd-compressed and zstd is not installed: "
                                  "apt-get install zstd")
        return subprocess.run([zstd, "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def elf_interpreter(path: Path) -> str | None:
    """The PT_INTERP path of a 64-bit ELF executable, or None for a static one."""
    with path.open("rb") as f:
        ident = f.read(64)
        if len(ident) < 64 or ident[:4] != b"\x7fELF" or ident[4] != 2:
            raise ValueError(f"{path} is not a 64-bit ELF file")
        phoff = struct.unpack_from("<Q", ident, 0x20)[0]
        phentsize, phnum = struct.unpack_from("<HH", ident, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        for i in range(phnum):
            p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from(
                "<IIQQQQ", table, i * phentsize)
            if p_type == 3:  # PT_INTERP
                f.seek(p_offset)
                return f.read(p_filesz).rstrip(b"\0").decode()
    return None
