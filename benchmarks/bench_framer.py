"""The framer against raw anyio TCP on the same event loop, in one run.

* bulk: one stream, 1 MiB sends, against raw TCP whose receiver reads 64 KiB and 256 KiB
  (the ratio is to the better of the two);
* open-echo-close: a stream opened, 64 bytes echoed, closed, one after another, against
  raw TCP ping-pong round trips of 64 bytes; with the default open and with
  ``wait_accept=False``;
* memory per idle open stream with 10,000 streams open (tracemalloc, both ends);
* fairness: 100 streams sending at once; the slowest stream's bytes over the fastest's.

Timed figures are measured in 3 interleaved rounds (baseline, then framer) and the best
of each is kept.

    python -m benchmarks.bench_framer [--json] [--loop asyncio|uvloop|trio|all]
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import anyio.abc

from streams.backends.framer import FramerProvider, FramerSettings

from . import _workloads as workloads
from ._common import Figure, Stopwatch, main

BULK_BYTES = 256 * 1024 * 1024
CHUNK = 1024 * 1024
ROUND_TRIPS = 3000
IDLE_STREAMS = 10_000
FAIR_STREAMS = 100
FAIR_SECONDS = 2.0
MESSAGE = b"m" * 64
#: rounds of the timed figures; the best of each is kept
ROUNDS = 3

SETTINGS = FramerSettings(
    close_grace=0.5,
    max_incoming_streams=2 * IDLE_STREAMS,
    accept_backlog=2 * IDLE_STREAMS,
    # the idle-memory figure resets its 10,000 streams at once: a benchmark, not a flood
    resets_per_second=0,
)


async def tcp_pair() -> tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]:
    return await workloads.tcp_pair()


@contextlib.asynccontextmanager
async def framer_pair(
    settings: FramerSettings = SETTINGS,
) -> AsyncIterator[tuple[FramerProvider, FramerProvider]]:
    client_stream, server_stream = await tcp_pair()
    client = FramerProvider(client_stream, client=True, settings=settings)
    server = FramerProvider(server_stream, client=False, settings=settings)
    async with client, server:
        yield client, server


# -- bulk ----------------------------------------------------------------------------------


async def raw_bulk(read_size: int) -> float:
    return await workloads.raw_bulk(read_size, BULK_BYTES, CHUNK)


async def framer_bulk() -> float:
    async with framer_pair() as (client, server):
        return await workloads.bulk(client, server.listen(), BULK_BYTES, CHUNK)


# -- open, echo, close ----------------------------------------------------------------------


async def raw_ping_pong() -> float:
    return await workloads.raw_ping_pong(ROUND_TRIPS)


async def framer_open_echo_close(wait_accept: bool) -> float:
    async with framer_pair() as (client, server):
        return await workloads.open_echo_close(
            client, server.listen(), ROUND_TRIPS, wait_accept=wait_accept
        )


async def memory_backend_open_echo_close() -> float:
    """The same loop on the in-process memory backend: the floor that the shared stream
    machinery sets, with no transport, reader or writer at all."""
    from streams._core.mux import MuxSettings
    from streams.backends import memory

    async with memory.pair(MuxSettings(close_grace=0.5)) as (client, server):
        listener = server.listen()

        async def echo(stream: anyio.abc.ByteStream) -> None:
            async with stream:
                with contextlib.suppress(anyio.EndOfStream):
                    while True:
                        await stream.send(await stream.receive())
                await stream.send_eof()

        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, echo)
            with Stopwatch() as watch:
                for _ in range(ROUND_TRIPS):
                    stream = await client.open_stream(wait_accept=False)
                    await stream.send(MESSAGE)
                    await stream.send_eof()
                    with contextlib.suppress(anyio.EndOfStream):
                        while True:
                            await stream.receive()
                    await stream.aclose()
            group.cancel_scope.cancel()
    return ROUND_TRIPS / watch.seconds


# -- memory ----------------------------------------------------------------------------------


async def memory_per_idle_stream() -> tuple[float, float]:
    """Bytes per idle open stream: (per end, both ends together)."""
    async with framer_pair() as (client, server):
        both = await workloads.idle_memory(client, server.listen(), IDLE_STREAMS)
    return both / 2, both


# -- fairness --------------------------------------------------------------------------------


async def fairness() -> tuple[float, float]:
    """(slowest / fastest stream, total MB/s) with 100 streams sending at once."""
    async with framer_pair() as (client, server):
        listener = server.listen()
        counts = [0] * FAIR_STREAMS
        block = b"f" * (64 * 1024)
        streams = []
        for _ in range(FAIR_STREAMS):
            streams.append((await client.open_stream(), await listener.accept()))
        async with anyio.create_task_group() as group:

            async def send(stream: anyio.abc.ByteStream) -> None:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    while True:
                        await stream.send(block)

            async def receive(index: int, stream: anyio.abc.ByteStream) -> None:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    while True:
                        counts[index] += len(await stream.receive(1 << 20))

            for index, (opened, accepted) in enumerate(streams):
                group.start_soon(send, opened)
                group.start_soon(receive, index, accepted)
            await anyio.sleep(FAIR_SECONDS / 4)  # let the windows settle
            start = list(counts)
            await anyio.sleep(FAIR_SECONDS)
            moved = [now - then for now, then in zip(counts, start, strict=True)]
            group.cancel_scope.cancel()
        for opened, accepted in streams:
            opened.close_now()  # type: ignore[attr-defined]
            accepted.close_now()  # type: ignore[attr-defined]
    return min(moved) / max(max(moved), 1), sum(moved) / FAIR_SECONDS / 1e6


async def measure(loop: str) -> list[Figure]:
    # the machine may be shared: interleave each figure with its baseline and keep the
    # best of a few rounds of each, so that a busy moment does not decide a ratio
    raw_64k = raw_256k = bulk = ping_pong = default_open = fast_open = floor = 0.0
    for _ in range(ROUNDS):
        raw_64k = max(raw_64k, await raw_bulk(64 * 1024))
        raw_256k = max(raw_256k, await raw_bulk(256 * 1024))
        bulk = max(bulk, await framer_bulk())
        ping_pong = max(ping_pong, await raw_ping_pong())
        default_open = max(default_open, await framer_open_echo_close(wait_accept=True))
        fast_open = max(fast_open, await framer_open_echo_close(wait_accept=False))
        floor = max(floor, await memory_backend_open_echo_close())
    raw_best = max(raw_64k, raw_256k)
    per_end, both_ends = await memory_per_idle_stream()
    fair, fair_rate = await fairness()
    raw_name = "raw TCP, 256 KiB reads" if raw_256k >= raw_64k else "raw TCP, 64 KiB reads"
    return [
        Figure(name="raw TCP bulk, 64 KiB reads", value=raw_64k, unit="MB/s", loop=loop),
        Figure(name="raw TCP bulk, 256 KiB reads", value=raw_256k, unit="MB/s", loop=loop),
        Figure(
            name="framer bulk, one stream",
            value=bulk,
            unit="MB/s",
            loop=loop,
            baseline=raw_best,
            baseline_name=raw_name,
            target=0.8,
        ),
        Figure(name="raw TCP ping-pong", value=ping_pong, unit="round trips/s", loop=loop),
        Figure(
            name="open-echo-close (default open)",
            value=default_open,
            unit="streams/s",
            loop=loop,
            baseline=ping_pong,
            baseline_name="raw ping-pong",
            target=0.35,
        ),
        Figure(
            name="open-echo-close (wait_accept=False)",
            value=fast_open,
            unit="streams/s",
            loop=loop,
            baseline=ping_pong,
            baseline_name="raw ping-pong",
            target=0.6,
        ),
        Figure(
            name="open-echo-close, memory backend (no I/O)",
            value=floor,
            unit="streams/s",
            loop=loop,
            baseline=ping_pong,
            baseline_name="raw ping-pong",
        ),
        Figure(
            name="memory per idle stream, per end",
            value=per_end,
            unit="bytes",
            loop=loop,
            target=4096,
            target_kind="max",
        ),
        Figure(name="memory per idle stream, both ends", value=both_ends, unit="bytes", loop=loop),
        Figure(
            name="fairness, slowest/fastest of 100",
            value=fair,
            unit="ratio",
            loop=loop,
            target=0.6,
        ),
        Figure(name="fairness, total of 100 streams", value=fair_rate, unit="MB/s", loop=loop),
    ]


if __name__ == "__main__":
    raise SystemExit(main(measure, "framer vs raw anyio TCP"))
