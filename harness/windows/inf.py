r"""What a driver INF says about the driver it installs: read the way SetupAPI reads an INF.

    facts = inf_facts(Path("dist/acme.inf"))
    facts.services        # (ServiceFacts(name="AcmeGuard", binary="acmeguard.sys", ...),)
    facts.catalog         # "acmeguard.cat" (CatalogFile[.NTamd64] of [Version]), or ""
    facts.install_section # "DefaultInstall.NTamd64": what `pnputil /add-driver ... /install` runs

The reading rules (Microsoft Learn, "General Syntax Rules for INF Files", "INF Strings
Section"): ASCII/ANSI or UTF-16 LE with a BOM (UTF-8 with a BOM too); `;` starts a comment
outside double quotes; section names are case-insensitive; `%token%` is replaced from
[Strings] (`%%` is a percent sign); a line may continue with a trailing `\`.

Only what installing a *primitive* driver package through `pnputil /add-driver <inf>
/install` needs is read: that command runs [DefaultInstall] (decorated .NTamd64 on x64,
"Creating a new primitive driver") and its .Services section, whose AddService lines
create the services. A PnP function driver INF ([Manufacturer] models, no DefaultInstall)
installs only on a device with a matching hardware id, which a filter VM does not have:
such an INF is "not a driver INF this recipe can install" (not_installable()).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from ..errors import ConfigError

SERVICE_TYPES = {1: "kernel driver", 2: "file system driver"}  # SERVICE_KERNEL_DRIVER, SERVICE_FILE_SYSTEM_DRIVER
START_TYPES = {0: "boot", 1: "system", 2: "auto", 3: "demand", 4: "disabled"}
_TOKEN = re.compile(r"%([^%]*)%")


@dataclass(frozen=True)
class ServiceFacts:
    name: str  # AddService's first field, tokens expanded
    section: str  # its service-install section
    binary: str  # the file name of ServiceBinary (acmeguard.sys), "" when missing
    service_type: int | None
    start_type: int | None


@dataclass(frozen=True)
class InfFacts:
    path: Path
    signature: str  # [Version] Signature, unquoted
    catalog: str  # CatalogFile.NTamd64 or CatalogFile, "" when the INF names none
    install_section: str  # the DefaultInstall section pnputil runs on amd64, "" when none
    has_models: bool  # a [Manufacturer] section: a PnP INF
    services: tuple[ServiceFacts, ...]
    copied: tuple[str, ...]  # file names of the install section's CopyFiles


class InfReader:
    """Sections of (key or None, value) entries; keys and section names compared case-insensitively."""

    def __init__(self, text: str, path: Path) -> None:
        self.path = path
        self.sections: dict[str, list[tuple[str | None, str]]] = {}
        current: list[tuple[str | None, str]] | None = None
        pending = ""
        for raw in text.splitlines():
            line = pending + strip_comment(raw).strip()
            pending = ""
            if line.endswith("\\") and not line.startswith("["):
                pending = line[:-1]
                continue
            if not line:
                continue
            if line.startswith("["):
                end = line.find("]")
                if end < 0:
                    raise ConfigError(f"{path}: unclosed section header {line!r}")
                current = self.sections.setdefault(line[1:end].strip().lower(), [])
                continue
            if current is None:
                continue  # SetupAPI ignores lines before the first section
            key, sep, value = line.partition("=")
            current.append((key.strip().lower(), value.strip()) if sep else (None, line))
        self.strings = {k: unquote(v) for k, v in self.section("strings") if k is not None}

    def section(self, name: str) -> list[tuple[str | None, str]]:
        return self.sections.get(name.lower(), [])

    def has(self, name: str) -> bool:
        return name.lower() in self.sections

    def value(self, section: str, key: str) -> str:
        return next((v for k, v in self.section(section) if k == key.lower()), "")

    def values(self, section: str, key: str) -> list[str]:
        return [v for k, v in self.section(section) if k == key.lower()]

    def expand(self, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            token = match[1]
            if token == "":
                return "%"
            if token.isdigit():
                return match[0]  # a DIRID: left for the caller
            return self.strings.get(token.lower(), match[0])

        return _TOKEN.sub(one, text)


def strip_comment(line: str) -> str:
    out, quoted = [], False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            break
        out.append(ch)
    return "".join(out)


def unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def inf_fields(value: str) -> list[str]:
    return [f.strip() for f in value.split(",")]


def _int(text: str) -> int | None:
    try:
        return int(text.strip(), 0)
    except ValueError:
        return None


def decode_inf(data: bytes, path: Path) -> str:
    """An INF's text: UTF-16 LE/BE or UTF-8 by their BOM, else ANSI (read as Latin-1)."""
    if data[:2] == b"\xff\xfe":
        return data[2:].decode("utf-16-le", errors="replace")
    if data[:2] == b"\xfe\xff":
        return data[2:].decode("utf-16-be", errors="replace")
    if data[:3] == b"\xef\xbb\xbf":
        return data[3:].decode("utf-8", errors="replace")
    if b"\0" in data:
        raise ConfigError(f"{path}: NUL bytes without a UTF-16 byte-order mark: not an INF file")
    return data.decode("latin-1")


def _install_section(reader: InfReader) -> str:
    """The DefaultInstall section SetupAPI picks on amd64: the most specific decoration."""
    for name in ("DefaultInstall.NTamd64", "DefaultInstall.NT", "DefaultInstall"):
        if reader.has(name):
            return name
    return ""


def inf_facts(path: Path) -> InfFacts:
    """The facts of the INF at `path` (a ConfigError when it cannot be read)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the INF: {exc.strerror}") from None
    reader = InfReader(decode_inf(data, path), path)
    install = _install_section(reader)
    services: list[ServiceFacts] = []
    copied: list[str] = []
    if install:
        for line in reader.values(f"{install}.Services", "AddService"):
            fields = inf_fields(line)
            name = unquote(reader.expand(fields[0]))
            section = fields[2] if len(fields) > 2 else ""
            binary = reader.expand(unquote(reader.value(section, "ServiceBinary"))) if section else ""
            services.append(ServiceFacts(
                name=name, section=section, binary=PureWindowsPath(binary).name if binary else "",
                service_type=_int(reader.expand(reader.value(section, "ServiceType"))) if section else None,
                start_type=_int(reader.expand(reader.value(section, "StartType"))) if section else None))
        for entry in reader.values(install, "CopyFiles"):
            for target in inf_fields(entry):
                if target.startswith("@"):
                    copied.append(reader.expand(target[1:]))
                    continue
                for key, value in reader.section(target):
                    copied.append(reader.expand(inf_fields(value if key is None else key)[0]))
    catalog = reader.value("Version", "CatalogFile.NTamd64") or reader.value("Version", "CatalogFile")
    return InfFacts(path=path, signature=unquote(reader.value("Version", "Signature")),
                    catalog=unquote(reader.expand(catalog)), install_section=install,
                    has_models=reader.has("Manufacturer"), services=tuple(services),
                    copied=tuple(unquote(c) for c in copied if c))


def not_installable(facts: InfFacts) -> str:
    """Why `pnputil /add-driver <inf> /install` cannot install a driver from this INF, or ""."""
    if facts.signature.lower() not in ("$windows nt$", "$chicago$"):
        return "no [Version] Signature = \"$Windows NT$\": not an INF file"
    if not facts.install_section:
        if facts.has_models:
            return ("a PnP INF ([Manufacturer], no [DefaultInstall.NTamd64]): it installs only on a device "
                    "with a matching hardware id; give a primitive driver INF with [DefaultInstall.NTamd64] "
                    "and [DefaultInstall.NTamd64.Services]")
        return "no [DefaultInstall.NTamd64] section: nothing for pnputil /install to run"
    if not facts.services:
        return f"[{facts.install_section}.Services] has no AddService line: it installs no driver"
    kernel = [s for s in facts.services if s.service_type in SERVICE_TYPES]
    if not kernel:
        types = ", ".join(f"{s.name}: ServiceType {s.service_type}" for s in facts.services)
        return f"no service of ServiceType 1 or 2 (a kernel or file system driver): {types}"
    return ""
