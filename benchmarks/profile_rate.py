"""What one open-echo-close costs, counted with cProfile (counts stay put on a busy
machine, unlike times): Python calls, event-loop iterations, callbacks scheduled and calls
into the protocol library, per exchange, for one of ours against the minimal h2 driver.

    python -m benchmarks.profile_rate [framer|http2|spdy|ssh|stack] [--exchanges N] [--top K]

Runs on asyncio (the loop counts are asyncio's ``_run_once`` and ``call_soon``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
from pathlib import Path

import anyio

from . import _workloads as workloads
from .baselines import h2_minimal
from .bench_suite import OURS, our_pair

LIBRARIES = ("/h2/", "/hpack/", "/hyperframe/", "/asyncssh/")


async def _ours(name: str, exchanges: int) -> cProfile.Profile:
    pair = our_pair(name, workloads.QUICK, Path(tempfile.mkdtemp()))
    async with pair() as (client, listener):
        await workloads.open_echo_close(client, listener, 20)
        profile = cProfile.Profile()
        profile.enable()
        await workloads.open_echo_close(client, listener, exchanges)
        profile.disable()
    return profile


async def _minimal(exchanges: int) -> cProfile.Profile:
    async with h2_minimal._connection() as client:
        for _ in range(20):
            await h2_minimal._echo(client)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(exchanges):
            await h2_minimal._echo(client)
        profile.disable()
    return profile


def counts(profile: cProfile.Profile, exchanges: int) -> dict[str, float]:
    """Calls, loop iterations, callbacks and protocol-library calls per exchange."""
    stats = pstats.Stats(profile)
    table = stats.stats  # type: ignore[attr-defined]

    def named(function: str) -> int:
        return sum(value[0] for key, value in table.items() if key[2] == function)

    library = sum(
        value[0] for key, value in table.items() if any(part in key[0] for part in LIBRARIES)
    )
    return {
        "calls": stats.total_calls / exchanges,  # type: ignore[attr-defined]
        "loop iterations": named("_run_once") / exchanges,
        "callbacks": named("call_soon") / exchanges,
        "protocol library calls": library / exchanges,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_rate", description=__doc__)
    parser.add_argument("subject", choices=OURS, nargs="?", default="http2")
    parser.add_argument("--exchanges", type=int, default=500)
    parser.add_argument("--top", type=int, default=15, help="functions to list by own time")
    args = parser.parse_args(argv)
    minimal = anyio.run(_minimal, args.exchanges)
    mine = anyio.run(_ours, args.subject, args.exchanges)
    print(f"per open-echo-close, {args.exchanges} exchanges on asyncio")
    print(f"{'':24} {'h2 minimal':>12} {args.subject:>12}")
    theirs, ours = counts(minimal, args.exchanges), counts(mine, args.exchanges)
    for key in theirs:
        print(f"{key:24} {theirs[key]:12,.0f} {ours[key]:12,.0f}")
    if args.top:
        out = io.StringIO()
        pstats.Stats(mine, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
