"""The `harness` command line.  Each command group lives in its own module and
registers its subcommands here; errors the user can fix print one line and
exit with status 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from . import image_cli, machine_cli
from .campaign import cli as campaign_cli
from .content import cli as content_cli
from .content.format import ContentFormatError
from .minimize import cli as minimize_cli
from .rollout import cli as rollout_cli
from .report import cli as report_cli
from .errors import HarnessError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Prove what a content file does to machines running a boot-start driver.")
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    content_cli.register(groups)
    machine_cli.register(groups)
    image_cli.register(groups)
    minimize_cli.register(groups)
    rollout_cli.register(groups)
    campaign_cli.register(groups)
    report_cli.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (HarnessError, ContentFormatError) as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
