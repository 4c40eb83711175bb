r"""Offline content placement into a real NTFS volume, through a qcow2 overlay, with libguestfs.

No Windows image exists here, so the session builds a disk laid out like one (once):
GPT with a FAT32 EFI system partition, a Microsoft reserved partition, an NTFS
recovery partition without \Windows and the NTFS Windows volume with
\WINDOWS\system32\Drivers (odd case on purpose: Windows paths are case-insensitive).
The file systems are made by the host's mkfs.fat and mkntfs and filled through an
ntfs-3g mount, so the placement (libguestfs' appliance) and the independent read-back
(ntfsls/ntfscat on a raw copy of the overlay) share no code with each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.content.format import file_name
from harness.errors import InputFileError
from harness.paths import CONTENT_FIXTURES
from harness.windows import create_overlay
from harness.windows.offline import check_writable, place_content, read_content

from .conftest import require_tool

pytestmark = pytest.mark.vm  # libguestfs boots an appliance VM (about 20 s under TCG)

FIX = "apt-get install libguestfs-tools ntfs-3g dosfstools fdisk qemu-utils (or make setup)"
GOOD = (CONTENT_FIXTURES / "good.sys").read_bytes()
CF291 = (CONTENT_FIXTURES / "cf291-field21.sys").read_bytes()
GOOD_NAME = file_name(291, 0, 31)
BAD_NAME = file_name(291, 0, 32)
MIB = 1 << 20
SECTOR = 512
LAYOUT = """label: gpt
start=2048, size=81920, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system partition"
size=32768, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE, name="Microsoft reserved partition"
size=40960, type=DE94BBA4-06D1-4D40-A16A-BFD50179D6AC, name="Recovery"
type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="Basic data partition"
"""


def _run(*argv: str | Path) -> str:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(map(str, argv))}: {proc.stderr or proc.stdout}"
    return proc.stdout


def _partitions(raw: Path) -> list[tuple[int, int]]:
    """(start, size) in bytes of each partition of a raw disk, from its GPT."""
    table = json.loads(_run("sfdisk", "--json", raw))["partitiontable"]
    return [(p["start"] * SECTOR, p["size"] * SECTOR) for p in table["partitions"]]


def _ntfs_partition(raw: Path, start: int, size: int, tree: dict[str, bytes], label: str, work: Path) -> None:
    """mkntfs a partition image, fill it through an ntfs-3g mount, copy it into the disk."""
    image = work / f"{label}.img"
    with open(image, "wb") as handle:
        handle.truncate(size)
    _run("mkntfs", "-q", "-Q", "-F", "-L", label, "-p", str(start // SECTOR), "-H", "255", "-S", "63", image)
    mnt = work / f"mnt-{label}"
    mnt.mkdir()
    _run("ntfs-3g", image, mnt)
    try:
        for rel, data in tree.items():
            path = mnt / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if data is not None:
                path.write_bytes(data)
    finally:
        _run("umount", mnt)
    with open(raw, "r+b") as disk, open(image, "rb") as part:
        disk.seek(start)
        shutil.copyfileobj(part, disk, 4 * MIB)
    image.unlink()


@pytest.fixture(scope="session")
def golden_windows_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 160 MiB disk laid out like a Windows install, stamped golden (0444 + manifest)."""
    for tool in ("guestfish", "mkntfs", "ntfs-3g", "ntfscat", "ntfsls", "mkfs.fat", "sfdisk", "qemu-img"):
        require_tool(tool, FIX)
    work = tmp_path_factory.mktemp("windows-disk")
    raw = work / "disk.raw"
    with open(raw, "wb") as handle:
        handle.truncate(160 * MIB)
    subprocess.run(["sfdisk", "-q", str(raw)], input=LAYOUT, text=True, check=True, timeout=60)
    (esp_start, esp_size), _msr, (rec_start, rec_size), (win_start, win_size) = _partitions(raw)
    _run("mkfs.fat", "-F", "32", "-s", "1", "-S", "512", f"--offset={esp_start // SECTOR}", raw,
         str(esp_size // 1024))
    _ntfs_partition(raw, rec_start, rec_size, {"Recovery/WindowsRE/README.txt": b"WinRE lives here\n"},
                    "Recovery", work)
    _ntfs_partition(raw, win_start, win_size, {"WINDOWS/system32/Drivers/null.sys": b"not a driver\n",
                                               "WINDOWS/system32/ntoskrnl.exe": b"not a kernel\n"},
                    "Windows", work)
    golden = work / "windows-fake.qcow2"
    _run("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, golden)
    raw.unlink()
    os.chmod(golden, 0o444)
    manifest = golden.with_name(golden.name + ".golden.json")
    manifest.write_text(json.dumps({"image": str(golden), "sha256": _sha256(golden)}) + "\n")
    os.chmod(manifest, 0o444)
    return golden


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _windows_volume_of(overlay: Path, work: Path) -> Path:
    """The Windows partition of `overlay` as a raw image file (qemu-img + dd, no libguestfs)."""
    raw = work / "flat.raw"
    _run("qemu-img", "convert", "-q", "-O", "raw", overlay, raw)
    start, size = _partitions(raw)[3]
    part = work / "windows.ntfs"
    with open(raw, "rb") as disk, open(part, "wb") as out:
        disk.seek(start)
        out.write(disk.read(size))
    raw.unlink()
    return part


def test_content_placed_in_an_overlay_lands_in_the_windows_volume_and_reads_back(
        golden_windows_disk: Path, tmp_path: Path) -> None:
    golden_hash = _sha256(golden_windows_disk)
    overlay = create_overlay(golden_windows_disk, tmp_path / "disk.qcow2")

    t0 = time.monotonic()
    placed = place_content(overlay, {GOOD_NAME: GOOD, BAD_NAME: CF291})
    # The directory was missing and the volume spells its parents in its own case.
    assert placed.filesystem == "/dev/sda4"
    assert placed.directory == "/WINDOWS/system32/Drivers/HarnessSensor"
    assert placed.listing == {GOOD_NAME: len(GOOD), BAD_NAME: len(CF291)}

    # Read back without libguestfs: ntfs-3g's own tools on a raw copy of the overlay.
    volume = _windows_volume_of(overlay, tmp_path)
    names = set(_run("ntfsls", "-a", "-p", "/WINDOWS/system32/Drivers/HarnessSensor", volume).split())
    assert names - {".", ".."} == {GOOD_NAME, BAD_NAME}  # no temporary names left
    for name, data in ((GOOD_NAME, GOOD), (BAD_NAME, CF291)):
        cat = subprocess.run(["ntfscat", str(volume), f"/WINDOWS/system32/Drivers/HarnessSensor/{name}"],
                             capture_output=True, timeout=60, check=True)
        assert cat.stdout == data
    assert subprocess.run(["ntfscat", str(volume), "/WINDOWS/system32/ntoskrnl.exe"], capture_output=True,
                          timeout=60, check=True).stdout == b"not a kernel\n"

    # The artifacts' way back: read_content() (read-only), into a directory.
    fetched = read_content(overlay, tmp_path / "artifacts" / "content")
    assert fetched == {GOOD_NAME: GOOD, BAD_NAME: CF291}
    assert (tmp_path / "artifacts" / "content" / BAD_NAME).read_bytes() == CF291
    print(f"\n[offline] placed in {placed.seconds:.1f} s, both appliance runs {time.monotonic() - t0:.1f} s")

    # The golden image did not change.
    assert _sha256(golden_windows_disk) == golden_hash


def test_the_golden_image_is_never_written(golden_windows_disk: Path, tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"golden image \(.*windows-fake\.qcow2\.golden\.json beside it\)"):
        place_content(golden_windows_disk, {GOOD_NAME: GOOD})
    copy = tmp_path / "copy.qcow2"  # no manifest, but read-only like a golden image
    shutil.copyfile(golden_windows_disk, copy)
    os.chmod(copy, 0o444)
    with pytest.raises(InputFileError, match=r"copy\.qcow2: the image is read-only \(mode -r--r--r--\)"):
        check_writable(copy)
    with pytest.raises(InputFileError, match="disk image not found"):
        check_writable(tmp_path / "missing.qcow2")
    overlay = create_overlay(golden_windows_disk, tmp_path / "o.qcow2")
    with pytest.raises(InputFileError, match="not a plain Windows file name"):
        place_content(overlay, {"..\\evil.sys": b"x"})

