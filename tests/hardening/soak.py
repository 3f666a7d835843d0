"""The long soak: ``python -m tests.hardening.soak [--connections N] [--streams N] [--json]``.

Opens and closes 10,000 framer connections, then 100,000 streams on one connection (the
issue's figures; the suite runs a fifth and a tenth of that), on asyncio and trio, and
prints what each left behind: file descriptors, tasks and traced memory.
"""

from __future__ import annotations

import argparse
import json

import anyio

from tests.hardening import hygiene


def _row(backend: str, result: hygiene.Result) -> dict[str, object]:
    return {
        "loop": backend,
        "what": result.what,
        "count": result.count,
        "seconds": round(result.seconds, 1),
        "per_second": round(result.count / result.seconds),
        "fds_before": result.before.fds,
        "fd_growth": result.fd_growth,
        "tasks_before": result.before.tasks,
        "task_growth": result.task_growth,
        "memory_before": result.before.traced_bytes,
        "memory_growth": result.memory_growth,
    }


def main() -> None:
    """Run the soak and print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=100_000)
    parser.add_argument("--loop", choices=("asyncio", "trio", "both"), default="both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    loops = ("asyncio", "trio") if args.loop == "both" else (args.loop,)
    rows = []
    runs = ((hygiene.connections, args.connections), (hygiene.streams, args.streams))
    for backend in loops:
        for run, count in runs:
            rows.append(_row(backend, anyio.run(run, count, backend=backend)))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    columns = list(rows[0])
    widths = [max(len(column), *(len(str(row[column])) for row in rows)) for column in columns]
    pairs = list(zip(columns, widths, strict=True))
    print("  ".join(column.ljust(width) for column, width in pairs))
    for row in rows:
        print("  ".join(str(row[column]).ljust(width) for column, width in pairs))


if __name__ == "__main__":
    main()
