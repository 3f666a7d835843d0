"""A pool and the servers behind it as a conformance :class:`ProviderPair`, for any backend.

The client is a :class:`Pool` dialling one endpoint served by *backend* at *address*. The
server is :class:`ServerSide`: every connection the server accepted from the pool, seen as
one provider (its listener is the server's merged listener, and the handler the checks
pass to ``listen()`` decides the streams of all connections). The pool may spread a check's
streams over several connections (``check_many_concurrent_streams`` makes it grow), which
is what makes running the suite through it meaningful.

``break_connection`` breaks every connection with *break_link* and then stops the server,
so the pool cannot simply dial again: the pool must then fail opens with a connection
error naming the endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from streams import (
    ConnectionLost,
    Handler,
    Headers,
    HeadersLike,
    Listener,
    ProviderClosed,
    Stream,
    StreamProvider,
)
from streams._core.backend import Backend
from streams._core.server import StreamServer
from streams.testing import ProviderPair
from streams.wrappers.balance import Policy
from streams.wrappers.pool import Pool, PoolOptions

BreakLink = Callable[[StreamProvider], Awaitable[None]]

#: options that let the pool grow to carry the suite's 1,000 concurrent streams
CONFORMANCE_OPTIONS = PoolOptions(
    min_connections=1,
    max_streams_per_connection=100,
    max_connections_per_endpoint=16,
    idle_timeout=None,
)


class ServerSide(StreamProvider):
    """The server's connections from one pool, as a single provider."""

    def __init__(self) -> None:
        self.server: StreamServer | None = None
        self._handler: Handler | None = None
        self._closed = False

    def decide(self, headers: Headers) -> Any:
        """The handler the server runs: whatever the last ``listen()`` asked for."""
        if self._handler is None:
            return (None, True)
        return self._handler(headers)

    @property
    def _connections(self) -> list[StreamProvider]:
        assert self.server is not None
        return self.server.connections

    async def open_stream(
        self, headers: HeadersLike | None = None, *, wait_accept: bool = True
    ) -> Stream:
        if self._closed:
            raise ProviderClosed()
        connections = self._connections
        if not connections:
            raise ConnectionLost("no connection from the pool")
        usable = [conn for conn in connections if not conn.is_closing] or connections
        return await usable[0].open_stream(headers, wait_accept=wait_accept)

    def listen(self, handler: Handler | None = None) -> Listener:
        assert self.server is not None
        self._handler = handler
        return self.server.listener

    async def aclose(self, *, grace: float | None = None) -> None:
        self._closed = True
        assert self.server is not None
        await self.server.aclose(grace=grace)

    async def wait_closed(self) -> None:
        for conn in self._connections:
            await conn.wait_closed()

    @property
    def is_closing(self) -> bool:
        return self._closed or all(conn.is_closing for conn in self._connections)

    @property
    def active_streams(self) -> int:
        return sum(conn.active_streams for conn in self._connections)


@asynccontextmanager
async def pool_pair(
    backend: Backend,
    address: str,
    *,
    options: PoolOptions = CONFORMANCE_OPTIONS,
    policy: str | Policy = "least_active",
    break_link: BreakLink | None = None,
) -> AsyncIterator[ProviderPair]:
    """Serve *backend* on *address*, run a pool against it, yield the pair; both close
    when the block ends. *break_link* kills one server-side connection abruptly."""
    side = ServerSide()
    async with backend.serve(address, handler=side.decide) as server:
        side.server = server
        async with Pool([backend.dialer(server.address)], options=options, policy=policy) as pool:
            with anyio.fail_after(10):
                while not server.connections:
                    await anyio.sleep(0.005)

            async def break_connection() -> None:
                assert break_link is not None
                for provider in server.connections:
                    await break_link(provider)
                await server.aclose(grace=0)

            yield ProviderPair(
                client=pool,
                server=side,
                break_connection=break_connection if break_link is not None else None,
            )
