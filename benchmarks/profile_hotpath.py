"""Python calls per open-echo-close, counted with cProfile (stable on a busy machine, unlike
rates), and the functions that cost the most.

    python -m benchmarks.profile_hotpath [--loop asyncio|uvloop|trio] [--rounds N]
        [--top K] [--only WORKLOAD]  (framer, framer-zero-rtt, memory, metrics, served,
        pool, failover, stack, ping-pong; all by default)

For a sampling profile of the same loops (issue 11), run it under py-spy:
``py-spy record --native --format speedscope -o out.json -- python -m
benchmarks.profile_hotpath --no-cprofile``.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import pstats
from collections.abc import Awaitable, Callable
from typing import Any

from streams._core.mux import MuxSettings
from streams.backends import memory

from . import _workloads as workloads
from ._common import run_on_loop
from .bench_framer import framer_pair

WORKLOADS: dict[str, Callable[[int], Awaitable[float]]] = {}


def _workload(
    name: str,
) -> Callable[[Callable[[int], Awaitable[float]]], Callable[[int], Awaitable[float]]]:
    def register(function: Callable[[int], Awaitable[float]]) -> Callable[[int], Awaitable[float]]:
        WORKLOADS[name] = function
        return function

    return register


@_workload("framer")
async def framer_default(rounds: int) -> float:
    async with framer_pair() as (client, server):
        return await workloads.open_echo_close(client, server.listen(), rounds)


@_workload("framer-zero-rtt")
async def framer_zero_rtt(rounds: int) -> float:
    async with framer_pair() as (client, server):
        return await workloads.open_echo_close(client, server.listen(), rounds, wait_accept=False)


@_workload("memory")
async def memory_zero_rtt(rounds: int) -> float:
    async with memory.pair(MuxSettings(close_grace=0.5)) as (client, server):
        return await workloads.open_echo_close(client, server.listen(), rounds, wait_accept=False)


@_workload("metrics")
async def metrics_default(rounds: int) -> float:
    from .bench_metrics import measured

    async with measured() as (client, listener):
        return await workloads.open_echo_close(client, listener, rounds)


@_workload("served")
async def served_default(rounds: int) -> float:
    from .bench_metrics import served

    async with served() as (client, listener):
        return await workloads.open_echo_close(client, listener, rounds)


@_workload("stack")
async def stack_default(rounds: int) -> float:
    from .bench_metrics import stack

    async with stack() as (client, listener):
        return await workloads.open_echo_close(client, listener, rounds)


@_workload("pool")
async def pool_default(rounds: int) -> float:
    """The stack's pool alone (compare with ``served``), to see what each layer adds."""
    from .bench_metrics import stack

    async with stack(failover=False, metrics=False) as (client, listener):
        return await workloads.open_echo_close(client, listener, rounds)


@_workload("failover")
async def failover_default(rounds: int) -> float:
    """The stack without its metrics: failover over the pool."""
    from .bench_metrics import stack

    async with stack(metrics=False) as (client, listener):
        return await workloads.open_echo_close(client, listener, rounds)


@_workload("ping-pong")
async def ping_pong(rounds: int) -> float:
    return await workloads.raw_ping_pong(rounds)


def _report(profile: cProfile.Profile, name: str, loop: str, rounds: int, args: Any) -> None:
    stats = pstats.Stats(profile)
    calls = stats.total_calls  # type: ignore[attr-defined]
    sends = sum(
        row[1]
        for (_, _, function), row in stats.stats.items()  # type: ignore[attr-defined]
        if function == "<method 'send' of '_socket.socket' objects>"
    )
    print(
        f"{name} on {loop}: {calls / rounds:,.0f} calls per round, "
        f"{sends / rounds:.2f} socket sends per round"
    )
    if args.top:
        stats.sort_stats(args.sort).print_stats(args.top)


async def _run(name: str, rounds: int, args: Any) -> float:
    function = WORKLOADS[name]
    await function(10)  # warm up: imports, first connection
    if args.no_cprofile:
        return await function(rounds)
    profile = cProfile.Profile()
    profile.enable()
    try:
        return await function(rounds)
    finally:
        profile.disable()
        _report(profile, name, args.loop, rounds, args)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "uvloop", "trio"))
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25, help="functions to list (0: none)")
    parser.add_argument("--only", action="append", choices=sorted(WORKLOADS))
    parser.add_argument("--sort", default="tottime", help="pstats sort key for the top list")
    parser.add_argument(
        "--no-cprofile", action="store_true", help="only run the loops (for py-spy)"
    )
    args = parser.parse_args()
    for name in args.only or sorted(WORKLOADS):
        rate = run_on_loop(functools.partial(_run, name, args.rounds, args), args.loop)
        print(f"{name} on {args.loop}: {rate:,.0f} per second")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
