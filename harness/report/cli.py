"""`harness report DIR [-o OUT]`: write the page of a rollout, a campaign or a test run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(groups: Any) -> None:
    parser = groups.add_parser(
        "report", help="write the HTML page of a rollout, a campaign or a pytest artifacts directory",
        description="Write one self-contained HTML page (DIR/index.html unless -o) of DIR: a harness "
                    "rollout --report directory (rollout.json), a campaign's (campaign.json), or a "
                    "pytest run's artifacts directory.")
    parser.add_argument("dir", type=Path, metavar="DIR")
    parser.add_argument("-o", "--out", type=Path, metavar="OUT",
                        help="where to write: a .html file, or a directory that gets index.html")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .writer import render

    kind, path = render(args.dir, args.out)
    print(f"{kind} report: {path}")
    return 0
