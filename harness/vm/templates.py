"""Render libvirt domain XML and guest files from vm-templates/ with jinja2.

StrictUndefined turns a variable the caller forgot into an error that names
the template and the variable, instead of an empty attribute in the XML. Every
template gets `metadata_ns`, `owner_host` (this machine: the harness metadata
names it, so a sweep from another machine sharing the libvirt host leaves the
domain alone) and `owner_lock` (the lock this process holds for its whole life:
the sweep judges a domain's owner alive by it, see ownership.py).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import jinja2

from ..errors import ConfigError
from ..paths import VM_TEMPLATES
from .ownership import process_lock

TEMPLATES = VM_TEMPLATES
METADATA_NS = "https://harness.invalid/xmlns/vm/1"


def _environment(root: Path) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(root)), undefined=jinja2.StrictUndefined,
                              autoescape=False, keep_trailing_newline=True)


def render(template: str, root: Path = TEMPLATES, **values: Any) -> str:
    """Render `template` (a path under `root`); errors name the file, the line and the fix."""
    path = root / template
    try:
        values = {"metadata_ns": METADATA_NS, "owner_host": socket.gethostname(),
                  "owner_lock": str(process_lock()), **values}
        return _environment(root).get_template(template).render(**values)
    except jinja2.TemplateNotFound:
        raise ConfigError(f"{path}: template not found") from None
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"{path}: {exc.message}: pass it to the template or remove it from "
                          "the template") from None
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{exc.filename or path}:{exc.lineno}: template syntax error: {exc.message}") from None
