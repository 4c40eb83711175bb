"""Stamping a Windows golden image: the installed disk renamed read-only, its sha256 and
inputs in <image>.golden.json (read-only), the UEFI variable store beside it."""

from __future__ import annotations

import datetime
import json
import os
import shutil
from pathlib import Path

from ..artifacts import sha256_file
from ..paths import DRIVERS_BUILD
from .domain import NVRAM_NAME
from .image_request import BuildPaths, GoldenImage, ImageRequest, Progress


def _input(path: Path) -> dict[str, object]:
    return {"name": path.name, "path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def stamp_golden(req: ImageRequest, paths: BuildPaths, markers: list[str], elapsed: float,
                 progress: Progress) -> GoldenImage:
    """<image>.qcow2 read-only, its sha256 and inputs in <image>.golden.json (read-only)."""
    for old in (paths.image, paths.manifest, paths.nvram):
        if old.exists():  # only with --force (check_request)
            os.chmod(old, 0o644)
            old.unlink()
    os.replace(paths.building, paths.image)
    os.chmod(paths.image, 0o444)
    progress(f"image: hashing {paths.image}")
    digest = sha256_file(paths.image)
    nvram_src = paths.artifacts / NVRAM_NAME
    nvram = None
    if nvram_src.is_file():
        shutil.copyfile(nvram_src, paths.nvram)
        os.chmod(paths.nvram, 0o444)
        nvram = {"path": str(paths.nvram), "sha256": sha256_file(paths.nvram)}
    sys_file = DRIVERS_BUILD / "windows" / req.sensor / "signed" / "harnessflt.sys"
    manifest = {
        "image": str(paths.image),
        "format": "qcow2",
        "sha256": digest,
        "bytes": paths.image.stat().st_size,
        "edition": req.edition,
        "image_index": req.image_index,
        "sensor": {"build": req.sensor, "sys": str(sys_file),
                   "sha256": sha256_file(sys_file) if sys_file.is_file() else None},
        "inputs": {"iso": _input(req.iso), "virtio_win": _input(req.virtio_win)},
        "nvram": nvram,
        "admin_user": "harness",
        "admin_password_file": str(paths.password),
        "ssh_key": str(paths.ssh_key),
        "install_seconds": round(elapsed, 1),
        "markers": markers,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = paths.manifest.with_name(f".{paths.manifest.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.chmod(tmp, 0o444)
    os.replace(tmp, paths.manifest)
    progress(f"image: golden {paths.image} sha256 {digest} (manifest {paths.manifest})")
    return GoldenImage(paths.image, paths.manifest, digest, elapsed, markers)
