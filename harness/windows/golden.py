"""A Windows golden image as a test machine uses it: the read-only qcow2 that
`harness image build windows` stamped, and what its manifest says about it.

    golden = load_golden(Path("build/images/windows-win11-vulnerable.qcow2"), edition="win11")

Checked on load, each problem one ConfigError naming the file and the fix: the
image exists, is read-only (a writable golden image would be changed by the first
test that forgets its overlay), its manifest `<image>.golden.json` exists and
matches the image's size, and the edition agrees with the profile. The full
sha256 is checked by `verify_golden()` (`harness doctor`): hashing tens of GB at
every session start is too slow.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifacts import sha256_file
from ..config import Profile
from ..errors import ConfigError

BUILD_FIX = "build it with `harness image build windows --iso ... --virtio-win ...` (docs/running-on-windows.md)"


@dataclass(frozen=True)
class WindowsGolden:
    image: Path
    manifest_path: Path
    edition: str
    sensor: str  # the sensor build installed in the image
    nvram: Path | None  # the UEFI variable store saved with the image (its boot entries)
    ssh_key: Path | None  # the client key whose public half is in administrators_authorized_keys
    manifest: dict[str, Any] = field(default_factory=dict, compare=False)


def manifest_path(image: Path) -> Path:
    return image.with_name(image.name + ".golden.json")


def load_golden(image: Path, edition: str | None = None) -> WindowsGolden:
    image = image.resolve()
    if not image.is_file():
        raise ConfigError(f"{image}: golden image not found; {BUILD_FIX}")
    if os.access(image, os.W_OK) and image.stat().st_mode & 0o222:
        raise ConfigError(f"{image}: a golden image must be read-only (chmod 0444 {image}); tests write "
                          "only to their overlays")
    path = manifest_path(image)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: manifest of the golden image not found; {BUILD_FIX}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable manifest ({exc}); rebuild the image with --force") from None
    if not isinstance(manifest, dict):
        raise ConfigError(f"{path}: expected a JSON object; rebuild the image with --force")
    size = manifest.get("bytes")
    if size is not None and size != image.stat().st_size:
        raise ConfigError(f"{path}: bytes: the manifest says {size}, the image has {image.stat().st_size}: "
                          "the image was changed after it was stamped; rebuild it with --force")
    built = manifest.get("edition")
    if edition is not None and built is not None and built != edition:
        raise ConfigError(f"{path}: edition: the image is {built}, the profile asks for {edition}; set the "
                          f"profile's edition: {built} or point image: at a {edition} image")
    nvram = manifest.get("nvram") or {}
    ssh_key = manifest.get("ssh_key")
    return WindowsGolden(
        image=image, manifest_path=path, edition=str(built or edition or "win11"),
        sensor=str((manifest.get("sensor") or {}).get("build") or "vulnerable"),
        nvram=Path(nvram["path"]) if nvram.get("path") else None,
        ssh_key=Path(ssh_key) if ssh_key else None, manifest=manifest)


def golden_for_profile(profile: Profile) -> WindowsGolden:
    """The Windows profile's golden image, checked, on a host that can boot it: InfraError
    naming the Debian package when OVMF (its Secure Boot capable build for win11), or swtpm ( for an edition with a TPM) is missing."""
    from .domain import EDITIONS, check_host

    golden = load_golden(Path(profile.image), profile.edition)
    spec = EDITIONS[golden.edition]
    check_host(tpm=spec.tpm, secure_boot_capable=spec.secure_boot_capable)
    return golden


def verify_golden(golden: WindowsGolden) -> None:
    """Hash the whole image and compare with the manifest (ConfigError when they differ)."""
    want = golden.manifest.get("sha256")
    if not want:
        raise ConfigError(f"{golden.manifest_path}: sha256: missing; rebuild the image with --force")
    digest = sha256_file(golden.image)
    if digest != want:
        raise ConfigError(f"{golden.image}: sha256 {digest} differs from the manifest's {want}: "
                          "the golden image was written; rebuild it with --force")
