"""In-process servers for the pool tests: memory servers that count the streams they get
and echo them."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import count
from typing import Any

import anyio
import anyio.abc

from streams import ConnectionLost, Headers, Stream
from streams._core.server import StreamServer
from streams.backends import memory
from streams.testing import read_all
from streams.wrappers.pool import Pool

_unique = count()


def unique(prefix: str) -> str:
    """A memory address no other test uses."""
    return f"memory:{prefix}-{next(_unique)}"


async def echo(stream: Stream) -> None:
    """Echo everything back, then half-close."""
    async with stream:
        # the opener may leave without reading the echo
        with contextlib.suppress(anyio.BrokenResourceError):
            await stream.send(await read_all(stream))


class Farm:
    """Memory servers by address, counting the streams each accepted. Each server runs in
    its own task, so servers start and stop in any order."""

    def __init__(self, group: anyio.abc.TaskGroup) -> None:
        self.group = group
        self.counts: Counter[str] = Counter()
        self.servers: dict[str, StreamServer] = {}
        self._stops: dict[str, anyio.Event] = {}
        self._done: dict[str, anyio.Event] = {}

    async def start(self, address: str) -> StreamServer:
        """Serve *address* (again); its streams are echoed."""
        server: StreamServer = await self.group.start(self._run, address)
        return server

    async def _run(self, address: str, *, task_status: anyio.abc.TaskStatus[Any]) -> None:
        def handler(headers: Headers) -> tuple[Any, bool]:
            self.counts[address] += 1
            return ({"x-server": address}, True)

        stop = self._stops[address] = anyio.Event()
        done = self._done[address] = anyio.Event()
        try:
            async with (
                memory.BACKEND.serve(address, handler=handler) as server,
                anyio.create_task_group() as group,
            ):
                self.servers[address] = server
                group.start_soon(server.listener.serve, echo)
                task_status.started(server)
                await stop.wait()
                group.cancel_scope.cancel()
        finally:
            done.set()

    async def stop(self, address: str) -> None:
        """Kill *address*: its connections fail, and dials to it fail until restarted."""
        server = self.servers.pop(address)
        for provider in server.connections:
            assert isinstance(provider, memory.MemoryProvider)
            provider._break(ConnectionLost("the server was killed"))
        self._stops[address].set()
        await self._done[address].wait()

    async def aclose(self) -> None:
        for address in list(self.servers):
            self.servers.pop(address)
            self._stops[address].set()
            await self._done[address].wait()


@asynccontextmanager
async def farm(*addresses: str) -> AsyncIterator[Farm]:
    """Serve *addresses*; everything stops when the block ends."""
    async with anyio.create_task_group() as group:
        servers = Farm(group)
        try:
            for address in addresses:
                await servers.start(address)
            yield servers
        finally:
            await servers.aclose()
            group.cancel_scope.cancel()


def connections(pool: Pool, state: str = "ready") -> dict[str, int]:
    """How many connections in *state* each endpoint has."""
    found: dict[str, int] = {}
    for endpoint in pool.describe()["endpoints"]:
        found[endpoint["endpoint"]] = sum(
            1 for conn in endpoint["connection_list"] if conn["state"] == state
        )
    return found


async def wait_for(predicate: Any, within: float = 5.0, what: str = "condition") -> None:
    """Poll *predicate* until it is true, failing after *within* seconds."""
    with anyio.fail_after(within):
        while not predicate():
            await anyio.sleep(0.01)
