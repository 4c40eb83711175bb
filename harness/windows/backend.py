"""A Windows guest behind the generic Machine: an overlay of the golden image.

* Disk: `disk.qcow2`, a qcow2 overlay of the read-only golden image, made at the
  first boot; content placed before that boot goes into the overlay's NTFS
  volume offline (offline.py, libguestfs) -- the boot-start case.
* Firmware: the machine's own copy of the UEFI variable store (`OVMF_VARS.fd`),
  first copied from the store saved with the golden image (its boot entries).
* Ports: COM1 carries EMS/SAC (the boot banner, the BLUESCREEN record) and is the
  primary console; COM2 carries the `HARNESS-` markers of the image's startup
  task (vm-templates/windows/setup/boot-marker.ps1): for a vendor driver, its state and
  the values under its service key, which the profile's `ready`/`rejected` match
  (docs/windows-vendor-driver.md).
* Content: into the driver's content directory (a vendor's `content_dir`, else the
  sample's C:\\Windows\\System32\\drivers\\HarnessSensor), offline or over SFTP; the
  recovery scripts get the same directory.
* Bugcheck parameters: at a CRASHED event, the `panic hyper-v: arg1=...` line
  libvirt wrote to the domain log (read locally: qemu:///system only) joins the
  console text, so the crash report has the STOP code and its parameters.
* SSH: user `harness` with the golden image's key (its manifest names it); the
  guest's host key is pinned from COM2's `HARNESS-SSH-HOSTKEY` line of this boot
  (COM2 is written inside the guest by SYSTEM and read by the host only).
"""

from __future__ import annotations

import re
from pathlib import Path

import paramiko

from ..driver import DriverSpec
from ..errors import ConfigError, HarnessError
from ..families.windows import WindowsFamily
from ..vm.backend import ConsolePort, MachineView
from ..vm.connection import domain_log_path
from ..vm.templates import render
from .domain import NVRAM_NAME, RECOVERY_DISK_BUS, WINDOWS_TEMPLATE, Cdrom, create_overlay, windows_domain_values
from .golden import WindowsGolden
from .package import SAMPLE_CONTENT_DIR
from .powershell import PORT_NAME, RELOAD_SCRIPT, VENDOR_RELOAD_SCRIPT


HOST_KEY_RE = re.compile(r"HARNESS-SSH-HOSTKEY (?P<type>[\w@.-]+) (?P<key>[A-Za-z0-9+/=]+)")
# Online reload: the driver re-reads its content directory when a client sends a message to
# its FltMgr communication port (powershell.RELOAD_SCRIPT; the port admits administrators and
# SYSTEM, which the harness account is), so the hardened build keeps its last good content.
# Not `fltmc unload` + `load`: a new image starts with no content to keep.
RELOAD_COMMAND = RELOAD_SCRIPT
RELOAD_ARGS = {"PortName": PORT_NAME}


class WindowsBackend:
    ssh_user = "harness"

    def __init__(self, golden: WindowsGolden, driver: DriverSpec | None = None) -> None:
        self.golden = golden
        self.driver = driver  # a vendor's driver installed in the image; None: the sample sensor
        self.family = WindowsFamily(driver=driver)
        # where content goes: the vendor's directory, or the sample's (setup creates both)
        self.content_dir = driver.content_dir if driver is not None else SAMPLE_CONTENT_DIR
        self.medium: Path | None = None  # a recovery medium (WinPE ISO) on a CD-ROM, boot order 1
        self.recovery_path: str | None = None  # set between prepare_recovery() and finish_recovery()
        self._log_offset = 0

    # ----------------------------------------------------------- disks, ports

    def overlay(self, machine: MachineView) -> Path:
        return machine.artifacts / "disk.qcow2"

    def disks(self, machine: MachineView) -> tuple[Path, ...]:
        return (self.overlay(machine), machine.artifacts / NVRAM_NAME)

    def consoles(self, machine: MachineView) -> tuple[ConsolePort, ...]:
        return (ConsolePort(None, machine.artifacts / "com1.log"),
                ConsolePort("serial1", machine.artifacts / "com2.log", markers_only=True))

    def login_key(self) -> paramiko.PKey | None:
        key = self.golden.ssh_key
        if key is None:
            raise ConfigError(f"{self.golden.manifest_path}: ssh_key: the manifest names no SSH key; rebuild "
                              "the image with --force")
        try:
            return paramiko.PKey.from_path(key) if hasattr(paramiko.PKey, "from_path") else \
                paramiko.Ed25519Key.from_private_key_file(str(key))
        except (OSError, paramiko.SSHException) as exc:
            raise ConfigError(f"{key}: the golden image's SSH key cannot be read ({exc}); it is written "
                              "beside the image by `harness image build windows`") from None

    # ------------------------------------------------------------------ boot

    def prepare_first_boot(self, machine: MachineView) -> None:
        overlay = create_overlay(self.golden.image, self.overlay(machine))
        if machine.spec.content:
            from .offline import place_content

            place_content(overlay, machine.spec.content, content_dir=self.content_dir)

    def domain_xml(self, machine: MachineView, mode: str) -> str:
        if mode == "safe" and self.recovery_path != "safe-mode":
            raise HarnessError("a Windows safe-mode boot is set in the machine's BCD, not by the domain: "
                               "use machine.recover('safe-mode')")
        cdroms = [Cdrom(self.medium, boot_order=1)] if mode == "recovery" and self.medium else []
        nvram = machine.artifacts / NVRAM_NAME
        profile = machine.profile
        values = windows_domain_values(
            self.golden.edition, domain_type=machine.domain_type, name=machine.name, run_id=machine.spec.run_id,
            test_id=machine.spec.test_id, artifacts=machine.artifacts, disk=self.overlay(machine),
            disk_boot_order=2 if cdroms else 1, cdroms=cdroms, disk_bus=RECOVERY_DISK_BUS if cdroms else "virtio",
            network="user" if machine.network else "none", ssh_port=machine.ssh_port,
            memory_mib=profile.memory_mib, vcpus=profile.vcpus,
            nvram_from=self.golden.nvram if not nvram.exists() else None, owner_pid=machine.owner_pid)
        return render(WINDOWS_TEMPLATE, **values)

    def crash_lines(self, machine: MachineView) -> list[str]:
        """New `panic hyper-v` lines of the domain log (libvirt writes them as QEMU reports the
        guest panic, before the CRASHED event). Empty for a remote host: its log is not here."""
        log = domain_log_path(machine.profile.uri, machine.name)
        if log is None:
            return []
        try:
            with open(log, "rb") as handle:
                handle.seek(self._log_offset)
                text = handle.read().decode("utf-8", "replace")
                self._log_offset = handle.tell()
        except OSError:
            return []
        return [line for line in text.splitlines() if "panic hyper-v" in line or "HV crash" in line]

    # ------------------------------------------------------------------- ssh

    def host_key(self, machine: MachineView) -> Path:
        """The host key this boot's startup task printed on COM2, written to the artifacts."""
        match = machine.expect_marker(HOST_KEY_RE, timeout=machine.profile.timeouts.boot)
        path = machine.artifacts / "ssh_host_key.pub"
        path.write_text(f"{match['type']} {match['key']}\n")
        return path

    def put_content_online(self, machine: MachineView, name: str, data: bytes) -> None:
        from .powershell import content_path

        shell = machine.transport()  # a bugcheck during the transfer is reported as the bugcheck
        try:
            shell.put(data, content_path(name, self.content_dir))  # /C:/... : Windows OpenSSH's SFTP names
        finally:
            shell.close()

    def reload_content(self, machine: MachineView) -> None:
        from ..vm.transport import CrashDuringCommand
        from .powershell import run_powershell

        # a vendor driver: FltMgr's unload + load (or sc stop + start), then its lines again
        script, args = (RELOAD_COMMAND, RELOAD_ARGS) if self.driver is None else (VENDOR_RELOAD_SCRIPT, {})
        try:
            run_powershell(machine.transport(timeout=60), script, args, timeout=180)
        except CrashDuringCommand:
            pass  # the guest bugchecked under the reload, as content may make it: the monitor judges

    # -------------------------------------------------------------- recovery

    def content_listing(self, machine: MachineView) -> dict[str, bytes]:
        from .offline import read_content

        return read_content(self.overlay(machine), content_dir=self.content_dir)

    def sample_recovery_script(self, path: str) -> Path:
        from .recovery_plan import sample_script

        return sample_script(path)

    def prepare_recovery(self, machine: MachineView, path: str, workdir: Path, script: Path,
                         bad_update: list[tuple[str, str]]) -> None:
        from .recovery_plan import prepare_windows_recovery

        profile = machine.profile
        self.recovery_path = path
        self.medium = prepare_windows_recovery(
            self.overlay(machine), path, workdir, script, bad_update,
            media=Path(profile.winpe_media) if profile.winpe_media else None,
            bitlocker_password=_read_secret(profile.bitlocker_password_file, "bitlocker_password_file"),
            autologon=self._autologon(), content_dir=self.content_dir)

    def _autologon(self) -> tuple[str, str] | None:
        """The image's administrator, for the one logon that runs RunOnce in Safe Mode."""
        password = _read_secret(str(self.golden.manifest.get("admin_password_file") or ""), "admin_password_file")
        return (str(self.golden.manifest.get("admin_user") or "harness"), password) if password else None

    def finish_recovery(self, machine: MachineView, path: str) -> None:
        from .recovery_plan import finish_windows_recovery

        finish_windows_recovery(self.overlay(machine), path)
        if self.medium is not None and machine.profile.bitlocker_password_file:
            self.medium.unlink(missing_ok=True)  # it holds the recovery password: not an artifact to keep
        self.medium = None
        self.recovery_path = None


def _read_secret(path: str, what: str) -> str | None:
    """The first line of a secret file (never logged), or None when `path` is empty."""
    if not path:
        return None
    try:
        return Path(path).read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        raise ConfigError(f"{path}: {what}: cannot read the secret (a file with one line)") from None
