"""Windows as a pluggable family (harness.vm.registry: "windows"): machines boot overlays of
the profile's golden image, whose driver is the one installed in it: the sample sensor (its
build), or the profile's vendor driver, checked against the image's stamp (a new .sys makes
the image stale: rebuild it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Profile
from ..errors import ConfigError
from ..vm.backend import GuestBackend, Progress
from .backend import WindowsBackend
from .golden import WindowsGolden, golden_for_profile
from .package import package_stamp, vendor_package


class WindowsGuestFamily:
    name = "windows"

    def prepare(self, profile: Profile, sensor: str | None, progress: Progress) -> tuple[WindowsGolden, str]:
        if profile.driver is not None:
            package = vendor_package(profile.driver, profile.name)  # the INF and .sys checked first
            golden = golden_for_profile(profile)
            check_image_driver(golden, package_stamp(package), profile.name)
            progress(f"windows: golden image {golden.image} ({golden.edition}, vendor driver {package.service})")
            return golden, package.service
        golden = golden_for_profile(profile)
        stamped = golden.manifest.get("driver") or {}
        if isinstance(stamped, dict) and stamped.get("kind") == "vendor":
            raise ConfigError(f"{golden.image}: the image has the vendor driver {stamped.get('service')}, and profile "
                              f"{profile.name} has no driver: block: add the driver: block the image was built with, "
                              "or point image: at an image with the sample sensor")
        if sensor is not None and sensor != golden.sensor:
            raise ConfigError(f"{golden.image}: the image has the {golden.sensor} sensor, not {sensor}: build an "
                              f"image with `harness image build windows --sensor {sensor}` and point the profile "
                              "at it")
        progress(f"windows: golden image {golden.image} ({golden.edition}, {golden.sensor} sensor)")
        return golden, golden.sensor

    def backend(self, guest: Any, profile: Profile) -> GuestBackend:
        return WindowsBackend(guest, profile.driver)

    def shared_files(self, guest: Any) -> list[Path]:
        return [guest.image]


def check_image_driver(golden: WindowsGolden, stamp: dict[str, object], profile: str) -> None:
    """The image was built with exactly the profile's driver files (the stamp's key), or a
    ConfigError saying which file changed and how to rebuild."""
    built = golden.manifest.get("driver")
    rebuild = (f"rebuild it: harness image build windows --config <file> --profile {profile} ... "
               "(the same --out: a stale image is replaced)")
    if not isinstance(built, dict) or built.get("kind") != "vendor":
        raise ConfigError(f"{golden.manifest_path}: driver: the image has the sample sensor, profile {profile} "
                          f"names the vendor driver {stamp['service']}: {rebuild}")
    if built.get("key") == stamp["key"]:
        return
    files_now = stamp.get("files") if isinstance(stamp.get("files"), dict) else {}
    files_then = built.get("files") if isinstance(built.get("files"), dict) else {}
    changed = [f"{role} {info.get('name')}" for role, info in files_now.items()  # type: ignore[union-attr]
               if (files_then.get(role) or {}).get("sha256") != info.get("sha256")]  # type: ignore[union-attr]
    for key in ("service", "content_dir"):
        if built.get(key) != stamp.get(key):
            changed.append(f"{key} {built.get(key)!r} -> {stamp.get(key)!r}")
    raise ConfigError(f"{golden.manifest_path}: driver: the image is stale for profile {profile}: "
                      f"{', '.join(changed) or 'the install script'} changed since it was built; {rebuild}")


FAMILY = WindowsGuestFamily()
