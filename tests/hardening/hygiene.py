"""Resource hygiene of framer connections and streams: open and close many, and count the
file descriptors, tasks and traced memory before and after.

Shared by the suite's bounded checks (``test_hygiene.py``) and the long soak
(``python -m tests.hardening.soak``).
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from streams import Stream, StreamProvider
from streams.backends.framer import BACKEND

#: the echo everything runs against: the payload comes back, then end of file
PAYLOAD = b"ping"


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """What the process held at one moment."""

    fds: int
    tasks: int
    traced_bytes: int

    @classmethod
    def now(cls) -> Usage:
        """Measure, after a full garbage collection."""
        gc.collect()
        return cls(
            fds=len(os.listdir("/proc/self/fd")),
            tasks=len(anyio.get_running_tasks()),
            traced_bytes=tracemalloc.get_traced_memory()[0],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """Usage before and after *count* repetitions of something."""

    what: str
    count: int
    seconds: float
    before: Usage
    after: Usage

    @property
    def fd_growth(self) -> int:
        """File descriptors held after, beyond those held before."""
        return self.after.fds - self.before.fds

    @property
    def task_growth(self) -> int:
        """Tasks running after, beyond those running before."""
        return self.after.tasks - self.before.tasks

    @property
    def memory_growth(self) -> int:
        """Traced bytes after, beyond those before."""
        return self.after.traced_bytes - self.before.traced_bytes


async def _echo(stream: Stream) -> None:
    while True:
        try:
            data = await stream.receive()
        except anyio.EndOfStream:
            break
        await stream.send(data)
    await stream.send_eof()


async def _one_stream(provider: StreamProvider) -> None:
    stream = await provider.open_stream({"x-hygiene": "1"})
    async with stream:
        await stream.send(PAYLOAD)
        await stream.send_eof()
        received = b""
        while True:
            try:
                received += await stream.receive()
            except anyio.EndOfStream:
                break
        assert received == PAYLOAD


async def _settle(condition: Callable[[], bool], seconds: float = 10) -> None:
    # the server's side of a connection ends a moment after the client's
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.01)


async def _measured(
    what: str, count: int, warm_up: int, run: Callable[[int], Awaitable[None]]
) -> Result:
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        # the first rounds fill caches and pools that stay (imports, anyio's, the codec's)
        await run(warm_up)
        before = Usage.now()
        started = time.perf_counter()
        await run(count)
        seconds = time.perf_counter() - started
        # a few turns so that tasks that just finished are gone
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        after = Usage.now()
    finally:
        if not tracing:
            tracemalloc.stop()
    return Result(what=what, count=count, seconds=seconds, before=before, after=after)


async def connections(count: int, *, concurrency: int = 4, warm_up: int = 50) -> Result:
    """Open and close *count* framer connections over loopback TCP, one echoed stream on
    each, *concurrency* at a time."""
    async with BACKEND.serve("127.0.0.1:0") as server, anyio.create_task_group() as group:
        group.start_soon(server.listener.serve, _echo)

        async def run(total: int) -> None:
            async def worker(share: int) -> None:
                for _ in range(share):
                    async with BACKEND.connect(server.address) as provider:
                        await _one_stream(provider)

            async with anyio.create_task_group() as workers:
                for index in range(concurrency):
                    workers.start_soon(worker, total // concurrency + (index < total % concurrency))
            await _settle(lambda: not server.connections)

        result = await _measured("framer connections", count, warm_up, run)
        group.cancel_scope.cancel()
    return result


async def streams(count: int, *, concurrency: int = 16, warm_up: int = 200) -> Result:
    """Open and close *count* echoed streams on one framer connection, *concurrency* at a
    time."""
    async with BACKEND.serve("127.0.0.1:0") as server, anyio.create_task_group() as group:
        group.start_soon(server.listener.serve, _echo)
        async with BACKEND.connect(server.address) as provider:

            async def run(total: int) -> None:
                async def worker(share: int) -> None:
                    for _ in range(share):
                        await _one_stream(provider)

                async with anyio.create_task_group() as workers:
                    for index in range(concurrency):
                        share = total // concurrency + (index < total % concurrency)
                        workers.start_soon(worker, share)

            result = await _measured("streams on one framer connection", count, warm_up, run)
        group.cancel_scope.cancel()
    return result
