"""What the pool costs: open-echo-close rate and bulk throughput through a :class:`Pool`
against the same backend unwrapped, measured in one run as back-to-back sample pairs.

    python -m benchmarks.bench_pool [--json] [--loop asyncio|uvloop|trio] [--rounds N]

The memory backend always runs; the framer over TCP on loopback runs too when
``streams.backends.framer`` is installed. The figure that matters is the ratio: the median
over the pairs of the pool's rate divided by the unwrapped rate (1.0: the pool costs
nothing; 0.95: it costs 5 percent).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import anyio

from streams import Stream, StreamProvider
from streams._core.backend import Backend
from streams.cli.common import add_loop_argument, run_async
from streams.testing import read_all
from streams.wrappers.pool import Pool, PoolOptions

MESSAGE = b"x" * 64
CHUNK = b"b" * 65536


@dataclass
class Result:
    """One scenario on one backend: the median of each side's samples, and the median of
    the per-pair ratios (pool over unwrapped)."""

    backend: str
    scenario: str
    unit: str
    baseline: float
    pool: float
    ratio: float


async def serve_stream(stream: Stream) -> None:
    """Echo, or for ``x-mode: sink`` swallow everything and answer with the byte count."""
    async with stream:
        with contextlib.suppress(anyio.BrokenResourceError):
            if stream.headers.get("x-mode") == "sink":
                total = 0
                while True:
                    try:
                        total += len(await stream.receive(1 << 20))
                    except anyio.EndOfStream:
                        break
                await stream.send(str(total).encode())
            else:
                await stream.send(await read_all(stream))


async def open_echo_close(provider: StreamProvider, count: int, workers: int) -> float:
    """Streams per second: open, send 64 bytes, half-close, read the echo, close."""

    async def work(share: int) -> None:
        for _ in range(share):
            stream = await provider.open_stream()
            async with stream:
                await stream.send(MESSAGE)
                await stream.send_eof()
                if await read_all(stream) != MESSAGE:
                    raise AssertionError("the echo differs")

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(workers):
            group.start_soon(work, count // workers)
    return (count // workers * workers) / (time.perf_counter() - started)


async def bulk(provider: StreamProvider, size: int) -> float:
    """Megabytes per second through one stream to a sink."""
    started = time.perf_counter()
    stream = await provider.open_stream({"x-mode": "sink"})
    async with stream:
        for _ in range(size // len(CHUNK)):
            await stream.send(CHUNK)
        await stream.send_eof()
        answer = await read_all(stream)
    if int(answer) != size // len(CHUNK) * len(CHUNK):
        raise AssertionError(f"the sink counted {answer!r}")
    return size / (time.perf_counter() - started) / 1e6


@asynccontextmanager
async def served(backend: Backend, address: str) -> AsyncIterator[str]:
    async with backend.serve(address) as server, anyio.create_task_group() as group:
        group.start_soon(server.listener.serve, serve_stream)
        yield server.address
        group.cancel_scope.cancel()


Measure = Callable[[StreamProvider], Awaitable[float]]


async def compare(
    backend: Backend, address: str, measure: Measure, rounds: int
) -> tuple[float, float, float]:
    """Measure the backend alone and through the pool in *rounds* back-to-back pairs, on
    one connection each; medians of each side and of the per-pair ratios.

    Pairing short samples and taking medians keeps bursts of other load on the machine
    from landing on one side only.
    """
    plain: list[float] = []
    pooled: list[float] = []
    ratios: list[float] = []
    options = PoolOptions(min_connections=1, idle_timeout=None)
    async with (
        backend.connect(address) as provider,
        Pool([backend.dialer(address)], options=options) as pool,
    ):
        for side in (provider, pool):
            # one stream first, so that neither side's timing includes dialling
            await (await side.open_stream()).aclose()
        for index in range(rounds):
            # alternate which goes first, so that neither is always the warmer one
            if index % 2 == 0:
                a = await measure(provider)
                b = await measure(pool)
            else:
                b = await measure(pool)
                a = await measure(provider)
            plain.append(a)
            pooled.append(b)
            ratios.append(b / a)
    return statistics.median(plain), statistics.median(pooled), statistics.median(ratios)


def backends() -> list[tuple[Backend, str]]:
    from streams.backends import memory

    found: list[tuple[Backend, str]] = [(memory.BACKEND, "memory:bench-pool")]
    try:
        framer = importlib.import_module("streams.backends.framer")
    except ImportError:
        return found
    backend = getattr(framer, "BACKEND", None)
    if isinstance(backend, Backend):
        found.append((backend, "127.0.0.1:0"))
    return found


async def run(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    for backend, address in backends():
        async with served(backend, address) as where:
            scenarios: list[tuple[str, str, Measure]] = [
                (
                    "open-echo-close, 1 at a time",
                    "streams/s",
                    lambda p: open_echo_close(p, args.streams, 1),
                ),
                (
                    f"open-echo-close, {args.workers} at once",
                    "streams/s",
                    lambda p: open_echo_close(p, args.streams, args.workers),
                ),
                (
                    f"bulk {args.bulk_mb} MB, one stream",
                    "MB/s",
                    lambda p: bulk(p, args.bulk_mb * 1_000_000),
                ),
            ]
            for name, unit, measure in scenarios:
                baseline, pooled, ratio = await compare(backend, where, measure, args.rounds)
                results.append(Result(backend.name, name, unit, baseline, pooled, ratio))
    return results


def print_table(results: list[Result]) -> None:
    header = (
        f"{'backend':8} {'scenario':34} {'unit':10} {'unwrapped':>10} {'pool':>10} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.backend:8} {r.scenario:34} {r.unit:10} {r.baseline:10.1f} {r.pool:10.1f}"
            f" {r.ratio:7.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_pool", description=__doc__)
    add_loop_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--rounds", type=int, default=21, help="sample pairs per scenario")
    parser.add_argument("--streams", type=int, default=500, help="streams per sample")
    parser.add_argument("--workers", type=int, default=16, help="concurrent openers")
    parser.add_argument("--bulk-mb", type=int, default=64, help="megabytes per bulk sample")
    args = parser.parse_args(argv)
    collected: list[Result] = []

    async def body() -> int:
        collected.extend(await run(args))
        return 0

    code = run_async(body, args.loop)
    if args.json:
        rows: list[dict[str, Any]] = [dict(asdict(r), loop=args.loop) for r in collected]
        json.dump(rows, sys.stdout, indent=2)
        print()
    else:
        print_table(collected)
    return code


if __name__ == "__main__":
    sys.exit(main())
