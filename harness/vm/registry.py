"""Guest families by name: the machine asks for the family its profile names, never a class.

The built-in families are named here as import strings (the Linux reference guest and
Windows), so this layer imports none of them; another family registers itself with
`register_family()`, or from an installed package through the `harness.families` entry
point group (`name = "package.module:OBJECT"`, OBJECT a GuestFamilyPlugin), the way
syzkaller's vm backends and labgrid's drivers are found by name.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ..errors import ConfigError
from .backend import GuestFamilyPlugin, SnapshotPoint

ENTRY_POINT_GROUP = "harness.families"
BUILTIN: dict[str, str] = {
    "linux": "harness.guest.linux_family:FAMILY",
    "windows": "harness.windows.family:FAMILY",
}
_registered: dict[str, GuestFamilyPlugin] = {}


def register_family(plugin: GuestFamilyPlugin) -> None:
    _registered[plugin.name] = plugin


def known_families() -> list[str]:
    return sorted({*BUILTIN, *_registered, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def family_plugin(name: str) -> GuestFamilyPlugin:
    """The family called `name`; a name nobody registered is a ConfigError naming the known ones."""
    if name in _registered:
        return _registered[name]
    target = next((ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name), None)
    target = target or BUILTIN.get(name)
    if target is None:
        raise ConfigError(f"family {name!r}: no such guest family (known: {', '.join(known_families())}); "
                          f"register it with harness.vm.registry.register_family() or the "
                          f"{ENTRY_POINT_GROUP!r} entry point group")
    module, _, attr = target.partition(":")
    plugin: GuestFamilyPlugin = getattr(importlib.import_module(module), attr)
    _registered[name] = plugin
    return plugin


def snapshot_point(name: str) -> SnapshotPoint | None:
    """The snapshot point of family `name` (an optional plugin attribute), or None."""
    return getattr(family_plugin(name), "snapshot_point", None)
