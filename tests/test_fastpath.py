"""The snapshot fast path (harness/fastpath, docs/fastpath.md): verdicts from a restored memory
snapshot of the reference guest are the boot path's verdicts.

The VM tests share one judge (the snapshot is made once, or found in the cache); the boot path
they compare with is the campaign's BootJudge, run in the same test on the same files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from harness.config import Profile, Timeouts, load_profiles
from harness.content.format import file_name
from harness.errors import ConfigError
from harness.guest.linux_ref import ReferenceGuest
from harness.guest.snapshot_point import SNAPSHOT_POINT
from harness.monitor.verdict import Verdict
from harness.paths import CONTENT_FIXTURES
from harness.vm.snapshot_cache import entry_dir, load, machine_parts, snapshot_key, write_manifest

from .conftest import run_harness

ROWS = yaml.safe_load((CONTENT_FIXTURES / "expected.yaml").read_text())["fixtures"]
NAME = file_name(291, 0, 32)
CRASH = (CONTENT_FIXTURES / "cf291-field21.sys").read_bytes()
GOOD = (CONTENT_FIXTURES / "good.sys").read_bytes()
# The boot path, in the same test: one file of each kind of verdict.
BOOT_COMPARED = ("good.sys", "bad-crc.sys", "cf291-field21.sys")


def slug(fixture: str) -> str:
    return fixture.replace("/", "-").removesuffix(".sys")


def outcome(verdict: Verdict) -> dict[str, Any]:
    """What must be the same on both paths (not times, not the boot count of a crash)."""
    last = verdict.boot_log[-1]
    return {"verdict": verdict.verdict, "crash": verdict.crash.title if verdict.crash else None,
            "function": verdict.crash.function if verdict.crash else None,
            "module": verdict.crash.module if verdict.crash else None,
            "loaded": last.loaded, "rejected": last.rejected, "findings": [f.title for f in verdict.findings]}


@pytest.fixture(scope="module")
def judge(prepared_guest: tuple[Any, str], harness_profile: Profile) -> Iterator[Any]:
    from harness.fastpath import SnapshotJudge

    judge = SnapshotJudge(harness_profile, "vulnerable")
    yield judge
    judge.close()


@pytest.mark.vm
@pytest.mark.family("linux")
@pytest.mark.expect_boot_loop
def test_every_fixture_gives_the_boot_paths_verdict(judge: Any, harness_profile: Profile, artifacts_dir: Path) -> None:
    from harness.campaign.judge import BootJudge

    fast = {row["file"]: judge.judge(NAME, (CONTENT_FIXTURES / row["file"]).read_bytes(),
                                     artifacts_dir / "fast" / slug(row["file"])) for row in ROWS}
    wrong = {f: v.one_line() for f, v in fast.items()
             if v.verdict != next(r for r in ROWS if r["file"] == f)["verdict"]["vulnerable"]}
    assert not wrong, f"fast path verdicts differ from fixtures/content/expected.yaml: {wrong}"
    for verdict in fast.values():
        if verdict.verdict == "boot-loop":
            assert verdict.crashing_boots == harness_profile.boot_loop_threshold
            assert "not confirmed" not in verdict.reason
        else:
            assert verdict.boots == 1 and verdict.crash is None
    booted = BootJudge(harness_profile, "vulnerable", lambda _msg: None)
    try:
        for fixture in BOOT_COMPARED:
            boot = booted.judge(NAME, (CONTENT_FIXTURES / fixture).read_bytes(), artifacts_dir / "boot" / slug(fixture))
            assert outcome(fast[fixture]) == outcome(boot), fixture
            assert fast[fixture].boots == boot.boots, fixture
    finally:
        booted.close()
    serial = (artifacts_dir / "fast" / "good" / "serial.log").read_text()
    assert serial.index("HARNESS-SNAPSHOT-POINT") < serial.index("HARNESS-SNAPSHOT-RESUMED disk=/dev/vda stale=0")
    assert "Linux version" in serial.split("HARNESS-SNAPSHOT-POINT")[0]  # the transcript of the saved boot
    record = json.loads((artifacts_dir / "fast" / "good" / "fastpath.json").read_text())
    assert record["path"] == "snapshot" and record["verdict"] == "healthy"


@pytest.mark.vm
@pytest.mark.family("linux")
@pytest.mark.expect_boot_loop
def test_a_good_file_restored_after_a_crashing_one_starts_clean(prepared_guest: tuple[Any, str],
                                                                harness_profile: Profile, artifacts_dir: Path) -> None:
    from harness.fastpath import UNCONFIRMED, SnapshotJudge

    judge = SnapshotJudge(harness_profile, "vulnerable", confirm_loop=False)  # the same cached snapshot
    try:
        crash = judge.judge(NAME, CRASH, artifacts_dir / "crash")
        good = judge.judge(file_name(291, 0, 31), GOOD, artifacts_dir / "good")
        again = judge.judge(NAME, CRASH, artifacts_dir / "crash-again")
    finally:
        judge.close()
    assert crash.verdict == "boot-loop" and crash.crashing_boots == 1, crash.one_line()
    assert crash.reason.endswith(UNCONFIRMED)
    assert crash.crash is not None and crash.crash.function == "chf_match_criterion"
    assert good.verdict == "healthy" and good.boots == 1 and good.crash is None, good.one_line()
    assert good.boot_log[0].loaded == [file_name(291, 0, 31)]  # its own file, nothing of the last one
    assert not any(k.startswith("lifecycle:crashed") for k in good.events), good.events
    log = (artifacts_dir / "good" / "serial.log").read_text()
    assert "BUG:" not in log and NAME not in log
    assert again.verdict == "boot-loop" and again.crash is not None
    assert again.crash.title == crash.crash.title
    # each file's own disk and domain; the saved image was never written
    assert json.loads((artifacts_dir / "good" / "fastpath.json").read_text())["path"] == "snapshot"
    assert not judge.snapshot.image.stat().st_mode & 0o222



@pytest.mark.vm
@pytest.mark.family("linux")
def test_a_file_too_big_for_the_snapshots_disk_is_judged_by_a_boot(judge: Any, artifacts_dir: Path) -> None:
    big = b"\xa5" * (12 << 20)  # needs a data disk larger than the 16 MiB the guest saw at the point
    verdict = judge.judge(NAME, big, artifacts_dir / "big")
    assert verdict.verdict == "content-rejected", verdict.one_line()
    assert verdict.reason.endswith("(judged by a boot: the file's disk is not the snapshot's size)")
    record = json.loads((artifacts_dir / "big" / "fastpath.json").read_text())
    assert record["path"] == "boot" and not record["restored_ahead"]
    good = judge.judge(file_name(291, 0, 31), GOOD, artifacts_dir / "after")  # the restores go on
    assert good.verdict == "healthy", good.one_line()
    assert json.loads((artifacts_dir / "after" / "fastpath.json").read_text())["path"] == "snapshot"

def _guest(key: str) -> ReferenceGuest:
    return ReferenceGuest(kernel=Path("/k"), initrd=Path("/i"), kernel_version="6.1", host_key_pub=Path("/h"), key=key)


def _key(profile: Profile, guest_key: str = "g1", sensor: str = "vulnerable", domain_type: str = "qemu",
         host: tuple[int, int] = (9000000, 7002022)) -> str:
    parts = {**machine_parts(profile, domain_type), "host": {"libvirt": host[0], "hypervisor": "QEMU",
                                                            "hypervisor_version": host[1]},
             "guest": SNAPSHOT_POINT.key_parts(_guest(guest_key), profile, sensor)}
    return snapshot_key(parts)


def test_the_snapshot_key_follows_what_the_saved_memory_depends_on(tmp_path: Path) -> None:
    base = Profile()
    key = _key(base)
    changed = {
        "guest (kernel, initramfs, init.sh, sensor modules)": _key(base, guest_key="g2"),
        "sensor build": _key(base, sensor="hardened"),
        "memory": _key(dataclasses.replace(base, memory_mib=512)),
        "vCPUs": _key(dataclasses.replace(base, vcpus=2)),
        "domain type": _key(base, domain_type="kvm"),
        "QEMU version": _key(base, host=(9000000, 8002000)),
        "domain template": _key(dataclasses.replace(base, domain_template="windows/win11.xml.j2")),
    }
    assert all(k != key for k in changed.values()), [what for what, k in changed.items() if k == key]
    assert len(set(changed.values())) == len(changed)
    same = [_key(dataclasses.replace(base, boot_loop_threshold=3)),
            _key(dataclasses.replace(base, timeouts=Timeouts(boot=10)))]
    assert same == [key, key]  # judging settings, not the machine: the same snapshot
    # A cached entry made for another key is not used: the snapshot is made again.
    entry = entry_dir(key, tmp_path)
    entry.mkdir(parents=True)
    (entry / "memory.save").write_bytes(b"x")
    write_manifest(entry, key, {}, "transcript", [], 16 << 20, tmp_path / "build", 1.0)
    assert load(entry, key) is not None
    assert load(entry, changed["sensor build"]) is None
    assert entry_dir(changed["sensor build"], tmp_path) != entry


def test_a_windows_profile_is_refused_with_one_line(tmp_path: Path) -> None:
    from harness.fastpath import SnapshotJudge, supports

    config = tmp_path / "profiles.yaml"
    config.write_text("profiles:\n  win:\n    family: windows\n    image: golden.qcow2\n"
                      "  linux-slow:\n    fast_path: false\n")
    profiles = load_profiles(config)
    with pytest.raises(ConfigError) as exc:
        SnapshotJudge(profiles["win"], None)
    message = str(exc.value)
    assert "\n" not in message and "family windows has no snapshot point" in message and "boot path" in message
    with pytest.raises(ConfigError, match="fast_path is false"):
        SnapshotJudge(profiles["linux-slow"], None)
    assert not supports(profiles["win"]) and not supports(profiles["linux-slow"]) and supports(Profile())
    result = run_harness("campaign", "--path", "fast", "--config", config, "--profile", "win",
                         "--files", "1", "--out", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "windows" in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles:\n  x:\n    fast_path: 'no'\n")
    with pytest.raises(ConfigError, match="fast_path: expected true or false"):
        load_profiles(bad)


def test_a_copy_of_a_saved_image_restores_under_another_name_with_the_same_memory(tmp_path: Path) -> None:
    from harness.errors import InfraError
    from harness.vm.save_image import HEADER, MAGIC, read_image, renamed_xml, write_variant

    xml = "<domain type='qemu'><name>snap</name><uuid>0c4df472-2105-4faf-8d1d-4de670160b48</uuid></domain>"
    cookie = b"<cookie/>\0"
    data_len = 4096
    body = xml.encode() + b"\0"
    stream = bytes(range(256)) * 64 + b"QEVM-tail"
    base = tmp_path / "memory.save"
    base.write_bytes(HEADER.pack(MAGIC, 2, data_len, 1, 0, len(body)) + body + cookie
                     + b"\0" * (data_len - len(body) - len(cookie)) + stream)
    image = read_image(base)
    assert image.xml == xml and image.cookie == cookie and image.was_running == 1
    renamed = renamed_xml(image.xml, "harness-run-fp0-1")
    copy = write_variant(image, tmp_path / "1.save", renamed)
    again = read_image(copy)
    assert "<name>harness-run-fp0-1</name>" in again.xml and "0c4df472" not in again.xml
    assert again.cookie == cookie and again.data_len == data_len
    assert copy.read_bytes()[again.stream_offset:] == stream  # the memory, byte for byte
    assert not copy.stat().st_mode & 0o222  # read-only, like the original
    with pytest.raises(InfraError, match="does not fit"):
        write_variant(image, tmp_path / "2.save", renamed + " " * data_len)
    (tmp_path / "partial.save").write_bytes(b"LibvirtQemudPart" + base.read_bytes()[16:])
    with pytest.raises(InfraError, match="not a finished"):
        read_image(tmp_path / "partial.save")
