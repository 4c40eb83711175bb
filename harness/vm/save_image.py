"""libvirt's saved-domain images (virDomainSaveFlags): the domain XML inside them, and copies of
one image under another domain name.

A saved image restores under the name and UUID it was saved with, and libvirt refuses to rename
a domain through the restore XML ("Target domain name ... does not match source"). A snapshot
restored for one content file after another, while the last file's domain is still being
destroyed in the background, needs several names: `write_variant()` copies the image with another
domain XML in its header. Only the header changes; QEMU's migration stream after it is copied
byte for byte.

The layout (libvirt's qemu_saveimage.h, stable on-disk ABI since libvirt 0.9): a 92-byte header
(magic `LibvirtQemudSave`, then little-endian u32 version = 2, data_len, was_running, format,
cookieOffset, 14 unused), `data_len` bytes holding the domain XML (NUL-terminated), the cookie
at `cookieOffset` (NUL-terminated) and zero padding, then the migration stream. libvirt pads
the XML area (64 KiB here) so the XML can grow in place (virDomainSaveImageDefineXML).
"""

from __future__ import annotations

import os
import struct
import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ..errors import InfraError

MAGIC = b"LibvirtQemudSave"
HEADER = struct.Struct("<16s5I56x")  # magic, version, data_len, was_running, format, cookieOffset
VERSION = 2
FORMAT_RAW = 0


@dataclass(frozen=True)
class SaveImage:
    path: Path
    xml: str
    cookie: bytes  # NUL-terminated, as stored
    data_len: int
    was_running: int

    @property
    def stream_offset(self) -> int:
        return HEADER.size + self.data_len


def read_image(path: Path) -> SaveImage:
    """The header of the saved image `path`; an image that is not a finished, uncompressed libvirt
    save is an InfraError naming it."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER.size)
            if len(head) < HEADER.size:
                raise InfraError(f"{path}: not a libvirt save image (only {len(head)} bytes)")
            magic, version, data_len, was_running, fmt, cookie_at = HEADER.unpack(head)
            if magic != MAGIC or version != VERSION or fmt != FORMAT_RAW:
                raise InfraError(f"{path}: not a finished, uncompressed libvirt save image (magic {magic!r}, "
                                 f"version {version}, format {fmt}); delete it and the snapshot is made again")
            data = f.read(data_len)
    except OSError as exc:
        raise InfraError(f"cannot read the saved image {path}: {exc.strerror}") from None
    xml = data[:cookie_at].split(b"\0", 1)[0].decode()
    cookie = data[cookie_at:].split(b"\0", 1)[0] + b"\0"
    return SaveImage(path, xml, cookie, data_len, was_running)


def renamed_xml(xml: str, name: str, uuid: str | None = None) -> str:
    """`xml` with another domain name and UUID (a new random one when `uuid` is None)."""
    root = ET.fromstring(xml)
    for tag, value in (("name", name), ("uuid", uuid or str(uuidlib.uuid4()))):
        node = root.find(tag)
        if node is None:
            node = ET.SubElement(root, tag)
        node.text = value
    return to_string(root)


def to_string(root: ET.Element) -> str:
    return ET.tostring(root, encoding="unicode") + "\n"


def write_variant(image: SaveImage, dest: Path, xml: str) -> Path:
    """Copy `image` to `dest` with `xml` as its domain XML (read-only, like the original)."""
    body = xml.encode() + b"\0"
    if len(body) + len(image.cookie) > image.data_len:
        raise InfraError(f"{image.path}: the new domain XML ({len(body)} bytes) does not fit the "
                         f"image's {image.data_len}-byte XML area")
    header = HEADER.pack(MAGIC, VERSION, image.data_len, image.was_running, FORMAT_RAW, len(body))
    padding = b"\0" * (image.data_len - len(body) - len(image.cookie))
    partial = dest.with_name(f".{dest.name}.part")
    try:
        with open(image.path, "rb") as src, open(partial, "wb") as out:
            out.write(header + body + image.cookie + padding)
            out.flush()
            size = os.fstat(src.fileno()).st_size - image.stream_offset
            offset = image.stream_offset
            while size > 0:  # in-kernel copy of the migration stream
                done = os.copy_file_range(src.fileno(), out.fileno(), size, offset)
                if done <= 0:
                    raise OSError(0, "copy_file_range copied nothing")
                offset += done
                size -= done
        partial.chmod(0o444)
        os.replace(partial, dest)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InfraError(f"cannot copy the saved image {image.path} to {dest}: {exc.strerror or exc}") from None
    return dest
