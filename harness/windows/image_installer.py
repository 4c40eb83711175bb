"""The Windows golden image's installer domain: its XML (`windows_installer`) and the run
(`run_installer`): start it, follow the COM2 markers, press a key at the ISO's boot prompt,
wait for HARNESS-IMAGE-READY and the shutdown, destroy it on any failure."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from ..errors import InfraError, VmError
from .domain import Cdrom
from .image_request import BuildPaths, ImageRequest, InstallerDomain, Progress

READY_MARKER = "HARNESS-IMAGE-READY"
ERROR_MARKER = "HARNESS-SETUP-ERROR"
MARKER_RE = re.compile(r"HARNESS-[A-Z-]+\b.*")
# The Windows ISO's EFI loader asks "Press any key to boot from CD or DVD" and falls
# through to the next device when nobody does: the first boot gets key presses.
BOOT_KEY = 57  # KEY_SPACE, linux codeset
DEFAULT_PRESS_KEYS_S = 45.0


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
