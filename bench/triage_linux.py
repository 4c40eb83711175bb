"""How fast, and in how much memory, `harness triage` reads a large Linux console log.

Target (issue 14): a 100 MB console log triaged in under 30 s with memory under
200 MB.  The log is built from the captured healthy boot in fixtures/logs/linux
(noise), with a finding (a WARNING) every `--warning-every` lines and the
captured CF-291 crash at the end, so the parser opens reports all along.  The
triage runs in a child process so its peak RSS is its own.

    python3 bench/triage_linux.py            # 100 MB
    python3 bench/triage_linux.py --mb 10    # quicker
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOGS = REPO / "fixtures" / "logs" / "linux"
TARGET_S = 30.0
TARGET_MB = 200.0

WARNING = ("------------[ cut here ]------------\n"
           "WARNING: CPU: 0 PID: 88 at drivers/acme/core.c:42 acme_check+0x1a/0x30 [acme]\n"
           "RIP: 0010:acme_check+0x1a/0x30 [acme]\nCall Trace:\n <TASK>\n acme_init+0x10/0x20 [acme]\n </TASK>\n"
           "---[ end trace 0000000000000000 ]---\n")


def build_log(path: Path, megabytes: float, warning_every: int) -> None:
    noise = (LOGS / "good-vulnerable.log").read_bytes().decode("utf-8", "replace").replace("\r", "")
    noise_lines = [line for line in noise.split("\n") if line]
    target = int(megabytes * 1_000_000)
    written = 0
    with path.open("w", encoding="utf-8") as out:
        index = 0
        while written < target:
            chunk = "\n".join(noise_lines[i % len(noise_lines)] for i in range(index, index + warning_every))
            chunk += "\n" + WARNING
            out.write(chunk)
            written += len(chunk)
            index += warning_every
        out.write((LOGS / "cf291-field21-vulnerable.log").read_bytes().decode("utf-8", "replace"))


def child(log: str) -> None:
    sys.path.insert(0, str(REPO))
    from harness.triage import triage_files
    start, cpu_start = time.perf_counter(), time.process_time()
    result = triage_files(Path(log))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "peak_rss_mb": peak_mb, "verdict": result.verdict.verdict,
                      "crash": result.verdict.crash.title if result.verdict.crash else None,
                      "reports": len(result.reports) + result.reports_omitted}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=100.0, help="log size in MB (default 100)")
    parser.add_argument("--warning-every", type=int, default=2000, help="noise lines between WARNINGs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "console.log"
        print(f"building a {args.mb:g} MB console log ...", file=sys.stderr, flush=True)
        build_log(log, args.mb, args.warning_every)
        size_mb = log.stat().st_size / 1e6
        proc = subprocess.run([sys.executable, __file__, "--child", str(log)], capture_output=True, text=True,
                              timeout=600, check=True)
    result = json.loads(proc.stdout)
    scaled_s = result["seconds"] * 100 / size_mb
    print(f"log:        {size_mb:.1f} MB, {result['reports']} report(s), verdict {result['verdict']}, "
          f"crash {result['crash']!r}")
    print(f"time:       {result['seconds']:.1f} s ({scaled_s:.1f} s per 100 MB; target < {TARGET_S:g} s), "
          f"CPU {result['cpu_seconds']:.1f} s (wall time grows with the host's load)")
    print(f"peak RSS:   {result['peak_rss_mb']:.0f} MB (target < {TARGET_MB:g} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
