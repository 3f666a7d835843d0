"""How the conformance suite receives the providers it checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import anyio

from .._core.abc import Listener, Stream, StreamProvider
from .._core.headers import HeadersLike

__all__ = [
    "ConformanceOptions",
    "PairFactory",
    "ProviderPair",
    "open_pair",
    "stream_pair",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderPair:
    """Two providers connected to each other, and optionally a way to kill their link."""

    #: the side that dialled
    client: StreamProvider
    #: the side that accepted the connection
    server: StreamProvider
    #: breaks the connection abruptly (as a dead network would), if the transport can
    break_connection: Callable[[], Awaitable[None]] | None = None


PairFactory = Callable[[], AbstractAsyncContextManager[ProviderPair]]
"""Makes a fresh :class:`ProviderPair`, closing both providers when the block ends."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConformanceOptions:
    """What the suite may assume about the providers under test."""

    #: the most a stream may buffer between a sender and a reader who does not read, in
    #: bytes (the receive window plus what the transport holds)
    max_buffered_per_stream: int = 8 * 1024 * 1024
    #: seconds within which closing a provider must fail every pending operation
    close_bound: float = 10.0
    #: seconds one check may take at most
    timeout: float = 60.0
    #: bytes sent through one stream in the bulk check
    bulk_bytes: int = 64 * 1024 * 1024
    #: streams open at once in the concurrency check
    concurrent_streams: int = 1000


@asynccontextmanager
async def open_pair(factory: PairFactory) -> AsyncIterator[ProviderPair]:
    """Enter *factory* and yield its pair (accepting plain ``(client, server)`` tuples)."""
    async with factory() as made:
        if isinstance(made, tuple):
            client, server = made
            yield ProviderPair(client=client, server=server)
        else:
            yield made


async def stream_pair(
    opener: StreamProvider,
    listener: Listener,
    headers: HeadersLike | None = None,
) -> tuple[Stream, Stream]:
    """Open a stream on *opener* and accept it from *listener*: ``(opened, accepted)``."""
    result: list[Stream] = []

    async def accept() -> None:
        result.append(await listener.accept())

    async with anyio.create_task_group() as group:
        group.start_soon(accept)
        opened = await opener.open_stream(headers)
    return opened, result[0]
