"""Windows as a pluggable family (harness.vm.registry: "windows"): machines boot overlays of
the profile's golden image, whose sensor build is the one installed in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Profile
from ..errors import ConfigError
from ..vm.backend import GuestBackend, Progress
from .backend import WindowsBackend
from .golden import WindowsGolden, golden_for_profile


class WindowsGuestFamily:
    name = "windows"

    def prepare(self, profile: Profile, sensor: str | None, progress: Progress) -> tuple[WindowsGolden, str]:
        golden = golden_for_profile(profile)
        if sensor is not None and sensor != golden.sensor:
            raise ConfigError(f"{golden.image}: the image has the {golden.sensor} sensor, not {sensor}: build an "
                              f"image with `harness image build windows --sensor {sensor}` and point the profile "
                              "at it")
        progress(f"windows: golden image {golden.image} ({golden.edition}, {golden.sensor} sensor)")
        return golden, golden.sensor

    def backend(self, guest: Any, profile: Profile) -> GuestBackend:
        return WindowsBackend(guest)

    def shared_files(self, guest: Any) -> list[Path]:
        return [guest.image]


FAMILY = WindowsGuestFamily()
