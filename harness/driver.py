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
        driver: {inf: dist/acme.inf, sys: dist/acmeguard.sys, service: AcmeGuard,
                 content_dir: 'C:\\ProgramData\\Acme\\Rules', cert: dist/acme-test.cer,  # cert: optional
                 ready: 'HARNESS-DRIVER-VALUE AcmeGuard/Parameters/State Status=armed'}

On Windows `inf`, `sys`, `service`, `content_dir` and `ready` are required; `ready` and
`rejected` match the lines the image's startup task prints for the driver
(docs/windows-vendor-driver.md); what the INF says is checked by harness/windows/package.py.

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
WINDOWS_KEYS = ("inf", "sys", "service", "content_dir", "ready", "rejected", "cert")
# A Windows service name as the harness passes it around (registry paths, sc.exe, PowerShell,
# cmd): letters, digits, _ . - (Windows itself allows more; no vendor driver needs it).
SERVICE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
# A Windows content directory on the image's one volume, C:, in characters cmd.exe and
# PowerShell take literally (the recovery scripts are rendered with it).
_DIR_PART = r"[A-Za-z0-9 _.()+,=@{}~#-]+"
WINDOWS_DIR = re.compile(rf"^[Cc]:\\(?:{_DIR_PART}(?:\\{_DIR_PART})*\\?)$")


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
    cert: str = ""  # Windows: the test certificate the .sys is signed with (absolute), "" when none

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
    required = ("module", "content_dir", "ready") if family == "linux" else ("inf", "sys", "service", "content_dir",
                                                                          "ready")
    for key in required:
        if not fields.get(key):
            raise ConfigError(f"{source}: {where}.{key}: missing; a {family} driver needs "
                              f"{', '.join(required)}")
    for key in ("module", "inf", "sys", "cert"):
        if fields.get(key):
            path = (base / fields[key]).resolve()
            if not path.is_file():
                raise ConfigError(f"{source}: {where}.{key}: {path} is not a file: build the driver first, or "
                                  "give its path relative to the config file")
            fields[key] = str(path)
    if fields.get("module") and not fields["module"].endswith(".ko"):
        raise ConfigError(f"{source}: {where}.module: {fields['module']} is not a kernel module (.ko)")
    if family == "windows":
        _check_windows(fields, where, source)
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


def _check_windows(fields: dict[str, str], where: str, source: str) -> None:
    """What a Windows driver block needs beyond existing files: the INF, .sys and certificate
    by their suffixes, a service name, a content directory on C:, a certificate (not a key)."""
    for key, suffixes in (("inf", (".inf",)), ("sys", (".sys",))):
        if not fields[key].lower().endswith(suffixes):
            raise ConfigError(f"{source}: {where}.{key}: {fields[key]} is not a {suffixes[0]} file: give the "
                              f"driver's {suffixes[0]}")
    if not SERVICE_NAME.match(fields["service"]):
        raise ConfigError(f"{source}: {where}.service: {fields['service']!r} is not a service name the harness "
                          "takes: letters, digits, _ . - (up to 80), the name AddService gives in the INF")
    directory = fields["content_dir"]
    if PureWindowsPath(directory).is_absolute() and not WINDOWS_DIR.match(directory):
        raise ConfigError(f"{source}: {where}.content_dir: {directory!r}: give a directory on C: (the image's "
                          "Windows volume) in letters, digits, spaces and _ . ( ) + , = @ { } ~ # -, "
                          "e.g. C:\\ProgramData\\Vendor\\Content")
    if fields.get("cert"):
        _check_certificate(Path(fields["cert"]), f"{source}: {where}.cert")


def _check_certificate(path: Path, where: str) -> None:
    """An X.509 certificate (DER .cer or PEM), never a file holding a private key (.pfx, a PEM key)."""
    from cryptography import x509

    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"{where}: {path} holds a private key: give the public certificate only (.cer), "
                          "never the signing key")
    try:
        if data.lstrip().startswith(b"-----BEGIN CERTIFICATE-----"):
            x509.load_pem_x509_certificate(data)
        else:
            x509.load_der_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"{where}: {path} is not an X.509 certificate (DER .cer or PEM): export the test "
                          "certificate the .sys is signed with, without its private key") from None


def _keys(family: str) -> tuple[str, ...]:
    return WINDOWS_KEYS if family == "windows" else LINUX_KEYS


def driver_module(driver: DriverSpec | None) -> str:
    """The kernel module name of a profile's driver: the vendor's, or the sample sensor's."""
    return driver.module_name if driver is not None else SAMPLE_MODULE
