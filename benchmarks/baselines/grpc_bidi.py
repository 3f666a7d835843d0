"""What Python users pick for pooled streams between services: ``grpcio``'s asyncio API
(its C core included) with one bidirectional-streaming method carrying raw bytes.

No ``.proto`` and no ``protoc``: the service is a generic handler whose (de)serializers are
``None``, so messages travel as the bytes given. ``/bench.Bench/Echo`` echoes each message
and ends when the client half-closes; ``/bench.Bench/Sink`` counts the bytes and answers the
count. Client and server run in this process on one loopback channel, like every other
subject. grpcio's asyncio API runs on asyncio only (not on trio; not measured on uvloop,
which its documentation does not support).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

from .. import _workloads as workloads
from .._common import Stopwatch
from .._workloads import MESSAGE, Sizes

NAME = "grpcio"
LOOPS = ("asyncio",)
EXTRA = "bench"
CHUNK = 1024 * 1024
# the C core logs each GOAWAY at shutdown to stderr otherwise
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
_OPTIONS = [
    ("grpc.max_send_message_length", 4 * CHUNK),
    ("grpc.max_receive_message_length", 4 * CHUNK),
]


def missing() -> str | None:
    """Why this baseline cannot run here, or ``None``."""
    try:
        import grpc  # noqa: F401
    except ImportError:
        return "grpcio is not installed (pip install 'streams[bench]')"
    return None


async def _echo(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    await context.send_initial_metadata(())
    async for message in requests:
        yield message


async def _sink(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    await context.send_initial_metadata(())
    total = 0
    async for message in requests:
        total += len(message)
    yield str(total).encode()


@contextlib.asynccontextmanager
async def _channel() -> AsyncIterator[Any]:
    import grpc
    import grpc.aio

    handler = grpc.method_handlers_generic_handler(
        "bench.Bench",
        {
            "Echo": grpc.stream_stream_rpc_method_handler(_echo),
            "Sink": grpc.stream_stream_rpc_method_handler(_sink),
        },
    )
    server = grpc.aio.server(options=_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=_OPTIONS) as channel:
            await channel.channel_ready()
            yield channel
    finally:
        await server.stop(grace=None)


async def _exchange(echo: Any, latencies: list[float] | None = None) -> None:
    import grpc.aio

    started = time.perf_counter()
    call = echo()
    if latencies is not None:
        # the counterpart of an accepted open: the server's initial metadata
        await call.initial_metadata()
        latencies.append(time.perf_counter() - started)
    await call.write(MESSAGE)
    await call.done_writing()
    received = b""
    while (message := await call.read()) is not grpc.aio.EOF:
        received += message
    if received != MESSAGE:
        raise AssertionError("the echo differs")


async def measure(sizes: Sizes, memory: bool) -> dict[str, float]:
    """Bulk through one call, and calls per second sequentially and 100 at once."""
    del memory  # the C core's memory is invisible to tracemalloc
    import grpc.aio

    results: dict[str, float] = {}
    async with _channel() as channel:
        sink = channel.stream_stream("/bench.Bench/Sink")
        echo = channel.stream_stream("/bench.Bench/Echo")
        await _exchange(echo)
        block = b"b" * CHUNK
        count = sizes.bulk_bytes // CHUNK
        with Stopwatch() as watch:
            call = sink()
            for _ in range(count):
                await call.write(block)
            await call.done_writing()
            answer = await call.read()
            assert answer is not grpc.aio.EOF
        if int(answer) != count * CHUNK:
            raise AssertionError(f"the sink counted {answer!r}")
        results["bulk"] = count * CHUNK / watch.seconds / 1e6

        latencies: list[float] = []
        with Stopwatch() as watch:
            for _ in range(sizes.opens):
                await _exchange(echo, latencies)
        results["rate"] = sizes.opens / watch.seconds
        results["open_p50"] = workloads.percentile(latencies, 0.5) * 1e6
        results["open_p99"] = workloads.percentile(latencies, 0.99) * 1e6

        share = max(sizes.concurrent_opens // workloads.CONCURRENCY, 1)

        async def worker() -> None:
            for _ in range(share):
                await _exchange(echo)

        with Stopwatch() as watch:
            async with anyio.create_task_group() as group:
                for _ in range(workloads.CONCURRENCY):
                    group.start_soon(worker)
        results["rate_100"] = share * workloads.CONCURRENCY / watch.seconds
    return results
