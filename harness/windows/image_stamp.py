"""Stamping a Windows golden image: the installed disk renamed read-only, its sha256 and
inputs in <image>.golden.json (read-only), the UEFI variable store beside it.

The manifest's "driver" is the installed driver's stamp (package.package_stamp): its service,
content directory, the sha256 of every file (INF, .sys, catalog, certificate) and a `key` over
all of it. A vendor image whose key is the profile's is up to date (`up_to_date`); another key
(a new .sys) makes the image stale: the recipe builds it again, and a machine refuses to boot
a stale image (harness/windows/family.py)."""

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


def manifest_driver(manifest: Path) -> dict[str, object] | None:
    """The "driver" stamp of a golden image's manifest, None when there is none (or no manifest)."""
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    driver = data.get("driver") if isinstance(data, dict) else None
    return driver if isinstance(driver, dict) else None


def up_to_date(req: ImageRequest, paths: BuildPaths, driver: dict[str, object]) -> GoldenImage | None:
    """The golden image at `paths` when it exists and was built with exactly this driver
    (the same stamp key), edition and image index, else None."""
    if not paths.image.is_file():
        return None
    stamped = manifest_driver(paths.manifest)
    if stamped is None or stamped.get("key") != driver.get("key"):
        return None
    data = json.loads(paths.manifest.read_text())
    if data.get("edition") != req.edition or data.get("image_index", req.image_index) != req.image_index:
        return None
    return GoldenImage(paths.image, paths.manifest, str(data.get("sha256", "")),
                       float(data.get("install_seconds", 0.0)), list(data.get("markers", [])))


def stamp_golden(req: ImageRequest, paths: BuildPaths, markers: list[str], elapsed: float,
                 progress: Progress, driver: dict[str, object] | None = None) -> GoldenImage:
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
    sensor: dict[str, object] = {"build": "vendor", "sys": None, "sha256": None}  # the sample is not installed
    if req.driver is None:
        sensor = {"build": req.sensor, "sys": str(sys_file),
                  "sha256": sha256_file(sys_file) if sys_file.is_file() else None}
    manifest = {
        "image": str(paths.image),
        "format": "qcow2",
        "sha256": digest,
        "bytes": paths.image.stat().st_size,
        "edition": req.edition,
        "image_index": req.image_index,
        "sensor": sensor,
        "driver": driver,
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
