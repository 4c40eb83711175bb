"""Template values for a Windows machine: vm-templates/windows/domain.xml.j2.

    values = windows_domain_values(
        "win11", domain_type="kvm", name="harness-r1-0", run_id="r1", test_id="t::x",
        artifacts=artifacts, disk=create_overlay(golden, artifacts / "disk.qcow2"),
        cdroms=[Cdrom(winpe_iso, boot_order=1)], disk_boot_order=2, network="user")
    xml = render(WINDOWS_TEMPLATE, **values)

It finds the host's OVMF (Debian's `ovmf` package), gives the machine its own copy of
the UEFI variable store in its artifacts directory (kept across the machine's
boots: Windows writes its boot entries there), and checks every choice, so a
wrong value is a ConfigError naming it rather than a domain libvirt refuses.
Nothing here talks to libvirt; see vm-templates/windows/README.md.

Firmware per edition (the reasons: docs/windows-recovery.md, "Firmware"):

* win10, server2022: `OVMF_CODE_4M.fd` + `OVMF_VARS_4M.fd`, no Secure Boot support
  at all (no SMM needed), so test-signed boot drivers load.
* win11: `OVMF_CODE_4M.secboot.fd` + the *empty* `OVMF_VARS_4M.fd` (Debian's
  50-edk2-x86_64-secure.json pairs them): the firmware is Secure Boot capable
  (the `SecureBoot` variable exists, value 0) but no Platform Key is enrolled, so
  it stays in Setup Mode and verifies nothing. Windows 11's requirement is
  "UEFI, Secure Boot capable" and TPM 2.0 (swtpm): setup's checks have what they
  look for, and the test-signed driver still loads, with one firmware for the
  install and every later boot (no switch, so the variable store saved with the
  golden image fits). The code needs SMM (`<smm state='on'/>`, loader
  `secure='yes'`). Checked here: an OVMF boot of this pair to its UEFI shell,
  whose `dmpstore` shows SecureBoot=0 and SetupMode=1 (tests/test_windows_templates.py).
  Not `OVMF_VARS_4M.ms.fd`: Microsoft's keys enrolled turn Secure Boot on, and a
  test-signed boot-start driver is then refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InfraError

WINDOWS_TEMPLATE = "windows/domain.xml.j2"
NVRAM_NAME = "OVMF_VARS.fd"  # the machine's variable store, in its artifacts directory

# Secure Boot off on purpose (the .ms/.snakeoil variants have it on):
# test-signed boot-start drivers load only with TESTSIGNING and Secure Boot off.
OVMF_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),  # Debian 12, Ubuntu 22.04+
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),  # older Debian/Ubuntu (2 MiB)
    ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),  # Fedora
)
# Secure Boot capable but not enforcing: the SMM build with an empty variable store
# (no PK: Setup Mode), for Windows 11's setup checks.
OVMF_SECBOOT_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),  # Debian 12, Ubuntu 22.04+
    ("/usr/share/OVMF/OVMF_CODE.secboot.fd", "/usr/share/OVMF/OVMF_VARS.fd"),  # older Debian/Ubuntu (2 MiB)
    ("/usr/share/edk2/ovmf/OVMF_CODE.secboot.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),  # Fedora
)
OVMF_FIX = "install Debian's ovmf package (apt-get install ovmf)"
SWTPM_FIX = "install Debian's swtpm and swtpm-tools packages (apt-get install swtpm swtpm-tools)"

DISK_BUSES = {
    "virtio": "virtio-blk: Windows needs viostor from the virtio-win ISO",
    "scsi": "virtio-scsi: Windows needs vioscsi from the virtio-win ISO (passes discard/TRIM)",
    "sata": "AHCI: Windows' inbox driver, no virtio-win needed (slower)",
}
# The recovery boot (WinPE/WinRE from the recovery medium) sees the disk on SATA: WinPE
# has Microsoft's AHCI driver (storahci) inbox and no virtio one, so recover.cmd finds
# the Windows volume without third-party files (docs/windows-recovery.md, "Disk bus").
RECOVERY_DISK_BUS = "sata"
NIC_MODELS = {
    "virtio-net-pci": "Windows needs NetKVM from the virtio-win ISO",
    "e1000e": "Windows' inbox driver",
}
NETWORKS = ("none", "user")
LIFECYCLE_ACTIONS = ("destroy", "restart", "preserve", "rename-restart", "coredump-destroy", "coredump-restart")
MIN_MEMORY_MIB = 256  # OVMF on q35 needs this much; Windows itself needs 2048 (win11: 4096)
MAX_CDROMS = 5  # the q35 AHCI controller has six ports


@dataclass(frozen=True)
class Edition:
    name: str
    title: str
    osinfo_id: str  # libosinfo's id, for virt-manager and virt-install
    tpm: bool  # a TPM 2.0 by default (Windows 11 setup checks for one)
    memory_mib: int  # Microsoft's minimum for the edition
    vcpus: int
    secure_boot_capable: bool = False  # firmware with Secure Boot support, not enforcing (win11 setup checks)


EDITIONS: dict[str, Edition] = {
    "win10": Edition("win10", "Windows 10", "http://microsoft.com/win/10", tpm=False, memory_mib=2048, vcpus=2),
    "win11": Edition("win11", "Windows 11", "http://microsoft.com/win/11", tpm=True, memory_mib=4096, vcpus=2,
                     secure_boot_capable=True),
    "server2022": Edition("server2022", "Windows Server 2022", "http://microsoft.com/win/2k22", tpm=False,
                          memory_mib=2048, vcpus=2),
}


@dataclass(frozen=True)
class Firmware:
    code: Path  # read-only pflash unit 0, shared by every machine
    vars_template: Path  # copied per machine into its artifacts directory
    smm: bool = False  # the code is the Secure Boot capable build, which needs SMM (loader secure='yes')


@dataclass(frozen=True)
class Cdrom:
    """A SATA CD-ROM drive: install media, virtio-win, WinPE; `path` None is an empty drive."""
    path: Path | None
    boot_order: int | None = None


def find_ovmf(candidates: Iterable[tuple[str, str]] | None = None, *, secure_boot_capable: bool = False) -> Firmware:
    """The first OVMF code/vars pair present on this host: without Secure Boot support,
    or (`secure_boot_capable`) the SMM build with an empty variable store (capable, not
    enforcing: no keys enrolled)."""
    if candidates is None:
        candidates = OVMF_SECBOOT_CANDIDATES if secure_boot_capable else OVMF_CANDIDATES
    candidates = list(candidates)
    for code, template in candidates:
        if Path(code).is_file() and Path(template).is_file():
            return Firmware(Path(code), Path(template), smm=secure_boot_capable)
    tried = ", ".join(code for code, _ in candidates)
    raise InfraError(f"no UEFI firmware for Windows guests (looked for {tried}): {OVMF_FIX}")


def find_swtpm() -> Path:
    """swtpm, which libvirt starts for a TPM 2.0 (swtpm_setup creates its state)."""
    for tool in ("swtpm", "swtpm_setup"):
        if shutil.which(tool) is None:
            raise InfraError(f"{tool} not found, needed for the TPM 2.0 of a Windows 11 guest: {SWTPM_FIX}")
    return Path(shutil.which("swtpm") or "swtpm")


def check_host(tpm: bool, secure_boot_capable: bool = False) -> None:
    """Raise InfraError naming the Debian package when this host cannot boot such a domain:
    OVMF always (its Secure Boot capable build for win11), swtpm when the domain has a
    TPM. (Rendering needs neither.)"""
    find_ovmf(secure_boot_capable=secure_boot_capable)
    if tpm:
        find_swtpm()


def create_overlay(golden: Path, overlay: Path, golden_format: str | None = None) -> Path:
    """A qcow2 overlay over the golden image (which is never written): every test starts clean."""
    if not golden.is_file():
        raise ConfigError(f"{golden}: golden image not found")
    fmt = golden_format or _image_format(golden)
    overlay.unlink(missing_ok=True)
    proc = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(golden.resolve()), "-F", fmt,
                           str(overlay)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise InfraError(f"{overlay}: qemu-img create failed: {proc.stderr.strip()}")
    return overlay


def _image_format(image: Path) -> str:
    with open(image, "rb") as handle:
        return "qcow2" if handle.read(4) == b"QFI\xfb" else "raw"


def _choice(key: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(f"{WINDOWS_TEMPLATE}: {key}: {value!r} is not one of {', '.join(map(str, allowed))}")


def _prepare_nvram(nvram: Path, firmware: Firmware, nvram_from: Path | None) -> None:
    """The machine's variable store: from `nvram_from` (a golden image's saved store) when
    given, else from the firmware's template when the machine has none yet."""
    source = nvram_from if nvram_from is not None else (None if nvram.exists() else firmware.vars_template)
    if source is None:
        return
    if not source.is_file():
        raise ConfigError(f"{source}: UEFI variable store not found")
    if source.stat().st_size != firmware.vars_template.stat().st_size:
        raise ConfigError(f"{source}: {source.stat().st_size} bytes, but {firmware.code.name} needs a "
                          f"{firmware.vars_template.stat().st_size}-byte variable store like {firmware.vars_template}")
    tmp = nvram.with_name(f".{nvram.name}.tmp-{os.getpid()}")
    shutil.copyfile(source, tmp)
    os.replace(tmp, nvram)


def windows_domain_values(
    edition: str, *, domain_type: str, name: str, run_id: str, test_id: str, artifacts: Path,
    disk: Path, disk_format: str | None = None, disk_bus: str = "virtio", disk_boot_order: int | None = 1,
    cdroms: Sequence[Cdrom] = (), network: str = "none", ssh_port: int | None = None,
    nic_model: str = "virtio-net-pci", memory_mib: int | None = None, vcpus: int | None = None,
    tpm: bool | None = None, panic_hyperv: bool = True, pvpanic: bool = True,
    on_reboot: str = "restart", on_crash: str = "restart", nvram_from: Path | None = None,
    firmware: Firmware | None = None, owner_pid: int | None = None,
) -> dict[str, Any]:
    """Every value vm-templates/windows/domain.xml.j2 needs, checked; creates the machine's
    UEFI variable store in `artifacts` (a copy, kept if it exists unless `nvram_from`).
    Before booting, check_host(values["tpm"]) tells whether this host has OVMF and swtpm.

    `domain_type` comes from harness.vm.accel.choose_domain_type(): `kvm` on a real host,
    `qemu` (TCG) here, where the template leaves out what TCG refuses. `network` "user"
    forwards 127.0.0.1:`ssh_port` (a free port when None) to the guest's port 22."""
    _choice("edition", edition, EDITIONS)
    _choice("domain_type", domain_type, ("kvm", "qemu"))
    _choice("disk_bus", disk_bus, DISK_BUSES)
    _choice("network", network, NETWORKS)
    _choice("nic_model", nic_model, NIC_MODELS)
    _choice("on_reboot", on_reboot, ("destroy", "restart"))
    _choice("on_crash", on_crash, LIFECYCLE_ACTIONS)
    spec = EDITIONS[edition]
    memory = spec.memory_mib if memory_mib is None else memory_mib
    if memory < MIN_MEMORY_MIB:
        raise ConfigError(f"{WINDOWS_TEMPLATE}: memory_mib: {memory} is too small (OVMF needs {MIN_MEMORY_MIB})")
    cpus = spec.vcpus if vcpus is None else vcpus
    if cpus < 1:
        raise ConfigError(f"{WINDOWS_TEMPLATE}: vcpus: {cpus} is too small")
    if len(cdroms) > MAX_CDROMS:
        raise ConfigError(f"{WINDOWS_TEMPLATE}: cdroms: {len(cdroms)} drives, the SATA controller takes "
                          f"{MAX_CDROMS} beside the disk")
    orders = [o for o in [disk_boot_order, *(c.boot_order for c in cdroms)] if o is not None]
    if any(o < 1 for o in orders) or len(orders) != len(set(orders)):
        raise ConfigError(f"{WINDOWS_TEMPLATE}: boot orders must be distinct positive numbers, got {orders}")
    if network == "none" and ssh_port is not None:
        raise ConfigError(f"{WINDOWS_TEMPLATE}: ssh_port {ssh_port} given with network 'none'")
    if network == "user" and ssh_port is None:
        from ..vm.ssh import free_port

        ssh_port = free_port()
    if not disk.is_file():
        raise ConfigError(f"{disk}: disk image not found (create_overlay() makes one from the golden image)")
    for cdrom in cdroms:
        if cdrom.path is not None and not cdrom.path.is_file():
            raise ConfigError(f"{cdrom.path}: CD-ROM image not found")
    want_tpm = spec.tpm if tpm is None else tpm
    fw = firmware or find_ovmf(secure_boot_capable=spec.secure_boot_capable)
    nvram = artifacts / NVRAM_NAME
    _prepare_nvram(nvram, fw, nvram_from)
    disk_target = "vda" if disk_bus == "virtio" else "sda"
    return dict(
        domain_type=domain_type, name=name, family="windows", edition=edition, osinfo_id=spec.osinfo_id,
        run_id=run_id, test_id=test_id, artifacts=str(artifacts), owner_pid=owner_pid or os.getpid(),
        memory_mib=memory, vcpus=cpus,
        ovmf_code=str(fw.code), firmware_smm=fw.smm, ovmf_vars_template=str(fw.vars_template), nvram=str(nvram),
        disk={"path": str(disk), "format": disk_format or _image_format(disk), "bus": disk_bus,
              "target": disk_target, "boot_order": disk_boot_order},
        # sdb, sdc, ...: SATA ports 1..5 (port 0 stays free for a SATA disk)
        cdroms=[{"path": str(c.path) if c.path else None, "target": f"sd{chr(ord('b') + i)}",
                 "boot_order": c.boot_order} for i, c in enumerate(cdroms)],
        serial_log=str(artifacts / "com1.log"), marker_log=str(artifacts / "com2.log"),
        panic_hyperv=panic_hyperv, pvpanic=pvpanic, tpm=want_tpm,
        on_reboot=on_reboot, on_crash=on_crash,
        ssh_port=ssh_port, nic_model=nic_model,
    )
