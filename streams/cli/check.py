"""``streams check`` and ``streams schema``: validate topologies; print their JSON Schema."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._core.errors import ConfigError

__all__ = ["add_parser", "add_schema_parser"]


def add_parser(commands: Any, name: str) -> None:
    parser = commands.add_parser(
        name,
        help="validate topology files",
        description="Validate each topology file. Every problem names the file, the line, "
        "the path of the bad value and what was expected. Exit status 1 if any is invalid.",
    )
    parser.add_argument("topologies", nargs="+", metavar="TOPOLOGY.yaml")
    parser.set_defaults(run=run_check)


def add_schema_parser(commands: Any, name: str) -> None:
    parser = commands.add_parser(
        name,
        help="print the JSON Schema of topology files",
        description="Print the JSON Schema (draft 2020-12) that topology files follow, for "
        "editors and other tools.",
    )
    parser.set_defaults(run=run_schema)


def run_check(args: argparse.Namespace) -> int:
    from ..config import load_topology

    failed = False
    for path in args.topologies:
        try:
            topology = load_topology(path)
        except ConfigError as exc:
            print(f"{exc}", file=sys.stderr)
            failed = True
            continue
        print(
            f"{path}: ok ({len(topology.upstreams)} upstreams, {len(topology.servers)} servers, "
            f"{len(topology.tunnels)} tunnels)"
        )
    return 1 if failed else 0


def run_schema(args: argparse.Namespace) -> int:
    from ..config import TOPOLOGY_SCHEMA

    print(json.dumps(TOPOLOGY_SCHEMA, indent=2))
    return 0
