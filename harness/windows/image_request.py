"""The Windows golden-image recipe's request, output paths and result (image.py builds them).

The bottom of the recipe: image_installer, image_stamp and image import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..driver import DriverSpec
from .domain import NVRAM_NAME

Progress = Callable[[str], None]

SENSOR_BUILDS = ("vulnerable", "hardened")
DEFAULT_TIMEOUT = 4 * 3600.0
DEFAULT_SHUTDOWN_TIMEOUT = 600.0
DEFAULT_DISK_GIB = 64  # Windows 11's minimum


@dataclass
class ImageRequest:
    iso: Path
    virtio_win: Path
    edition: str = "win11"
    image_index: int = 1
    out: Path = Path("build/images")
    sensor: str = "vulnerable"
    product_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    disk_gib: int = DEFAULT_DISK_GIB
    force: bool = False
    uri: str = "qemu:///system"
    accel: str = "auto"
    name: str | None = None  # image file stem; default windows-<edition>-<sensor> (a vendor's: <service>)
    poll_interval: float = 2.0
    progress_interval: float = 30.0
    driver: DriverSpec | None = None  # a profile's vendor driver, installed instead of the sample sensor
    profile: str = ""  # the profile that named `driver` (for its errors)

    @property
    def stem(self) -> str:
        if self.name:
            return self.name
        return f"windows-{self.edition}-{self.driver.service.lower() if self.driver else self.sensor}"


@dataclass(frozen=True)
class BuildPaths:
    image: Path  # the golden image, once stamped
    building: Path  # the disk while the install runs
    manifest: Path  # <image>.golden.json
    answer_iso: Path
    password: Path
    ssh_key: Path
    artifacts: Path  # domain.xml, com1.log, com2.log, OVMF_VARS.fd
    nvram: Path  # <image>.OVMF_VARS.fd

    @classmethod
    def for_request(cls, req: ImageRequest) -> "BuildPaths":
        out, stem = req.out.resolve(), req.stem
        return cls(image=out / f"{stem}.qcow2", building=out / f"{stem}.building.qcow2",
                   manifest=out / f"{stem}.qcow2.golden.json", answer_iso=out / f"{stem}.answer.iso",
                   password=out / f"{stem}.admin-password", ssh_key=out / f"{stem}.ssh-key",
                   artifacts=out / f"{stem}.build", nvram=out / f"{stem}.qcow2.{NVRAM_NAME}")


@dataclass(frozen=True)
class InstallerDomain:
    """What the orchestration starts: the domain XML and where its COM2 markers are logged."""
    xml: str
    name: str
    marker_log: Path
    press_keys_s: float = 0.0  # send BOOT_KEY every 2 s for this long after the start


# (request, paths, answer medium) -> the installer domain
InstallerFactory = Callable[[ImageRequest, BuildPaths, Path], InstallerDomain]


@dataclass
class GoldenImage:
    image: Path
    manifest: Path
    sha256: str
    elapsed_s: float
    markers: list[str] = field(default_factory=list)
