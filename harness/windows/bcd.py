"""Offline edits of a Windows boot store (BCD) and of other registry hives, with hivex.

A BCD store is a registry hive (regf) laid out as

    \\Objects\\{GUID}\\Description          Type (REG_DWORD: 0x10100002 boot manager,
                                           0x10200003 Windows OS loader)
    \\Objects\\{GUID}\\Elements\\<8 hex>      Element (the value; its type depends on the element)

Sources for the layout and the encodings used here:

* element ids: Microsoft's BcdBootMgrElementTypes (BcdBootMgrObject_DefaultObject =
  0x23000003) and BcdOSLoaderElementTypes (BcdOSLoaderInteger_SafeBoot = 0x25000080;
  BcdLibraryBoolean_... etc.), https://learn.microsoft.com/previous-versions/windows/desktop/bcd/bcdosloaderelementtypes
  and the BcdOSLoader_SafeBoot enumeration there (0 Minimal, 1 Network, 2 DsRepair);
* the boot manager object's well-known GUID {9dea862c-5cdd-4e70-acc1-f32b344d4795}
  (same page family, "Well-known identifiers"; also Bromium's bcd.c OBJID_BOOTMGR);
* the value encodings: DiscUtils' BootConfig (LTRData/DiscUtils:Library/DiscUtils.BootConfig/
  Element.cs and IntegerElementValue.cs): an Integer element (format nibble 5, as in
  0x25000080) is REG_BINARY holding the number as 8 bytes little endian; a Guid element
  (format 3, as 0x23000003) is REG_SZ holding "{guid}"; DiscUtilsRegistryStorage.cs
  names the key Objects\\{guid}\\Elements\\<id as 8 hex digits> and the value "Element".
  Geoff Chappell's notes on BCD elements (geoffchappell.com/notes/windows/boot/bcd/elements.htm)
  describe the same format nibble; the page itself was not readable here.

What a real store looks like after `bcdedit /set {default} safeboot minimal` was not
compared here (no Windows): windows-notes.md section 9 lists that check.

Tools: hivexsh and hivexget (Debian's libhivex-bin) do every read and write, so the
hive is only ever changed by hivex. hivex cannot create a hive from nothing;
`write_empty_hive` writes the smallest valid one (one root key), per the regf format:
libyal's "Windows NT Registry File (REGF) format" specification (libyal/libregf:
documentation/Windows NT Registry File (REGF) format.asciidoc) and hivex's reader
(libguestfs/hivex:lib/handle.c, which checks exactly these fields on open).

Where the store lives: `\\EFI\\Microsoft\\Boot\\BCD` on the EFI system partition, the
first partition of the layout vm-templates/windows/autounattend.xml.j2 creates
(ESP, MSR, Windows). `fetch_esp_file`/`put_esp_file` copy it out of and into a
(qcow2) disk with guestfish (libguestfs-tools); the machine must be off.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InfraError, InputFileError
from .offline import guestfish_env

BOOTMGR = "{9dea862c-5cdd-4e70-acc1-f32b344d4795}"
ELEMENT_DEFAULT_OBJECT = "23000003"  # BcdBootMgrObject_DefaultObject (REG_SZ "{guid}")
ELEMENT_SAFEBOOT = "25000080"  # BcdOSLoaderInteger_SafeBoot (REG_BINARY, 8 bytes LE)
OBJECT_TYPE_BOOTMGR = 0x10100002
OBJECT_TYPE_OSLOADER = 0x10200003
SAFEBOOT_MODES = {"minimal": 0, "network": 1, "dsrepair": 2}  # BcdOSLoader_SafeBoot

REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD = 1, 2, 3, 4
ESP_BCD_PATH = "/EFI/Microsoft/Boot/BCD"
ESP_PARTITION = 1  # autounattend.xml.j2: 1 EFI, 2 MSR, 3 Windows
WINDOWS_PARTITION = 3
HIVEX_FIX = "install Debian's libhivex-bin (apt-get install libhivex-bin)"
GUESTFISH_FIX = "install Debian's libguestfs-tools (apt-get install libguestfs-tools)"
GUESTFISH_TIMEOUT_S = 600.0  # the appliance boots under TCG on a host without KVM (~30 s here)

# The commands that do the same from inside the running guest (an elevated prompt):
# bcdedit's /set and /deletevalue (windows-driver-docs-pr/devtest/bcdedit--set.md).
BCDEDIT_SET_SAFEBOOT = "bcdedit /set {{default}} safeboot {mode}"  # a str.format template
BCDEDIT_CLEAR_SAFEBOOT = "bcdedit /deletevalue {default} safeboot"


class HiveError(InputFileError):
    """A hive that is not what it must be (not a regf file, a missing key or value)."""


def bcdedit_set_safeboot(mode: str = "minimal") -> str:
    """The guest-side command that sets what `set_safeboot` sets offline."""
    _check_mode(mode)
    return BCDEDIT_SET_SAFEBOOT.format(mode=mode)


def _check_mode(mode: str) -> int:
    if mode not in SAFEBOOT_MODES:
        raise ValueError(f"safe boot mode {mode!r} is not one of {', '.join(SAFEBOOT_MODES)}")
    return SAFEBOOT_MODES[mode]


# ------------------------------------------------------------------ an empty hive


def _filetime_now() -> int:
    import time

    return int(time.time() * 10_000_000) + 116_444_736_000_000_000


def _cell(payload: bytes) -> bytes:
    """An allocated cell: negative size (4-byte size field included), padded to 8 bytes."""
    size = (4 + len(payload) + 7) & ~7
    return struct.pack("<i", -size) + payload + b"\0" * (size - 4 - len(payload))


def write_empty_hive(path: Path, root_name: str = "ROOT", file_name: str = "") -> Path:
    """Write a regf hive holding one empty root key (hivex adds everything else).

    Layout (offsets per libyal's REGF document; hivex's handle.c checks the magic,
    major version 1, the XOR checksum of the first 508 bytes, the hbin's offset and
    size, and that the root cell is an allocated "nk"):
    base block (4096 bytes) | one hbin (4096 bytes): root nk cell, its sk cell
    (security: self-relative descriptor, owner Administrators, group SYSTEM, NULL
    DACL; hivex copies the parent's sk to every key it adds), one free cell.
    """
    name = root_name.encode("ascii")
    stamp = _filetime_now()
    root_off = 0x20  # cell offsets count from the first hbin (file offset 0x1000)
    nk_size = len(_cell(b"\0" * (0x4C + len(name))))
    sk_off = root_off + nk_size
    admins = bytes([1, 2, 0, 0, 0, 0, 0, 5]) + struct.pack("<II", 32, 544)  # S-1-5-32-544
    system = bytes([1, 1, 0, 0, 0, 0, 0, 5]) + struct.pack("<I", 18)  # S-1-5-18
    # revision 1, control SE_SELF_RELATIVE|SE_DACL_PRESENT (DACL offset 0: a NULL DACL)
    descriptor = struct.pack("<BBHIIII", 1, 0, 0x8004, 20, 20 + len(admins), 0, 0) + admins + system
    none = 0xFFFFFFFF
    nk = b"nk" + struct.pack(
        "<HQIIIIIIIIIIIIIIIHH",
        0x2C,  # KEY_HIVE_ENTRY | KEY_NO_DELETE | KEY_COMP_NAME (ASCII name)
        stamp, 0, 0,  # last written, access bits, parent (none for the root)
        0, 0, none, none,  # subkeys, volatile subkeys and their lists
        0, none,  # values and their list
        sk_off, none,  # security cell, class name
        0, 0, 0, 0, 0,  # largest subkey name/class, value name/data; work var
        len(name), 0) + name
    sk = b"sk" + struct.pack("<HIIII", 0, sk_off, sk_off, 1, len(descriptor)) + descriptor
    cells = _cell(nk) + _cell(sk)
    free = 0x1000 - 0x20 - len(cells)
    hbin = b"hbin" + struct.pack("<IIIIQI", 0, 0x1000, 0, 0, stamp, 0)
    hbin += cells + struct.pack("<i", free) + b"\0" * (free - 4)
    header = b"regf" + struct.pack("<IIQIIIIIII", 1, 1, stamp, 1, 3, 0, 1, root_off, len(hbin), 1)
    header += (file_name or root_name).encode("utf-16-le")[:64].ljust(64, b"\0")
    header = header.ljust(0x1FC, b"\0")
    checksum = 0
    for offset in range(0, 0x1FC, 4):
        checksum ^= struct.unpack_from("<I", header, offset)[0]
    header = (header + struct.pack("<I", checksum)).ljust(0x1000, b"\0")
    path.write_bytes(header + hbin)
    return path


# ------------------------------------------------------------------ hivex


def _tool(name: str, fix: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise InfraError(f"{name} not found: {fix}")
    return path


def _check_hive(hive: Path) -> None:
    if not hive.is_file():
        raise HiveError(f"{hive}: hive file not found")
    with open(hive, "rb") as handle:
        if handle.read(4) != b"regf":
            raise HiveError(f"{hive}: not a registry hive (no 'regf' signature): give the BCD file from the "
                            f"ESP ({ESP_BCD_PATH}) or a hive from Windows\\System32\\config")


def _hivexsh(hive: Path, script: str, write: bool) -> str:
    argv = [_tool("hivexsh", HIVEX_FIX)] + (["-w"] if write else []) + [str(hive)]
    proc = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise HiveError(f"{hive}: hivexsh failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def _key_script(key: str) -> str:
    """`cd` to `key`, one part per line from the root (where hivexsh starts), which
    avoids `cd \\` (readline's continuation quirk the hivexsh manual warns about)."""
    return "".join(f"cd {part}\n" for part in key.strip("\\").split("\\") if part)


def key_exists(hive: Path, key: str) -> bool:
    _check_hive(hive)
    proc = subprocess.run([_tool("hivexsh", HIVEX_FIX), str(hive)], input=_key_script(key),
                          capture_output=True, text=True, timeout=60)
    return proc.returncode == 0


@dataclass(frozen=True)
class Value:
    type: int
    data: bytes

    def text(self) -> str:
        """A REG_SZ / REG_EXPAND_SZ value as text (UTF-16LE, up to the first NUL)."""
        return self.data.decode("utf-16-le", "replace").split("\0", 1)[0]


_LINE_RE = re.compile(r'^(?:"(?P<name>(?:[^"\\]|\\.)*)"|(?P<default>@))=(?P<data>.*)$')


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def read_values(hive: Path, key: str) -> dict[str, Value]:
    """Every value of `key`, from hivexget's regedit-style listing ('' is the default value)."""
    _check_hive(hive)
    proc = subprocess.run([_tool("hivexget", HIVEX_FIX), str(hive), "\\" + key.strip("\\")],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise HiveError(f"{hive}: key \\{key.strip(chr(92))} not found ({proc.stderr.strip()})")
    values: dict[str, Value] = {}
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        match = _LINE_RE.match(line)
        if match is None:
            raise HiveError(f"{hive}: cannot read the value line {line!r} of \\{key.strip(chr(92))}")
        name = "" if match.group("default") else _unescape(match.group("name"))
        if name == "@":  # hivexget 1.3.23 prints the default value as "@" (quoted); regipy reads it as (default)
            name = ""
        data = match.group("data")
        typed = re.fullmatch(r'str\((?P<t>[0-9a-f]+)\):"(?P<s>.*)"', data)
        if data.startswith('"') and data.endswith('"'):
            values[name] = Value(REG_SZ, (_unescape(data[1:-1]) + "\0").encode("utf-16-le"))
        elif typed is not None:  # REG_EXPAND_SZ and other string types
            values[name] = Value(int(typed.group("t"), 16), (_unescape(typed.group("s")) + "\0").encode("utf-16-le"))
        elif data.startswith("dword:"):
            values[name] = Value(REG_DWORD, struct.pack("<I", int(data[6:], 16)))
        elif (hexed := re.fullmatch(r"hex\((?P<t>[0-9a-f]+)\):(?P<b>[0-9a-f,]*)", data)) is not None:
            values[name] = Value(int(hexed.group("t"), 16), bytes.fromhex(hexed.group("b").replace(",", "")))
        else:
            raise HiveError(f"{hive}: cannot read the value {name!r} of \\{key.strip(chr(92))}: {data!r}")
    return values


def read_value(hive: Path, key: str, name: str) -> Value | None:
    return read_values(hive, key).get(name)


def _setval_script(values: Mapping[str, Value]) -> str:
    lines = [f"setval {len(values)}"]
    for name, value in values.items():
        if "\n" in name:
            raise ValueError(f"value name {name!r} holds a newline")
        lines += [name or "@", f"hex:{value.type}:" + ",".join(f"{b:02x}" for b in value.data)]
    return "\n".join(lines) + "\n"


def write_values(hive: Path, key: str, changes: Mapping[str, Value | None], create: bool = True) -> None:
    """Set (or, for None, delete) values of `key`, keeping its other values.

    hivexsh's `setval` replaces every value of a key, so the others are read first
    (hivexget) and written back as `hex:<type>:<bytes>`: binary and numeric values
    byte for byte, strings as UTF-16LE with one terminating NUL (as Windows writes
    them; a string stored without its NUL gains one).
    Missing keys on the way are created when `create`."""
    _check_hive(hive)
    parts = [p for p in key.strip("\\").split("\\") if p]
    script = ""
    path: list[str] = []
    for part in parts:
        if not key_exists(hive, "\\".join(path + [part])):
            if not create:
                raise HiveError(f"{hive}: key \\{chr(92).join(path + [part])} not found")
            script += f"add {part}\n"
        script += f"cd {part}\n"
        path.append(part)
    current = read_values(hive, key) if key_exists(hive, key) else {}
    for name, value in changes.items():
        if value is None:
            current.pop(name, None)
        else:
            current[name] = value
    _hivexsh(hive, script + _setval_script(current) + "commit\n", write=True)


def delete_key(hive: Path, key: str) -> bool:
    """Delete `key` and everything below it; False when it was not there."""
    if not key_exists(hive, key):
        return False
    _hivexsh(hive, _key_script(key) + "del\ncommit\n", write=True)
    return True


def string_value(text: str, type_: int = REG_SZ) -> Value:
    return Value(type_, (text + "\0").encode("utf-16-le"))


def dword_value(number: int) -> Value:
    return Value(REG_DWORD, struct.pack("<I", number))


# ------------------------------------------------------------------ BCD


def _element_key(obj: str, element: str) -> str:
    return f"Objects\\{obj}\\Elements\\{element}"


def default_loader(hive: Path) -> str:
    """The GUID ("{...}") the boot manager boots by default (its element 23000003)."""
    _check_hive(hive)
    if not key_exists(hive, f"Objects\\{BOOTMGR}"):
        raise HiveError(f"{hive}: no boot manager object Objects\\{BOOTMGR}: not a BCD store "
                        f"(the ESP's {ESP_BCD_PATH} is)")
    value = read_value(hive, _element_key(BOOTMGR, ELEMENT_DEFAULT_OBJECT), "Element") \
        if key_exists(hive, _element_key(BOOTMGR, ELEMENT_DEFAULT_OBJECT)) else None
    if value is None or value.type != REG_SZ:
        raise HiveError(f"{hive}: the boot manager has no default object (element {ELEMENT_DEFAULT_OBJECT}): "
                        "bcdedit /default {guid} sets one")
    guid = value.text()
    if not re.fullmatch(r"\{[0-9a-fA-F-]{36}\}", guid):
        raise HiveError(f"{hive}: the default object {guid!r} is not a {{GUID}}")
    obj_type = read_value(hive, f"Objects\\{guid}\\Description", "Type") \
        if key_exists(hive, f"Objects\\{guid}\\Description") else None
    if obj_type is None:
        raise HiveError(f"{hive}: the default object {guid} does not exist in Objects")
    number = struct.unpack("<I", obj_type.data[:4])[0]
    if number != OBJECT_TYPE_OSLOADER:
        raise HiveError(f"{hive}: the default object {guid} has type {number:#010x}, not a Windows OS "
                        f"loader ({OBJECT_TYPE_OSLOADER:#010x})")
    return guid


def get_safeboot(hive: Path) -> str | None:
    """The default loader's safe boot mode (minimal, network, dsrepair) or None."""
    key = _element_key(default_loader(hive), ELEMENT_SAFEBOOT)
    if not key_exists(hive, key):
        return None
    value = read_value(hive, key, "Element")
    if value is None or value.type != REG_BINARY:
        raise HiveError(f"{hive}: {key} has no REG_BINARY Element value")
    number = int.from_bytes(value.data[:8].ljust(8, b"\0"), "little")
    for mode, code in SAFEBOOT_MODES.items():
        if code == number:
            return mode
    raise HiveError(f"{hive}: {key} holds safe boot mode {number}, which is none of {SAFEBOOT_MODES}")


def set_safeboot(hive: Path, mode: str = "minimal") -> str:
    """`bcdedit /set {default} safeboot <mode>`, offline. Returns the loader's GUID."""
    code = _check_mode(mode)
    loader = default_loader(hive)
    write_values(hive, _element_key(loader, ELEMENT_SAFEBOOT),
                 {"Element": Value(REG_BINARY, code.to_bytes(8, "little"))})
    return loader


def clear_safeboot(hive: Path) -> bool:
    """`bcdedit /deletevalue {default} safeboot`, offline. False when it was not set."""
    return delete_key(hive, _element_key(default_loader(hive), ELEMENT_SAFEBOOT))


# ------------------------------------------------------------------ the ESP (guestfish)


def run_guestfish(disk: Path, script: str, readonly: bool, timeout: float = GUESTFISH_TIMEOUT_S) -> str:
    """Run a guestfish script on `disk` (the machine must be off). Errors name the disk."""
    if not disk.is_file():
        raise InputFileError(f"{disk}: disk image not found")
    argv = [_tool("guestfish", GUESTFISH_FIX), "--ro" if readonly else "--rw", "-a", str(disk)]
    try:
        proc = subprocess.run(argv, input="run\n" + script, capture_output=True, text=True,
                              timeout=timeout, env=guestfish_env())
    except subprocess.TimeoutExpired:
        raise InfraError(f"{disk}: guestfish did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise InfraError(f"{disk}: guestfish failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def fetch_esp_file(disk: Path, dest: Path, path: str = ESP_BCD_PATH, partition: int = ESP_PARTITION) -> Path:
    """Copy `path` (default the BCD store) out of the disk's EFI system partition."""
    out = run_guestfish(disk, f"vfs-type /dev/sda{partition}\nmount-ro /dev/sda{partition} /\n"
                              f"download {path} {dest}\n", readonly=True)
    fs = out.strip().splitlines()[0] if out.strip() else ""
    if fs != "vfat":
        raise InputFileError(f"{disk}: partition {partition} is {fs or 'not'} a FAT file system, not the EFI "
                             "system partition: pass partition= (autounattend.xml.j2 makes it partition 1)")
    return dest


def put_esp_file(disk: Path, src: Path, path: str = ESP_BCD_PATH, partition: int = ESP_PARTITION) -> None:
    """Replace `path` on the disk's ESP with `src`, then read it back and compare."""
    with tempfile.TemporaryDirectory(prefix="esp-") as tmp:
        back = Path(tmp) / "readback"
        run_guestfish(disk, f"mount /dev/sda{partition} /\nupload {src} {path}\nsync\n"
                            f"download {path} {back}\n", readonly=False)
        if back.read_bytes() != src.read_bytes():
            raise InfraError(f"{disk}: {path} on partition {partition} differs from {src} after the upload")
