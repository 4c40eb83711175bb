"""Profiles: which guest, how to run it, how long to wait. YAML, validated on load.

A config file holds `profiles:`, a mapping of profile name to settings; every
setting has a default, so a profile names only what it changes, and the
built-in profile `linux-ref` needs no file at all. Errors name the file, the
key and what is allowed.

    profiles:
      linux-ref-hardened:
        sensor: hardened
      slow-host:
        timeouts: {boot: 300, hang: 60}
      two-hosts:                      # workers spread across these libvirt URIs
        uris: [qemu:///system, qemu+ssh://root@kvm2/system]
      win11:
        family: windows
        edition: win11
        image: build/images/windows-win11-vulnerable.qcow2   # from `harness image build windows`
        memory_mib: 4096
        vcpus: 2
        network: user
        timeouts: {boot: 900, hang: 300}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .driver import DriverSpec, parse_driver
from .errors import ConfigError

DEFAULT_PROFILE = "linux-ref"


@dataclass(frozen=True)
class Timeouts:
    boot: float = 180.0  # seconds from start to a verdict, per boot-loop detection
    hang: float = 45.0  # no console output and no event for this long: hang
    grace: float = 3.0  # keep reading this long after a crash starts, for the whole report
    ssh: float = 60.0  # a command over SSH


@dataclass(frozen=True)
class Profile:
    name: str = DEFAULT_PROFILE
    family: str = "linux"
    uri: str = "qemu:///system"
    uris: tuple[str, ...] = ()  # several libvirt hosts: xdist workers are spread across them (uri is ignored)
    accel: str = "auto"  # auto | kvm | tcg
    memory_mib: int = 256
    vcpus: int = 1
    sensor: str = "vulnerable"  # vulnerable | hardened
    network: str = "none"  # none | user (SSH forwarded to 127.0.0.1)
    boot_loop_threshold: int = 2
    name_prefix: str = "harness"
    domain_template: str = "linux/domain.xml.j2"
    safe_mode_script: str = ""  # recovery script run in safe mode ("" = the shipped sample)
    recovery_env_script: str = ""  # recovery script run in the recovery environment
    edition: str = "win11"  # family windows: win10 | win11 | server2022
    image: str = ""  # family windows: the golden qcow2 (relative paths: to the config file)
    winpe_media: str = ""  # family windows, recovery-env: the ADK's WinPE media directory or a WinPE ISO
    bitlocker_password_file: str = ""  # family windows: a file holding the BitLocker recovery password
    driver: DriverSpec | None = None  # a vendor's driver (harness/driver.py); None: the sample sensor
    fast_path: bool = True  # campaigns judge files from a memory snapshot (docs/fastpath.md); false: boots
    timeouts: Timeouts = field(default_factory=Timeouts)

    def recovery_script(self, path: str) -> str:
        return self.safe_mode_script if path == "safe-mode" else self.recovery_env_script

    @property
    def hosts(self) -> tuple[str, ...]:
        """The libvirt URIs this profile runs on: `uris` when given, else `uri`."""
        return self.uris or (self.uri,)

    def uri_for_worker(self, index: int) -> str:
        """The host of xdist worker `index` (gw0 = 0): round robin over `hosts`."""
        return self.hosts[index % len(self.hosts)]


_CHOICES: dict[str, tuple[str, ...]] = {
    "family": ("linux", "windows"), "edition": ("win10", "win11", "server2022"), "accel": ("auto", "kvm", "tcg"), "sensor": ("vulnerable", "hardened"),
    "network": ("none", "user"),
}
_MINIMUM: dict[str, float] = {"memory_mib": 96, "vcpus": 1, "boot_loop_threshold": 1}


def _check_fields(cls: type, values: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    known = {f.name: f for f in dataclasses.fields(cls) if f.name != "name"}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{source}: {where}.{key}: unknown key; allowed: {', '.join(sorted(known))}")
        default = getattr(cls(), key)
        path = f"{where}.{key}"
        if isinstance(default, Timeouts):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {path}: expected a mapping such as {{boot: 180, hang: 45}}")
            out[key] = Timeouts(**_check_fields(Timeouts, value, path, source))
            continue
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: {path}: expected true or false, got {value!r}")
            out[key] = value
            continue
        if isinstance(default, tuple):
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"{source}: {path}: expected a non-empty list of strings, got {value!r}")
            out[key] = tuple(value)
            continue
        if isinstance(default, bool) or isinstance(value, bool) or not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int)):
            raise ConfigError(f"{source}: {path}: expected {type(default).__name__}, got {value!r}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"{source}: {path}: {value!r} is not one of {', '.join(_CHOICES[key])}")
        if isinstance(value, (int, float)) and value < _MINIMUM.get(key, 0.001 if isinstance(default, float) else 0):
            raise ConfigError(f"{source}: {path}: {value} is too small")
        out[key] = float(value) if isinstance(default, float) else value
    return out


def load_profiles(path: Path | None) -> dict[str, Profile]:
    """The built-in profile plus those of the config file at `path` (if any)."""
    profiles = {DEFAULT_PROFILE: Profile()}
    if path is None:
        return profiles
    source = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{source}: {where}invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return profiles
    if not isinstance(data, dict) or set(data) - {"profiles", "fleet"}:  # fleet: read by harness rollout
        raise ConfigError(f"{source}: the top level must be a mapping with one key, profiles (and fleet, for rollout)")
    entries = data.get("profiles") or {}
    if not isinstance(entries, dict):
        raise ConfigError(f"{source}: profiles: expected a mapping of profile name to settings")
    for name, values in entries.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: profiles.{name}: expected a mapping of settings")
        values = dict(values)
        driver = values.pop("driver", None)
        fields = _check_fields(Profile, values, f"profiles.{name}", source)
        if driver is not None:
            fields["driver"] = parse_driver(driver, fields.get("family", "linux"), f"profiles.{name}.driver",
                                            source, path.parent)
        for key in ("safe_mode_script", "recovery_env_script"):
            if fields.get(key):  # relative to the config file, and it must exist
                script = (path.parent / fields[key]).resolve()
                if not script.is_file():
                    raise ConfigError(f"{source}: profiles.{name}.{key}: {script} is not a file")
                fields[key] = str(script)
        for key in ("image", "winpe_media", "bitlocker_password_file"):
            if fields.get(key):
                fields[key] = str((path.parent / fields[key]).resolve())
        if fields.get("family") == "windows" and not fields.get("image"):
            raise ConfigError(f"{source}: profiles.{name}.image: family windows needs the golden image "
                              f"built by `harness image build windows` (image: path/to/windows-....qcow2)")
        profiles[str(name)] = Profile(name=str(name), **fields)
    return profiles


def select_profile(path: Path | None, name: str | None) -> Profile:
    profiles = load_profiles(path)
    wanted = name or DEFAULT_PROFILE
    if wanted not in profiles:
        where = str(path) if path else "the built-in profiles"
        raise ConfigError(f"{where}: no profile {wanted!r}; known: {', '.join(sorted(profiles))}")
    return profiles[wanted]
