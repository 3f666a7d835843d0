"""The ``streams`` command. Each subcommand lives in its own module and registers itself
in :data:`COMMANDS`; see ``streams --help``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .._core.errors import ConfigError
from . import bench, check, echo, explain, probe, run

__all__ = ["main"]

COMMANDS = {
    "run": run.add_parser,
    "echo": echo.add_parser,
    "probe": probe.add_parser,
    "check": check.add_parser,
    "schema": check.add_schema_parser,
    "explain": explain.add_parser,
    "bench": bench.add_parser,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streams",
        description="Multiplexed byte streams: diagnostic servers, probes, topologies.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (repeat for debug)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, add_parser in COMMANDS.items():
        add_parser(commands, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with *argv* (``sys.argv[1:]`` by default); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"streams {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
