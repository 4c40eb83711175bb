"""`harness bundle`: what a user sends back when a step fails, with no secret in it."""

from __future__ import annotations

import tarfile
from pathlib import Path

from .conftest import run_harness


def test_a_bundle_keeps_the_logs_and_leaves_out_images_and_secrets(tmp_path: Path) -> None:
    run = tmp_path / "artifacts" / "20261203-070000-abcd"
    test = run / "test_x.py--test_y"
    (test / "content").mkdir(parents=True)
    (test / "serial.log").write_text("Linux version 6.1\nKernel panic - not syncing\n")
    (test / "verdict.json").write_text('{"verdict": "boot-loop"}\n')
    (test / "content" / "C-00000291-00000000-00000032.sys").write_bytes(b"\xaa" * 16)
    (test / "data-disk.img").write_bytes(b"\0" * 4096)
    (test / "disk.qcow2").write_bytes(b"QFI\xfb")
    recovery = test / "recovery-recovery-env"
    recovery.mkdir()
    (recovery / "medium.iso").write_bytes(b"CD001")
    (recovery / "bitlocker-recovery-password.txt").write_text("123456-" * 8 + "\n")
    (recovery / "SOFTWARE").write_bytes(b"regf")
    (test / "notes.txt").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n")

    proc = run_harness("bundle", run, "-o", tmp_path / "out.tar.gz")
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        names = set(tar.getnames())
        manifest = tar.extractfile(f"{run.name}/MANIFEST.txt").read().decode()  # type: ignore[union-attr]
    inside = {f"{run.name}/test_x.py--test_y/{n}" for n in
              ("serial.log", "verdict.json", "content/C-00000291-00000000-00000032.sys")}
    assert inside <= names
    for secret in ("data-disk.img", "disk.qcow2", "recovery-recovery-env/medium.iso",
                   "recovery-recovery-env/bitlocker-recovery-password.txt", "recovery-recovery-env/SOFTWARE",
                   "notes.txt"):
        assert f"{run.name}/test_x.py--test_y/{secret}" not in names
        assert f"test_x.py--test_y/{secret}:" in manifest
    assert "holds a private key" in manifest and "disk or medium image" in manifest


def test_a_missing_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = run_harness("bundle", tmp_path / "nope")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"harness: error: {tmp_path / 'nope'}: no such artifacts directory; give a " \
                                  "run's directory, e.g. artifacts/<run id>"
