"""The Linux reference guest behind the generic Machine.

One raw ext4 data disk per machine (content/ and the run's SSH key), the guest's
kernel and initramfs from the cached build, COM1 as the only console. Safe mode
is a kernel command-line switch; the recovery environment is a second initramfs;
both get their script on a recovery medium attached as the second disk (vdb).
"""

from __future__ import annotations

from pathlib import Path


from ..driver import DriverSpec
from ..errors import CrashDetected, InfraError
from ..families.linux import LinuxFamily
from ..vm.backend import ConsolePort, MachineView
from ..vm.ssh import public_line
from ..vm.templates import render
from .datadisk import build_data_disk, read_content_dir
from .linux_ref import VENDOR_DRIVER, ReferenceGuest
from .recovery import SAMPLE_SCRIPT, build_recovery_medium


CONTENT_DIR = "/data/content"


class LinuxBackend:
    ssh_user = "root"

    def __init__(self, guest: ReferenceGuest, driver: DriverSpec | None = None) -> None:
        self.guest = guest
        self.driver = driver  # a vendor's module; None: the sample sensor
        self.family = LinuxFamily(driver=driver)
        self.medium: Path | None = None  # a recovery medium attached as the second disk (vdb)
        self.extra_cmdline = ""  # appended to the guest kernel command line from the next boot

    def login_key(self) -> None:
        return None  # a new key per machine, on its data disk

    def data_disk(self, machine: MachineView) -> Path:
        return machine.artifacts / "data-disk.img"

    def disks(self, machine: MachineView) -> tuple[Path, ...]:
        return (self.data_disk(machine),)

    def consoles(self, machine: MachineView) -> tuple[ConsolePort, ...]:
        return (ConsolePort(None, machine.artifacts / "serial.log"),)

    def prepare_first_boot(self, machine: MachineView) -> None:
        key = public_line(machine.client_key) if machine.client_key else None
        build_data_disk(self.data_disk(machine), machine.spec.content, authorized_keys=key,
                        extra=self._driver_files())

    def _driver_files(self) -> dict[str, bytes]:
        """A vendor's driver, installed on the machine's own disk (the init loads it from there)."""
        if self.driver is None:
            return {}
        return {"harness/driver/driver.ko": Path(self.driver.module).read_bytes(),
                "harness/driver/params": f"{self.driver.params}\n".encode(),
                "harness/driver/content_dir": f"{self.driver.content_dir}\n".encode()}

    def domain_xml(self, machine: MachineView, mode: str) -> str:
        disks = [{"path": str(self.data_disk(machine)), "format": "raw", "target": "vda", "readonly": False}]
        if self.medium is not None:
            disks.append({"path": str(self.medium), "format": "raw", "target": "vdb", "readonly": True})
        profile = machine.profile
        return render(
            profile.domain_template, domain_type=machine.domain_type, name=machine.name, family="linux",
            run_id=machine.spec.run_id, test_id=machine.spec.test_id, artifacts=str(machine.artifacts),
            owner_pid=machine.owner_pid, memory_mib=profile.memory_mib, vcpus=profile.vcpus,
            kernel=str(self.guest.kernel),
            initrd=str(self.guest.recovery_initrd if mode == "recovery" else self.guest.initrd),
            cmdline=self.guest.cmdline(sensor=VENDOR_DRIVER if self.driver else machine.sensor, mode=mode,
                                       net=machine.network,
                                       extra=self.extra_cmdline),
            on_reboot="restart", on_crash="restart", pvpanic=True,
            disks=disks, serial_log=str(machine.serial_log), ssh_port=machine.ssh_port)

    def crash_lines(self, machine: MachineView) -> list[str]:
        return []  # the kernel's whole report is on the console

    def host_key(self, machine: MachineView) -> Path:
        return self.guest.host_key_pub

    def put_content_online(self, machine: MachineView, name: str, data: bytes) -> None:
        result = machine.run(f"cat > {CONTENT_DIR}/{name}.part && mv {CONTENT_DIR}/{name}.part "
                             f"{CONTENT_DIR}/{name} && sync", stdin=data)
        if result.rc != 0:
            raise InfraError(f"writing {name} over ssh failed (rc {result.rc}): {result.stderr.strip()} "
                             f"(artifacts: {machine.artifacts})")

    def reload_content(self, machine: MachineView) -> None:
        if self.driver is None:
            command = "echo 1 > /sys/module/harness_sensor/parameters/reload"
        else:  # a vendor module reads its content when it loads: load it again
            command = (f"rmmod {self.driver.module_name} && "
                       f"insmod /data/harness/driver/driver.ko {self.driver.params}")
        try:
            machine.transport(timeout=5).run(command)
        except (InfraError, CrashDetected):
            pass  # a crashing guest takes the session with it: the monitor tells what happened

    def content_listing(self, machine: MachineView) -> dict[str, bytes]:
        return read_content_dir(self.data_disk(machine))

    def sample_recovery_script(self, path: str) -> Path:
        return SAMPLE_SCRIPT

    def prepare_recovery(self, machine: MachineView, path: str, workdir: Path, script: Path,
                         bad_update: list[tuple[str, str]]) -> None:
        self.medium = workdir / "medium.img"
        build_recovery_medium(self.medium, script, bad_update)

    def finish_recovery(self, machine: MachineView, path: str) -> None:
        self.medium = None
