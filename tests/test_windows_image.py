"""The Windows golden-image recipe (harness/windows/image.py, media.py, image_cli.py).

Without a Windows ISO, everything checkable is checked here: the answer file for every
edition, the answer medium read back with pycdlib, the setup scripts' structure (no
PowerShell here), the CLI's one-line errors, and, with -m vm, the orchestration end to
end with a Linux reference-guest stand-in for the Windows installer: its /init writes
the setup markers and HARNESS-IMAGE-READY to COM2 and powers off.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.errors import ConfigError, InputFileError, VmError
from harness.testing import skip_or_fail
from harness.vm.templates import render
from harness.windows import EDITIONS
from harness.windows import image as image_mod
from harness.windows.image import BuildPaths, ImageRequest, InstallerDomain, build_windows_image
from harness.windows.media import (
    AUTOUNATTEND_TEMPLATE,
    SETUP_DIR,
    SETUP_SCRIPTS,
    VOLUME_LABEL,
    AnswerPlan,
    answer_files,
    autounattend_values,
    build_answer_iso,
    read_answer_iso,
    render_autounattend,
    volume_label,
)

from .conftest import require_tool

NS = "urn:schemas-microsoft-com:unattend"
Q = "{%s}" % NS
DRIVERS_WIN = Path(__file__).resolve().parent.parent / "drivers" / "build" / "windows"


def _plan(edition: str = "win11", **kw: object) -> AnswerPlan:
    return AnswerPlan(edition=edition, image_index=kw.pop("image_index", 6), sensor_build="vulnerable",  # type: ignore[arg-type]
                      admin_password="Hx9-s3cret<&>", **kw)  # type: ignore[arg-type]


def _components(root: ET.Element, pass_name: str) -> dict[str, ET.Element]:
    settings = [s for s in root.findall(f"{Q}settings") if s.get("pass") == pass_name]
    assert len(settings) == 1, pass_name
    return {c.get("name"): c for c in settings[0].findall(f"{Q}component")}  # type: ignore[misc]


# ------------------------------------------------------------------ the answer file

@pytest.mark.parametrize("edition", sorted(EDITIONS))
@pytest.mark.parametrize("key", [None, "VK7JG-NPHTM-C97JM-9MPGT-3V66T"])
def test_the_answer_file_renders_for_every_edition(edition: str, key: str | None) -> None:
    xml = render_autounattend(_plan(edition, product_key=key))
    root = ET.fromstring(xml.encode("utf-8"))
    assert root.tag == f"{Q}unattend"
    assert {s.get("pass") for s in root.findall(f"{Q}settings")} == {"windowsPE", "specialize", "oobeSystem"}

    pe = _components(root, "windowsPE")
    assert {"Microsoft-Windows-International-Core-WinPE", "Microsoft-Windows-Setup",
            "Microsoft-Windows-PnpCustomizationsWinPE"} <= set(pe)
    for comp in pe.values():
        assert comp.get("processorArchitecture") == "amd64"
    setup = pe["Microsoft-Windows-Setup"]
    parts = setup.findall(f"{Q}DiskConfiguration/{Q}Disk/{Q}CreatePartitions/{Q}CreatePartition")
    assert [p.findtext(f"{Q}Type") for p in parts] == ["EFI", "MSR", "Primary"]
    assert setup.findtext(f"{Q}DiskConfiguration/{Q}Disk/{Q}WillWipeDisk") == "true"
    meta = setup.find(f"{Q}ImageInstall/{Q}OSImage/{Q}InstallFrom/{Q}MetaData")
    assert meta is not None and meta.findtext(f"{Q}Key") == "/IMAGE/INDEX" and meta.findtext(f"{Q}Value") == "6"
    assert setup.findtext(f"{Q}ImageInstall/{Q}OSImage/{Q}InstallTo/{Q}PartitionID") == "3"
    assert setup.findtext(f"{Q}UserData/{Q}AcceptEula") == "true"
    assert setup.findtext(f"{Q}UserData/{Q}ProductKey/{Q}Key") == key
    paths = [p.text for p in pe["Microsoft-Windows-PnpCustomizationsWinPE"].iter(f"{Q}Path")]
    os_dir = {"win10": "w10", "win11": "w11", "server2022": "2k22"}[edition]
    for driver in ("viostor", "vioscsi", "NetKVM"):
        assert f"E:\\{driver}\\{os_dir}\\amd64" in paths

    assert "Microsoft-Windows-Shell-Setup" in _components(root, "specialize")
    oobe = _components(root, "oobeSystem")["Microsoft-Windows-Shell-Setup"]
    account = oobe.find(f"{Q}UserAccounts/{Q}LocalAccounts/{Q}LocalAccount")
    assert account is not None and account.findtext(f"{Q}Group") == "Administrators"
    assert account.findtext(f"{Q}Password/{Q}Value") == "Hx9-s3cret<&>"  # escaped, round-trips
    assert oobe.findtext(f"{Q}AutoLogon/{Q}LogonCount") == "1"
    assert oobe.findtext(f"{Q}AutoLogon/{Q}Enabled") == "true"
    assert oobe.findtext(f"{Q}OOBE/{Q}HideEULAPage") == "true"
    cmds = oobe.findall(f"{Q}FirstLogonCommands/{Q}SynchronousCommand")
    assert len(cmds) == 1 and "harness\\setup.ps1" in (cmds[0].findtext(f"{Q}CommandLine") or "")
    assert cmds[0].findtext(f"{Q}Order") == "1"


def test_a_missing_template_value_is_a_config_error() -> None:
    values = autounattend_values(_plan())
    for name in ("image_index", "admin_password", "driver_paths", "setup_command"):
        partial = {k: v for k, v in values.items() if k != name}
        with pytest.raises(ConfigError, match=rf"autounattend.xml.j2: '{name}' is undefined"):
            render(AUTOUNATTEND_TEMPLATE, **partial)


@pytest.mark.parametrize("plan, words", [
    (AnswerPlan("win7", 1, "vulnerable", "x"), "edition"),
    (AnswerPlan("win11", 0, "vulnerable", "x"), "image_index"),
    (AnswerPlan("win11", 1, "vulnerable", "x", computer_name="A" * 16), "computer_name"),
])
def test_bad_answer_values_are_config_errors(plan: AnswerPlan, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        render_autounattend(plan)


# ------------------------------------------------------------------ the medium

def _sensor() -> tuple[Path, Path, Path]:
    signed = DRIVERS_WIN / "vulnerable" / "signed"
    files = (signed / "harnessflt.sys", signed / "harnessflt.inf", DRIVERS_WIN / "testcert" / "harness-test-signing.cer")
    if not all(f.is_file() for f in files):
        require_tool("x86_64-w64-mingw32-gcc", "install mingw-w64 (make setup)")
        require_tool("osslsigncode", "install osslsigncode (make setup)")
        image_mod.sensor_files("vulnerable", lambda _m: None)
    return files


def test_the_answer_medium_holds_everything_at_the_right_place(tmp_path: Path) -> None:
    sys_file, inf, cer = _sensor()
    plan = _plan()
    xml = render_autounattend(plan)
    iso = build_answer_iso(tmp_path / "answer.iso", xml, answer_files(plan, sys_file, inf, cer, "ssh-ed25519 AAAAC3 k"))
    assert stat.S_IMODE(iso.stat().st_mode) == 0o600  # holds the password
    assert volume_label(iso) == VOLUME_LABEL
    files = read_answer_iso(iso)
    assert files["autounattend.xml"].decode() == xml  # at the root, Joliet name as Setup looks for it
    for name in SETUP_SCRIPTS:
        data = files[f"harness/{name}"]
        assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")  # CRLF throughout
    assert files["harness/harnessflt.sys"] == sys_file.read_bytes()
    assert files["harness/harnessflt.sys"][:2] == b"MZ"
    assert files["harness/harnessflt.inf"] == inf.read_bytes()
    assert files["harness/harness-test-signing.cer"] == cer.read_bytes()
    assert files["harness/administrators_authorized_keys"] == b"ssh-ed25519 AAAAC3 k\r\n"
    assert json.loads(files["harness/image.json"]) == {
        "edition": "win11", "sensor_build": "vulnerable", "admin_user": "harness",
        "driver": {"kind": "sample", "service": "harnessflt", "content_dir": "C:\\Windows\\System32\\drivers\\HarnessSensor",
                   "inf": "harnessflt.inf", "sys": "harnessflt.sys", "certificate": "harness-test-signing.cer"}}
    # the sample is installed by the same rendered script a vendor driver gets (package.py)
    install = files["harness/install-driver.ps1"].decode()
    assert "$Service = 'harnessflt'" in install and "$Inf = 'harnessflt.inf'" in install
    assert not any(name.startswith(("harness/driver/", "harness/certificates/")) for name in files)


# ------------------------------------------------------------------ the setup scripts (no PowerShell here)

def _strip_strings_and_comments(text: str) -> str:
    """PowerShell text with comments and string contents blanked (here-strings are not used)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c == "'":
            j = i + 1
            while j < n and not (text[j] == "'" and (j + 1 >= n or text[j + 1] != "'")):
                j += 2 if text[j] == "'" else 1
            assert j < n, f"unterminated single-quoted string at offset {i}"
            out.append("''")
            i = j + 1
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "`" else 1
            assert j < n, f"unterminated double-quoted string at offset {i}"
            inner = text[i + 1:j]
            out.append('"' + re.sub(r"[^$(){}]", "", inner) + '"')  # subexpressions must balance too
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


@pytest.mark.parametrize("name", SETUP_SCRIPTS)
def test_setup_scripts_are_structurally_sound(name: str) -> None:
    raw = (SETUP_DIR / name).read_bytes()
    assert b"\t" not in raw and b"\r" not in raw, "LF-only in the repository, no tabs (the medium gets CRLF)"
    raw.decode("ascii")  # Windows PowerShell 5.1 reads BOM-less files as ANSI: keep them ASCII
    code = _strip_strings_and_comments(raw.decode())
    stack: list[str] = []
    pairs = {")": "(", "}": "{", "]": "["}
    for ch in code:
        if ch in "({[":
            stack.append(ch)
        elif ch in pairs:
            assert stack and stack[-1] == pairs[ch], f"{name}: unbalanced {ch!r}"
            stack.pop()
    assert not stack, f"{name}: unclosed {stack}"


def test_setup_script_covers_each_step_and_marker() -> None:
    setup = (SETUP_DIR / "setup.ps1").read_text()
    lib = (SETUP_DIR / "lib.ps1").read_text()
    boot = (SETUP_DIR / "boot-marker.ps1").read_text()
    for needle in ("'/ems', '{current}', 'on'", "'EMSPORT:1', 'EMSBAUDRATE:115200'", "'/bootems', '{bootmgr}', 'on'",
                   "'testsigning', 'on'", "Cert:\\LocalMachine\\Root", "Cert:\\LocalMachine\\TrustedPublisher",
                   "AutoReboot", "CrashDumpEnabled", "reagentc.exe", "HiberbootEnabled", "'/h', 'off'",
                   "OpenSSH.Server", "administrators_authorized_keys", "'/inheritance:r'", "StartupType Automatic",
                   "Invoke-Step 'driver'", "install-driver.ps1",  # the INF: tests/test_windows_inf.py
                   "-AtStartup", "verify-pending", "Restart-Computer"):
        assert needle in setup, needle
    assert "HARNESS-SETUP-ERROR $Name`: $message" in lib and "HARNESS-SETUP $Message" in lib
    assert "'COM2'" in lib
    for marker in ("HARNESS-SENSOR-LOADED build=", "HARNESS-SENSOR-SKIPPED", "HARNESS-BOOT-COMPLETE",
                   "HARNESS-SSH-READY", "HARNESS-IMAGE-READY", "Stop-Computer"):
        assert marker in boot, marker


@pytest.mark.parametrize("edition", sorted(EDITIONS))
def test_the_generated_setup_script_adds_the_sac_capability_on_client_editions_without_failing_setup(
        edition: str, tmp_path: Path) -> None:
    """SAC is an optional capability on Windows 10/11 that Setup does not install: the medium's
    setup.ps1 adds it on a client edition (ProductType 1), skips it on Server (inbox there), and
    a capability that cannot be fetched is logged, never a HARNESS-SETUP-ERROR: the harness
    counts boots without SAC."""
    stubs = []
    for name in ("harnessflt.sys", "harnessflt.inf", "harness-test-signing.cer"):
        (tmp_path / name).write_bytes(b"stub")
        stubs.append(tmp_path / name)
    files = answer_files(_plan(edition), *stubs, "ssh-ed25519 AAAAC3 k")
    script = files["harness/setup.ps1"].decode("ascii")
    step = script[script.index("Invoke-Step 'sac' {"):]
    step = step[:step.index("\r\n}\r\n") + 3]
    assert "(Get-CimInstance -ClassName Win32_OperatingSystem).ProductType" in step
    assert "if ($productType -ne 1) {" in step  # server: nothing to add
    assert "Add-WindowsCapability -Online -Name 'Windows.Desktop.EMS-SAC.Tools~~~~0.0.1.0'" in step
    assert "$sac.State -eq 'Installed'" in step  # a rebuilt image does not add it twice
    # a failure is caught inside the step: Invoke-Step's catch (HARNESS-SETUP-ERROR, exit 1) never sees it
    assert step.index("try {") < step.index("Add-WindowsCapability") < step.index("} catch {")
    assert "throw" not in step and "Write-SetupLog \"sac: not installed" in step
    # after EMS is on (the console SAC serves), before the reboot that activates the capability
    assert script.index("Invoke-Step 'ems'") < script.index("Invoke-Step 'sac'") < script.index("Invoke-Step 'reboot'")
    assert json.loads(files["harness/image.json"])["edition"] == edition


# ------------------------------------------------------------------ the command line

def _fake_iso(path: Path, label: str = "FAKE") -> Path:
    return build_answer_iso(path, "<x/>", {"README.TXT": b"not windows"}, label=label)


def _main(argv: list[str]) -> int:
    from harness import cli

    return cli.main(argv)


def test_bad_inputs_are_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    iso, virtio = _fake_iso(tmp_path / "win.iso"), _fake_iso(tmp_path / "virtio.iso")
    base = ["image", "build", "windows", "--virtio-win", str(virtio), "--out", str(tmp_path / "out")]
    cases = [
        (["--iso", str(tmp_path / "missing.iso")], "missing.iso: Windows install ISO not found"),
        (["--iso", str(Path(__file__))], "is not an ISO 9660 image"),
    ]
    for extra, words in cases:
        assert _main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err, err

    golden = tmp_path / "out" / "windows-win11-vulnerable.qcow2"
    golden.parent.mkdir()
    golden.write_bytes(b"x")
    assert _main(base + ["--iso", str(iso)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{golden}: a golden image exists already: pass --force" in err and "\n" not in err

    from harness.windows.domain import find_ovmf

    monkeypatch.setattr(image_mod, "find_ovmf", lambda: find_ovmf((("/nonexistent/OVMF_CODE.fd", "/nonexistent/V"),)))
    assert _main(base + ["--iso", str(iso), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no UEFI firmware" in err and "apt-get install ovmf" in err and "\n" not in err


# ------------------------------------------------------------------ end to end, Linux stand-in

STANDIN_INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs devtmpfs /dev
mode=$(/bin/busybox sed -n 's/.*standin=\\([a-z]*\\).*/\\1/p' /proc/cmdline)
say() { echo "$1" > /dev/ttyS1; echo "$1"; }
say "HARNESS-SETUP start edition=stand-in sensor=vulnerable"
for step in copy ems testsigning certificate; do say "HARNESS-SETUP step $step"; say "HARNESS-SETUP step $step ok"; done
if [ "$mode" = error ]; then
    say "HARNESS-SETUP-ERROR sensor: stand-in failure"
    /bin/busybox sleep 600
fi
say "HARNESS-BOOT-COMPLETE"
say "HARNESS-IMAGE-READY"
/bin/busybox sync
/bin/busybox poweroff -f
"""

STANDIN_XML = """<domain type='{domain_type}'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0,115200 panic=1 standin={mode}</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='unsafe'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
      <boot order='2'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='{iso}'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
      <boot order='1'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='{answer}'/>
      <target dev='hdd' bus='ide'/>
      <readonly/>
    </disk>
    <serial type='pty'><log file='{com1}' append='on'/><target port='0'/></serial>
    <serial type='pty'><log file='{com2}' append='on'/><target port='1'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
"""


@pytest.fixture
def standin_initrd(tmp_path: Path) -> Path:
    from harness.guest.cpio import Archive

    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        skip_or_fail("busybox-static not installed (make setup)")
    archive = Archive()
    for d in ("proc", "sys", "dev"):
        archive.mkdir(d)
    archive.chardev("dev/console", 5, 1)
    archive.file("bin/busybox", busybox.read_bytes(), 0o755)
    archive.file("init", STANDIN_INIT.encode(), 0o755)
    path = tmp_path / "standin.cpio.gz"
    path.write_bytes(archive.to_gzip())
    return path


def _standin(mode: str, kernel: Path, initrd: Path, domain_type: str, seen: list[Path]):  # type: ignore[no-untyped-def]
    def factory(req: ImageRequest, paths: BuildPaths, answer: Path) -> InstallerDomain:
        seen.append(answer)
        name = f"harness-image-standin-{paths.artifacts.parent.name}-{mode}"
        com2 = paths.artifacts / "com2.log"
        xml = STANDIN_XML.format(domain_type=domain_type, name=name, kernel=kernel, initrd=initrd, mode=mode,
                                 disk=paths.building, iso=req.iso.resolve(), answer=answer,
                                 com1=paths.artifacts / "com1.log", com2=com2)
        return InstallerDomain(xml=xml, name=name, marker_log=com2, press_keys_s=3.0)
    return factory


@pytest.mark.vm
def test_the_recipe_end_to_end_with_a_linux_stand_in(tmp_path: Path, standin_initrd: Path,
                                                      harness_profile) -> None:  # type: ignore[no-untyped-def]
    require_tool("qemu-system-x86_64", "install qemu-system-x86 (make setup)")
    require_tool("qemu-img", "install qemu-utils (make setup)")
    from harness.guest.linux_ref import build_reference_guest
    from harness.vm.accel import choose_domain_type

    guest = build_reference_guest(progress=lambda _m: None)
    domain_type, _ = choose_domain_type(harness_profile.accel)
    iso, virtio = _fake_iso(tmp_path / "win.iso", "WINFAKE"), _fake_iso(tmp_path / "virtio.iso", "VIRTIO")
    out = tmp_path / "out"
    req = ImageRequest(iso=iso, virtio_win=virtio, edition="win11", image_index=6, out=out, timeout=180,
                       shutdown_timeout=60, disk_gib=1, uri=harness_profile.uri, poll_interval=0.5,
                       progress_interval=1.0)
    lines: list[str] = []
    seen: list[Path] = []
    golden = build_windows_image(req, progress=lines.append,
                                 installer=_standin("ok", guest.kernel, standin_initrd, domain_type, seen))
    paths = BuildPaths.for_request(req)

    # the medium was built and attached, the disk created and used, progress shown
    assert seen == [paths.answer_iso]
    assert read_answer_iso(paths.answer_iso)["autounattend.xml"].startswith(b"<?xml")
    domain_xml = (paths.artifacts / "domain.xml").read_text()
    assert str(paths.answer_iso) in domain_xml and str(paths.building) in domain_xml
    assert any("COM2: HARNESS-SETUP step ems ok" in line for line in lines)
    assert any(re.search(r"elapsed \d+:\d\d:\d\d, domain \w+", line) for line in lines)
    assert golden.markers[-1] == "HARNESS-IMAGE-READY"
    assert "HARNESS-BOOT-COMPLETE" in golden.markers

    # golden: read-only, hashed, inputs recorded, secrets 0600
    assert golden.image == out.resolve() / "windows-win11-vulnerable.qcow2" and not paths.building.exists()
    assert stat.S_IMODE(golden.image.stat().st_mode) == 0o444
    assert stat.S_IMODE(golden.manifest.stat().st_mode) == 0o444
    manifest = json.loads(golden.manifest.read_text())
    assert manifest["sha256"] == hashlib.sha256(golden.image.read_bytes()).hexdigest() == golden.sha256
    assert golden.image.read_bytes()[:4] == b"QFI\xfb"
    assert manifest["edition"] == "win11" and manifest["image_index"] == 6
    assert manifest["sensor"]["build"] == "vulnerable" and len(manifest["sensor"]["sha256"]) == 64
    assert manifest["inputs"]["iso"]["name"] == "win.iso"
    assert manifest["inputs"]["iso"]["sha256"] == hashlib.sha256(iso.read_bytes()).hexdigest()
    assert manifest["inputs"]["virtio_win"]["sha256"] == hashlib.sha256(virtio.read_bytes()).hexdigest()
    assert re.match(r"\d{4}-\d\d-\d\dT", manifest["date"])
    for secret in (paths.password, paths.ssh_key, paths.answer_iso):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    password = paths.password.read_text().strip()
    assert password.encode() in read_answer_iso(paths.answer_iso)["autounattend.xml"]

    # never overwritten without --force
    with pytest.raises(InputFileError, match="a golden image exists already: pass --force"):
        build_windows_image(req, progress=lines.append,
                            installer=_standin("ok", guest.kernel, standin_initrd, domain_type, seen))
    assert golden.image.stat().st_size > 0 and stat.S_IMODE(golden.image.stat().st_mode) == 0o444


@pytest.mark.vm
def test_a_setup_error_on_com2_fails_the_build_at_once(tmp_path: Path, standin_initrd: Path,
                                                       harness_profile) -> None:  # type: ignore[no-untyped-def]
    require_tool("qemu-system-x86_64", "install qemu-system-x86 (make setup)")
    require_tool("qemu-img", "install qemu-utils (make setup)")
    import libvirt

    from harness.guest.linux_ref import build_reference_guest
    from harness.vm.accel import choose_domain_type
    from harness.vm.connection import open_connection

    guest = build_reference_guest(progress=lambda _m: None)
    domain_type, _ = choose_domain_type(harness_profile.accel)
    iso, virtio = _fake_iso(tmp_path / "win.iso"), _fake_iso(tmp_path / "virtio.iso")
    req = ImageRequest(iso=iso, virtio_win=virtio, out=tmp_path / "out", timeout=180, disk_gib=1,
                       uri=harness_profile.uri, poll_interval=0.5)
    factory = _standin("error", guest.kernel, standin_initrd, domain_type, [])
    with pytest.raises(VmError, match="HARNESS-SETUP-ERROR sensor: stand-in failure"):
        build_windows_image(req, progress=lambda _m: None, installer=factory)
    paths = BuildPaths.for_request(req)
    assert not paths.image.exists() and not paths.manifest.exists()
    conn = open_connection(harness_profile.uri)
    try:  # the failed installer was destroyed
        names = [d.name() for d in conn.listAllDomains()]
        assert not any("standin" in n and paths.artifacts.parent.name in n for n in names), names
    finally:
        conn.close()
    del libvirt
