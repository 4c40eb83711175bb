"""The Windows golden-image recipe: ISO in, read-only golden qcow2 out.

    golden = build_windows_image(ImageRequest(iso=..., virtio_win=..., edition="win11", out=out))

1. check the inputs (each problem is one ConfigError/InputFileError naming the file
   and the fix: the CLI prints it and exits 2);
2. render autounattend.xml and build the install-answer medium (media.py) with the
   setup scripts, the signed sensor, the test certificate and a fresh SSH key;
3. create a blank qcow2 disk (<image>.building.qcow2);
4. start the *installer domain* with the media attached, installer first in the boot
   order (for Windows: vm-templates/windows/domain.xml.j2 via windows_domain_values();
   tests pass a Linux reference-guest stand-in through `installer=`);
5. show progress (elapsed, domain state, last COM2 marker) until COM2 shows
   HARNESS-IMAGE-READY and the domain has shut itself off (or HARNESS-SETUP-ERROR,
   the domain stopping early, or the timeout: the build fails, the domain is destroyed);
6. stamp the image golden: renamed to <image>.qcow2, chmod 0444, sha256 and the inputs
   in <image>.golden.json (0444), the UEFI variable store beside it.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import shutil
import string
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..artifacts import sha256_file
from ..errors import ConfigError, InfraError, InputFileError, VmError
from ..paths import DRIVERS_BUILD, driver_tree
from .domain import EDITIONS, NVRAM_NAME, Cdrom, find_ovmf

Progress = Callable[[str], None]

READY_MARKER = "HARNESS-IMAGE-READY"
ERROR_MARKER = "HARNESS-SETUP-ERROR"
MARKER_RE = re.compile(r"HARNESS-[A-Z-]+\b.*")
SENSOR_BUILDS = ("vulnerable", "hardened")
DEFAULT_TIMEOUT = 4 * 3600.0
DEFAULT_SHUTDOWN_TIMEOUT = 600.0
DEFAULT_DISK_GIB = 64  # Windows 11's minimum
ISO_MAGIC_OFFSET = 0x8001  # "CD001" of the primary volume descriptor
# The Windows ISO's EFI loader asks "Press any key to boot from CD or DVD" and falls
# through to the next device when nobody does: the first boot gets key presses.
BOOT_KEY = 57  # KEY_SPACE, linux codeset
DEFAULT_PRESS_KEYS_S = 45.0


@dataclass
class ImageRequest:
    iso: Path
    virtio_win: Path
    edition: str = "win11"
    image_index: int = 1
    out: Path = Path("build/images")
    sensor: str = "vulnerable"
    product_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    disk_gib: int = DEFAULT_DISK_GIB
    force: bool = False
    uri: str = "qemu:///system"
    accel: str = "auto"
    name: str | None = None  # image file stem; default windows-<edition>-<sensor>
    poll_interval: float = 2.0
    progress_interval: float = 30.0

    @property
    def stem(self) -> str:
        return self.name or f"windows-{self.edition}-{self.sensor}"


@dataclass(frozen=True)
class BuildPaths:
    image: Path  # the golden image, once stamped
    building: Path  # the disk while the install runs
    manifest: Path  # <image>.golden.json
    answer_iso: Path
    password: Path
    ssh_key: Path
    artifacts: Path  # domain.xml, com1.log, com2.log, OVMF_VARS.fd
    nvram: Path  # <image>.OVMF_VARS.fd

    @classmethod
    def for_request(cls, req: ImageRequest) -> "BuildPaths":
        out, stem = req.out.resolve(), req.stem
        return cls(image=out / f"{stem}.qcow2", building=out / f"{stem}.building.qcow2",
                   manifest=out / f"{stem}.qcow2.golden.json", answer_iso=out / f"{stem}.answer.iso",
                   password=out / f"{stem}.admin-password", ssh_key=out / f"{stem}.ssh-key",
                   artifacts=out / f"{stem}.build", nvram=out / f"{stem}.qcow2.{NVRAM_NAME}")


@dataclass(frozen=True)
class InstallerDomain:
    """What the orchestration starts: the domain XML and where its COM2 markers are logged."""
    xml: str
    name: str
    marker_log: Path
    press_keys_s: float = 0.0  # send BOOT_KEY every 2 s for this long after the start


# (request, paths, answer medium) -> the installer domain
InstallerFactory = Callable[[ImageRequest, BuildPaths, Path], InstallerDomain]


@dataclass
class GoldenImage:
    image: Path
    manifest: Path
    sha256: str
    elapsed_s: float
    markers: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ inputs

def check_iso(path: Path, what: str, fix: str) -> None:
    if not path.exists():
        raise InputFileError(f"{path}: {what} not found: {fix}")
    if not path.is_file():
        raise InputFileError(f"{path}: {what} is not a file: {fix}")
    with open(path, "rb") as handle:
        handle.seek(ISO_MAGIC_OFFSET)
        if handle.read(5) != b"CD001":
            raise InputFileError(f"{path}: {what} is not an ISO 9660 image (no CD001 volume descriptor "
                                 f"at 0x8001): {fix}")


def sensor_files(build: str, progress: Progress) -> tuple[Path, Path, Path]:
    """(signed harnessflt.sys, harnessflt.inf, test certificate .cer), built if missing."""
    signed = DRIVERS_BUILD / "windows" / build / "signed"
    cert = DRIVERS_BUILD / "windows" / "testcert" / "harness-test-signing.cer"
    wanted = (signed / "harnessflt.sys", signed / "harnessflt.inf", cert)
    if not all(p.is_file() for p in wanted):
        progress("image: building the signed sensor: make -C drivers windows sign")
        proc = subprocess.run(["make", "--no-print-directory", "-C", str(driver_tree()), "windows", "sign"],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
            raise InfraError(f"make -C drivers windows sign failed (exit {proc.returncode}): {tail}")
        missing = [str(p) for p in wanted if not p.is_file()]
        if missing:
            raise InfraError(f"make -C drivers windows sign succeeded but {', '.join(missing)} is missing")
    return wanted


def check_request(req: ImageRequest, paths: BuildPaths) -> None:
    if req.edition not in EDITIONS:
        raise ConfigError(f"--edition {req.edition!r}: not one of {', '.join(EDITIONS)}")
    if req.sensor not in SENSOR_BUILDS:
        raise ConfigError(f"--sensor {req.sensor!r}: not one of {', '.join(SENSOR_BUILDS)}")
    if req.image_index < 1:
        raise ConfigError(f"--image-index {req.image_index}: must be >= 1 (dism /Get-ImageInfo lists them)")
    check_iso(req.iso, "Windows install ISO", "pass the Windows ISO downloaded from Microsoft with --iso")
    check_iso(req.virtio_win, "virtio-win ISO",
              "pass the virtio-win driver ISO (Fedora's virtio-win.iso) with --virtio-win")
    for existing in (paths.image, paths.manifest):
        if existing.exists() and not req.force:
            raise InputFileError(f"{existing}: a golden image exists already: pass --force to replace it "
                                 f"(or --out another directory)")
    find_ovmf()  # InfraError naming Debian's ovmf package


def _password() -> str:
    # Satisfies the default complexity policy (upper, lower, digit, symbol) of Server 2022.
    alphabet = string.ascii_letters + string.digits
    return "Hx9-" + "".join(secrets.choice(alphabet) for _ in range(20))


def _write_secret(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


# ------------------------------------------------------------------ the Windows installer domain

def windows_installer(req: ImageRequest, paths: BuildPaths, answer_iso: Path) -> InstallerDomain:
    """The Windows domain (domain.xml.j2): install ISO (boot 1), virtio-win, answer medium,
    the new disk (boot 2); e1000e (inbox driver) with Internet access, which the OpenSSH
    Feature on Demand needs."""
    from ..vm.accel import choose_domain_type
    from ..vm.templates import render
    from .domain import WINDOWS_TEMPLATE, check_host, windows_domain_values

    domain_type, _why = choose_domain_type(req.accel)
    name = f"harness-image-{req.stem}-{os.getpid()}"
    values = windows_domain_values(
        req.edition, domain_type=domain_type, name=name, run_id=f"image-{os.getpid()}",
        test_id=f"image build {req.stem}", artifacts=paths.artifacts, disk=paths.building,
        disk_format="qcow2", disk_bus="virtio",
        cdroms=[Cdrom(req.iso.resolve(), boot_order=1), Cdrom(req.virtio_win.resolve()), Cdrom(answer_iso)],
        disk_boot_order=2, network="user", nic_model="e1000e", on_reboot="restart", on_crash="restart")
    check_host(values["tpm"])
    xml = render(WINDOWS_TEMPLATE, **values)
    # The test machines' network is restricted (restrict=on: no way out); the image build
    # needs Windows Update for OpenSSH.Server, so this domain alone may reach out.
    xml = xml.replace("user,id=hnet0,restrict=on,", "user,id=hnet0,restrict=off,")
    return InstallerDomain(xml=xml, name=name, marker_log=Path(values["marker_log"]),
                           press_keys_s=DEFAULT_PRESS_KEYS_S)


# ------------------------------------------------------------------ the recipe

def build_windows_image(req: ImageRequest, progress: Progress = print,
                        installer: InstallerFactory = windows_installer) -> GoldenImage:
    from .media import AnswerPlan, answer_files, build_answer_iso, render_autounattend

    paths = BuildPaths.for_request(req)
    check_request(req, paths)
    sys_file, inf_file, cert = sensor_files(req.sensor, progress)
    req.out.mkdir(parents=True, exist_ok=True)
    paths.artifacts.mkdir(parents=True, exist_ok=True)

    # secrets: only in the output directory, mode 0600
    password = _password()
    _write_secret(paths.password, (password + "\n").encode())
    import paramiko

    key = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    if key is None:
        from ..vm.ssh import new_client_key
        key = new_client_key()
    paths.ssh_key.unlink(missing_ok=True)
    key.write_private_key_file(str(paths.ssh_key))
    os.chmod(paths.ssh_key, 0o600)
    public = f"{key.get_name()} {key.get_base64()} harness-image-{req.stem}"
    paths.ssh_key.with_name(paths.ssh_key.name + ".pub").write_text(public + "\n")

    plan = AnswerPlan(edition=req.edition, image_index=req.image_index, sensor_build=req.sensor,
                      admin_password=password, product_key=req.product_key)
    xml = render_autounattend(plan)
    build_answer_iso(paths.answer_iso, xml, answer_files(plan, sys_file, inf_file, cert, public))
    progress(f"image: answer medium {paths.answer_iso}")

    # a blank disk, renamed to the golden name only once stamped
    for stale in (paths.building,):
        stale.unlink(missing_ok=True)
    proc = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(paths.building), f"{req.disk_gib}G"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise InfraError(f"{paths.building}: qemu-img create failed: {proc.stderr.strip()}")
    progress(f"image: blank disk {paths.building} ({req.disk_gib} GiB)")

    domain = installer(req, paths, paths.answer_iso)
    (paths.artifacts / "domain.xml").write_text(domain.xml)
    markers, elapsed = run_installer(domain, req, paths, progress)
    return stamp_golden(req, paths, markers, elapsed, progress)


def _read_markers(log: Path, offset: int) -> tuple[list[str], int]:
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    lines = data[:end].decode("utf-8", "replace").replace("\r", "").split("\n")
    found = [m.group(0).strip() for line in lines if (m := MARKER_RE.search(line))]
    return found, offset + end + 1


def run_installer(domain: InstallerDomain, req: ImageRequest, paths: BuildPaths,
                  progress: Progress) -> tuple[list[str], float]:
    """Start the installer domain and wait for HARNESS-IMAGE-READY on COM2 and its shutdown."""
    import libvirt

    from ..vm.connection import open_connection

    offset = domain.marker_log.stat().st_size if domain.marker_log.exists() else 0
    conn = open_connection(req.uri)
    try:
        dom = conn.createXML(domain.xml, 0)
    except libvirt.libvirtError as exc:
        conn.close()
        raise InfraError(f"libvirt refused the installer domain: {exc.get_error_message()} "
                         f"(domain XML: {paths.artifacts / 'domain.xml'})") from None
    t0 = time.monotonic()
    progress(f"image: {domain.name} started; waiting up to {req.timeout / 3600:.1f} h for {READY_MARKER} "
             f"on COM2 ({domain.marker_log})")
    markers: list[str] = []
    ready_at: float | None = None
    last_progress = -1e9
    last_key = -1e9
    state_name = "running"
    try:
        while True:
            now = time.monotonic() - t0
            new, offset = _read_markers(domain.marker_log, offset)
            for line in new:
                markers.append(line)
                progress(f"image: [{_fmt(now)}] COM2: {line}")
                if line.startswith(ERROR_MARKER):
                    raise VmError(f"the installer failed: {line} (COM2 log: {domain.marker_log})",
                                  paths.artifacts)
                if line.startswith(READY_MARKER) and ready_at is None:
                    ready_at = now
            try:
                state, _reason = dom.state()
                alive = state not in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_NOSTATE)
                state_name = _state_name(state)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise InfraError(f"libvirt: {exc.get_error_message()}") from None
                alive, state_name = False, "shut off"
            if not alive:
                new, offset = _read_markers(domain.marker_log, offset)  # the last lines
                markers.extend(new)
                if ready_at is None and not any(m.startswith(READY_MARKER) for m in new):
                    raise VmError(f"the installer domain stopped after {_fmt(now)} without {READY_MARKER} "
                                  f"on COM2 (last marker: {markers[-1] if markers else 'none'}; "
                                  f"COM2 log: {domain.marker_log})", paths.artifacts)
                progress(f"image: [{_fmt(now)}] {READY_MARKER} seen and the domain shut down")
                return markers, now
            if ready_at is None and now > req.timeout:
                raise VmError(f"no {READY_MARKER} on COM2 within {req.timeout:.0f} s (domain {state_name}, "
                              f"last marker: {markers[-1] if markers else 'none'}; COM2 log: "
                              f"{domain.marker_log}; raise --timeout for a slow host)", paths.artifacts)
            if ready_at is not None and now - ready_at > req.shutdown_timeout:
                raise VmError(f"{READY_MARKER} seen but the domain did not shut down within "
                              f"{req.shutdown_timeout:.0f} s; the image is not stamped", paths.artifacts)
            if domain.press_keys_s and now < domain.press_keys_s and now - last_key >= 2.0:
                last_key = now
                try:
                    dom.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 100, [BOOT_KEY], 1, 0)
                except libvirt.libvirtError:
                    pass
            if now - last_progress >= req.progress_interval:
                last_progress = now
                progress(f"image: elapsed {_fmt(now)}, domain {state_name}, last COM2 marker: "
                         f"{markers[-1] if markers else 'none yet'}")
            time.sleep(req.poll_interval)
    except BaseException:
        try:
            dom.destroy()
        except libvirt.libvirtError:
            pass
        raise
    finally:
        conn.close()


def _state_name(state: int) -> str:
    import libvirt

    return {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
            libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down", libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
            libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_BLOCKED: "blocked",
            libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended"}.get(state, f"state {state}")


def _fmt(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _input(path: Path) -> dict[str, object]:
    return {"name": path.name, "path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def stamp_golden(req: ImageRequest, paths: BuildPaths, markers: list[str], elapsed: float,
                 progress: Progress) -> GoldenImage:
    """<image>.qcow2 read-only, its sha256 and inputs in <image>.golden.json (read-only)."""
    for old in (paths.image, paths.manifest, paths.nvram):
        if old.exists():  # only with --force (check_request)
            os.chmod(old, 0o644)
            old.unlink()
    os.replace(paths.building, paths.image)
    os.chmod(paths.image, 0o444)
    progress(f"image: hashing {paths.image}")
    digest = sha256_file(paths.image)
    nvram_src = paths.artifacts / NVRAM_NAME
    nvram = None
    if nvram_src.is_file():
        shutil.copyfile(nvram_src, paths.nvram)
        os.chmod(paths.nvram, 0o444)
        nvram = {"path": str(paths.nvram), "sha256": sha256_file(paths.nvram)}
    sys_file = DRIVERS_BUILD / "windows" / req.sensor / "signed" / "harnessflt.sys"
    manifest = {
        "image": str(paths.image),
        "format": "qcow2",
        "sha256": digest,
        "bytes": paths.image.stat().st_size,
        "edition": req.edition,
        "image_index": req.image_index,
        "sensor": {"build": req.sensor, "sys": str(sys_file),
                   "sha256": sha256_file(sys_file) if sys_file.is_file() else None},
        "inputs": {"iso": _input(req.iso), "virtio_win": _input(req.virtio_win)},
        "nvram": nvram,
        "admin_user": "harness",
        "admin_password_file": str(paths.password),
        "ssh_key": str(paths.ssh_key),
        "install_seconds": round(elapsed, 1),
        "markers": markers,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = paths.manifest.with_name(f".{paths.manifest.name}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.chmod(tmp, 0o444)
    os.replace(tmp, paths.manifest)
    progress(f"image: golden {paths.image} sha256 {digest} (manifest {paths.manifest})")
    return GoldenImage(paths.image, paths.manifest, digest, elapsed, markers)
