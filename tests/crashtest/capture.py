"""Capture the console log of each crashtest mode through the harness itself.

    python3 -m tests.crashtest.capture [NAME ...]     # default: every mode, then every variant

A NAME is a mode of build.MODES or a variant of build.VARIANTS (a mode with other
parameters, e.g. `hung-nopanic`: mode=hung panic=0).  Build crashtest.ko once
(build/crashtest/); for each NAME, write a config whose profile `crashtest` loads
it with `mode=MODE` and the variant's parameters (build.profile_yaml), run
`harness reproduce <a small file> --config ... --profile crashtest --json`, and
copy the run's serial log, byte for byte, to
fixtures/logs/linux/captured-NAME.log.  Prints one line per NAME: the verdict,
the crash title and the time it took.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .build import MODES, REPO, VARIANTS, build_module, profile_yaml

FIXTURES = REPO / "fixtures" / "logs" / "linux"


def reproduce(config: Path, content: Path, artifacts: Path) -> dict:
    """The JSON of `harness reproduce` for `content` with the profile `crashtest` of `config`."""
    argv = [sys.executable, "-m", "harness.cli", "reproduce", str(content), "--config", str(config),
            "--profile", "crashtest", "--json", "--artifacts", str(artifacts)]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def capture(name: str, module: Path, workdir: Path) -> Path:
    mode, params = VARIANTS.get(name, (name, ""))
    config = workdir / f"{name}.yaml"
    config.write_text(profile_yaml(module, mode, params))
    content = workdir / "10-any.conf"
    content.write_text("crashtest ignores its content\n")
    started = time.monotonic()
    report = reproduce(config, content, workdir / "artifacts")
    target = FIXTURES / f"captured-{name}.log"
    shutil.copyfile(report["serial_log"], target)
    crash = report.get("crash") or {}
    print(f"{name}: {report['verdict']} after {report['boots']} boot(s), crash {crash.get('title')!r}, "
          f"{time.monotonic() - started:.0f} s -> {target.relative_to(REPO)}", flush=True)
    return target


def main(argv: list[str]) -> int:
    names = argv or [*MODES, *VARIANTS]
    unknown = [name for name in names if name not in MODES and name not in VARIANTS]
    if unknown:
        print(f"capture: unknown mode(s) {', '.join(unknown)}; known: {', '.join([*MODES, *VARIANTS])}",
              file=sys.stderr)
        return 2
    module = build_module()
    with tempfile.TemporaryDirectory(prefix="crashtest-capture-") as tmp:
        for name in names:
            capture(name, module, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
