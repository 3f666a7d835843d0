"""Workloads over any pair of providers, so that a wrapper or a backend is measured with
exactly the loop its baseline runs; and the raw TCP baselines they are compared with.

Every provider workload takes the opening side (*client*) and the :class:`Listener` where
the opened streams arrive, so a backend, a wrapped stack and a baseline that offers the same
two objects all run the identical loop.
"""

from __future__ import annotations

import contextlib
import gc
import math
import socket
import time
import tracemalloc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import anyio
import anyio.abc

from streams import Listener, Stream, StreamProvider

from ._common import Stopwatch

MESSAGE = b"m" * 64
#: the streams of the many-stream and concurrent workloads
CONCURRENCY = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    """How much each workload does: the same for every subject and baseline of a run."""

    #: bytes through one stream for the bulk figure
    bulk_bytes: int
    #: streams opened one after another for the sequential rate and the open latency
    opens: int
    #: streams opened for the rate at :data:`CONCURRENCY` at once
    concurrent_opens: int
    #: seconds of the many-stream throughput and fairness figure
    many_seconds: float
    #: idle streams held open for the memory figure
    idle_streams: int
    #: interleaved rounds of the timed figures; the best of each is kept
    rounds: int


#: the full run: the figures in ``docs/performance.md``
FULL = Sizes(
    bulk_bytes=64 * 1024 * 1024,
    opens=1000,
    concurrent_opens=2000,
    many_seconds=0.5,
    idle_streams=10_000,
    rounds=3,
)
#: ``--quick``: about half a minute a loop
QUICK = Sizes(
    bulk_bytes=32 * 1024 * 1024,
    opens=300,
    concurrent_opens=1000,
    many_seconds=0.3,
    idle_streams=1000,
    rounds=1,
)
#: the smoke test's: only shows that everything runs
TINY = Sizes(
    bulk_bytes=2 * 1024 * 1024,
    opens=20,
    concurrent_opens=200,
    many_seconds=0.05,
    idle_streams=100,
    rounds=1,
)


async def _echo(stream: anyio.abc.ByteStream) -> None:
    async with stream:
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                await stream.send(await stream.receive())
        await stream.send_eof()


async def open_echo_close(
    client: StreamProvider,
    listener: Listener,
    rounds: int,
    *,
    wait_accept: bool = True,
    latencies: list[float] | None = None,
) -> float:
    """Streams per second: open, echo 64 bytes, close, one after another; *listener* is
    where the opened streams arrive. When *latencies* is given, the seconds each
    ``open_stream`` call took are appended to it."""
    clock = time.perf_counter
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, _echo)
        with Stopwatch() as watch:
            for _ in range(rounds):
                opening = clock()
                stream = await client.open_stream(wait_accept=wait_accept)
                if latencies is not None:
                    latencies.append(clock() - opening)
                await stream.send(MESSAGE)
                await stream.send_eof()
                received = b""
                with contextlib.suppress(anyio.EndOfStream):
                    while True:
                        received += await stream.receive()
                assert received == MESSAGE
                await stream.aclose()
        group.cancel_scope.cancel()
    return rounds / watch.seconds


async def bulk(
    client: StreamProvider, listener: Listener, total: int, chunk: int = 1024 * 1024
) -> float:
    """MB/s through one stream, *total* bytes in *chunk*-sized sends."""
    block = b"b" * chunk
    received = 0
    with Stopwatch() as watch:
        stream = await client.open_stream()
        accepted = await listener.accept()

        async def send() -> None:
            for _ in range(total // chunk):
                await stream.send(block)
            await stream.send_eof()

        async with anyio.create_task_group() as group:
            group.start_soon(send)
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    received += len(await accepted.receive(chunk))
    assert received == total // chunk * chunk
    await stream.aclose()
    await accepted.aclose()
    return received / watch.seconds / 1e6


async def tcp_pair() -> tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]:
    """Two ends of a loopback TCP connection with Nagle off, as the backends have it."""
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    listener = multi.listeners[0]
    async with listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client = await anyio.connect_tcp("127.0.0.1", port)
        server = await listener.accept()  # type: ignore[attr-defined]
    for end in (client, server):
        end.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
    return client, server


async def raw_bulk(read_size: int, total: int, chunk: int = 1024 * 1024) -> float:
    """MB/s of raw anyio TCP: *total* bytes in *chunk* sends, read *read_size* at a time."""
    client, server = await tcp_pair()
    block = b"b" * chunk

    async def send() -> None:
        for _ in range(total // chunk):
            await client.send(block)
        await client.send_eof()

    received = 0
    with Stopwatch() as watch:
        async with anyio.create_task_group() as group:
            group.start_soon(send)
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    received += len(await server.receive(read_size))
    assert received == total // chunk * chunk
    await client.aclose()
    await server.aclose()
    return received / watch.seconds / 1e6


async def raw_ping_pong(rounds: int) -> float:
    """Round trips per second of 64 bytes over raw anyio TCP."""
    client, server = await tcp_pair()

    async def echo() -> None:
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                await server.send(await server.receive())

    async with anyio.create_task_group() as group:
        group.start_soon(echo)
        with Stopwatch() as watch:
            for _ in range(rounds):
                await client.send(MESSAGE)
                received = b""
                while len(received) < len(MESSAGE):
                    received += await client.receive()
        await client.send_eof()
    await client.aclose()
    await server.aclose()
    return rounds / watch.seconds


async def _exchange(stream: Stream) -> None:
    await stream.send(MESSAGE)
    await stream.send_eof()
    received = b""
    with contextlib.suppress(anyio.EndOfStream):
        while True:
            received += await stream.receive()
    if received != MESSAGE:
        raise AssertionError(f"echoed {len(received)} bytes of {len(MESSAGE)}")
    await stream.aclose()


async def concurrent_open_echo_close(
    client: StreamProvider,
    listener: Listener,
    total: int,
    concurrency: int = CONCURRENCY,
    *,
    wait_accept: bool = True,
) -> float:
    """Streams per second: *concurrency* tasks each open, echo 64 bytes and close, one
    after another, until *total* streams (rounded down to a multiple) are done."""
    share = max(total // concurrency, 1)

    async def worker() -> None:
        for _ in range(share):
            await _exchange(await client.open_stream(wait_accept=wait_accept))

    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, _echo)
        with Stopwatch() as watch:
            async with anyio.create_task_group() as workers:
                for _ in range(concurrency):
                    workers.start_soon(worker)
        group.cancel_scope.cancel()
    return share * concurrency / watch.seconds


async def many_streams(
    client: StreamProvider,
    listener: Listener,
    seconds: float,
    streams: int = CONCURRENCY,
    chunk: int = 64 * 1024,
) -> tuple[float, float]:
    """(total MB/s, slowest stream's bytes / fastest's) with *streams* streams sending at
    once for *seconds*, after as long again to let the windows grow and settle (SSH ramps
    up over the first few tenths of a second)."""
    pairs: list[tuple[Stream, Stream]] = []
    for _ in range(streams):
        pairs.append((await client.open_stream(), await listener.accept()))
    counts = [0] * streams
    block = b"f" * chunk
    ended = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream)

    async def send(stream: Stream) -> None:
        with contextlib.suppress(*ended):
            while True:
                await stream.send(block)

    async def receive(index: int, stream: Stream) -> None:
        with contextlib.suppress(*ended):
            while True:
                counts[index] += len(await stream.receive(1 << 20))

    async with anyio.create_task_group() as group:
        for index, (opened, accepted) in enumerate(pairs):
            group.start_soon(send, opened)
            group.start_soon(receive, index, accepted)
        await anyio.sleep(seconds)
        start = list(counts)
        with Stopwatch() as watch:
            await anyio.sleep(seconds)
        moved = [now - then for now, then in zip(counts, start, strict=True)]
        group.cancel_scope.cancel()
    await _reset_all(stream for pair in pairs for stream in pair)
    return sum(moved) / watch.seconds / 1e6, min(moved) / max(max(moved), 1)


async def _reset_all(streams: Iterable[Stream]) -> None:
    # a bounded, shielded clean-up: these streams may still have data in flight
    with anyio.move_on_after(10, shield=True):
        for stream in streams:
            with contextlib.suppress(Exception):
                await stream.reset()


async def idle_memory(client: StreamProvider, listener: Listener, count: int) -> float:
    """Bytes of Python memory (tracemalloc) per idle open stream, both ends together,
    with *count* streams open at once."""
    opened: list[Stream] = []
    accepted: list[Stream] = []
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        async with anyio.create_task_group() as group:

            async def accept_all() -> None:
                for _ in range(count):
                    accepted.append(await listener.accept())

            group.start_soon(accept_all)
            for _ in range(count):
                opened.append(await client.open_stream(wait_accept=False))
        for stream in opened:
            await stream.accepted()
        await anyio.sleep(0.1)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    await _reset_all([*opened, *accepted])
    return (after - before) / count


async def new_connection_per_exchange(rounds: int, concurrency: int = 1) -> float:
    """Exchanges per second when every exchange is a new loopback TCP connection: connect,
    send 64 bytes, half-close, read the echo to its end, close; *concurrency* at once."""
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = multi.extra(anyio.abc.SocketAttribute.local_port)
    share = max(rounds // concurrency, 1)

    async def worker() -> None:
        for _ in range(share):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                stream.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(
                    socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
                )
                await stream.send(MESSAGE)
                await stream.send_eof()
                received = b""
                with contextlib.suppress(anyio.EndOfStream):
                    while True:
                        received += await stream.receive()
                if received != MESSAGE:
                    raise AssertionError("the echo differs")

    async with multi, anyio.create_task_group() as group:
        group.start_soon(multi.serve, _echo)
        with Stopwatch() as watch:
            async with anyio.create_task_group() as workers:
                for _ in range(concurrency):
                    workers.start_soon(worker)
        group.cancel_scope.cancel()
    return share * concurrency / watch.seconds


def percentile(values: Sequence[float], fraction: float) -> float:
    """The *fraction* (0..1) percentile of *values* by the nearest-rank method; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]
