"""``streams explain UPSTREAM``: ask a running process which endpoint the next stream of
UPSTREAM would go to, and why (priority groups, health, ejections, policy)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

__all__ = ["add_parser"]


def add_parser(commands: Any, name: str) -> None:
    parser = commands.add_parser(
        name, help="ask a running process where the next stream goes, and why", description=__doc__
    )
    parser.add_argument("upstream", metavar="UPSTREAM")
    parser.add_argument(
        "--admin",
        default="127.0.0.1:9901",
        metavar="HOST:PORT",
        help="the process's admin endpoint (default: 127.0.0.1:9901)",
    )
    parser.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    query = urllib.parse.urlencode({"upstream": args.upstream})
    url = f"http://{args.admin}/explain?{query}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        print(f"streams explain: {exc.read().decode().strip()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"streams explain: cannot reach the admin endpoint at {args.admin}: {exc}",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(f"{answer['upstream']}: {answer['verdict']}")
    for reason in answer.get("reasons", []):
        print(f"  {reason}")
    return 0
