"""A vendor's driver, as a profile names it: what to install, where its content goes, and
what "ready" and "rejected" look like in its own words.

    profiles:
      acme:
        driver:
          module: build/acme_guard.ko          # Linux: built for the reference guest's kernel
          params: "acme_dir=/var/lib/acme"     # module parameters
          content_dir: /var/lib/acme           # where content files go, in the guest
          ready: 'acme_guard: armed'           # console regex: the driver is up with its content
          rejected: 'acme_guard: (?P<file>\\S+): refused: (?P<reason>.*)'   # optional
      acme-win:
        family: windows
        driver: {inf: dist/acme.inf, sys: dist/acme.sys, service: AcmeGuard,
                 content_dir: 'C:\\ProgramData\\Acme\\Rules', ready: ...}

A profile without `driver:` runs the sample sensor (drivers/), the default. Every
error names the file, the key and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

from .errors import ConfigError

SAMPLE_MODULE = "harness_sensor"  # the sample sensor's Linux module (drivers/linux)
LINUX_KEYS = ("module", "params", "content_dir", "ready", "rejected")
WINDOWS_KEYS = ("inf", "sys", "service", "content_dir", "ready", "rejected")


@dataclass(frozen=True)
class DriverSpec:
    content_dir: str
    ready: str  # regex over the console (Linux) or the driver's status (Windows)
    rejected: str = ""  # regex with the groups `file` and `reason`; "" when the driver has none
    module: str = ""  # Linux: the .ko (absolute)
    params: str = ""  # Linux: module parameters
    inf: str = ""  # Windows: the INF that installs it (absolute)
    sys: str = ""  # Windows: the .sys (absolute)
    service: str = ""  # Windows: the service name

    @property
    def module_name(self) -> str:
        """The kernel's name for the module (acme-guard.ko -> acme_guard)."""
        return Path(self.module).stem.replace("-", "_")

    @property
    def ready_re(self) -> re.Pattern[str]:
        return re.compile(self.ready)

    @property
    def rejected_re(self) -> re.Pattern[str] | None:
        return re.compile(self.rejected) if self.rejected else None


def parse_driver(values: Any, family: str, where: str, source: str, base: Path) -> DriverSpec:
    """The `driver:` mapping of one profile, checked; relative paths are relative to `base`
    (the config file's directory)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping with {', '.join(_keys(family))}")
    allowed = _keys(family)
    for key, value in values.items():
        if key not in allowed:
            raise ConfigError(f"{source}: {where}.{key}: unknown key for a {family} driver; "
                              f"allowed: {', '.join(allowed)}")
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where}.{key}: expected a string, got {value!r}")
    fields: dict[str, str] = dict(values)
    required = ("module", "content_dir", "ready") if family == "linux" else ("sys", "service", "content_dir", "ready")
    for key in required:
        if not fields.get(key):
            raise ConfigError(f"{source}: {where}.{key}: missing; a {family} driver needs "
                              f"{', '.join(required)}")
    for key in ("module", "inf", "sys"):
        if fields.get(key):
            path = (base / fields[key]).resolve()
            if not path.is_file():
                raise ConfigError(f"{source}: {where}.{key}: {path} is not a file: build the driver first, or "
                                  "give its path relative to the config file")
            fields[key] = str(path)
    if fields.get("module") and not fields["module"].endswith(".ko"):
        raise ConfigError(f"{source}: {where}.module: {fields['module']} is not a kernel module (.ko)")
    directory = fields["content_dir"]
    absolute = PureWindowsPath(directory).is_absolute() if family == "windows" else directory.startswith("/")
    if not absolute:
        example = "C:\\ProgramData\\Vendor\\Content" if family == "windows" else "/var/lib/vendor"
        raise ConfigError(f"{source}: {where}.content_dir: {directory!r} is not absolute: give the directory "
                          f"the driver reads in the guest, e.g. {example}")
    for key in ("ready", "rejected"):
        if fields.get(key):
            try:
                pattern = re.compile(fields[key])
            except re.error as exc:
                raise ConfigError(f"{source}: {where}.{key}: {fields[key]!r} does not compile: {exc}; "
                                  "quote it in single quotes in YAML and escape regex metacharacters") from None
            if key == "rejected" and not {"file", "reason"} <= set(pattern.groupindex):
                raise ConfigError(f"{source}: {where}.rejected: name the groups (?P<file>...) and "
                                  f"(?P<reason>...) in {fields[key]!r}")
    return DriverSpec(**fields)


def _keys(family: str) -> tuple[str, ...]:
    return WINDOWS_KEYS if family == "windows" else LINUX_KEYS


def driver_module(driver: DriverSpec | None) -> str:
    """The kernel module name of a profile's driver: the vendor's, or the sample sensor's."""
    return driver.module_name if driver is not None else SAMPLE_MODULE
