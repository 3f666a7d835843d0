"""Serving: a listener that merges the streams of many connections, and the server that
accepts connections and runs a provider on each."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel

from .abc import Handler, Listener, Stream, StreamProvider
from .errors import ErrorCode, GoingAway, StreamClosed

__all__ = ["ConnectionServer", "MergedListener", "StreamServer"]

logger = logging.getLogger("streams.server")


class MergedListener(Listener):
    """One listener fed with the streams of many connections (a server's, or a pool's).

    :param backlog: streams queued for :meth:`accept`; more are reset with
        ``REFUSED_STREAM`` by whoever feeds them
    """

    def __init__(self, backlog: int = 1024) -> None:
        self._backlog = backlog
        self._items: deque[Stream | BaseException] = deque()
        self._waiter: anyio.Event | None = None
        self._closed = False
        self._ended: BaseException | None = None

    def feed(self, item: Stream | BaseException) -> bool:
        """Queue a stream (or an error for :meth:`accept` to raise); ``False`` if full."""
        if self._closed or self._ended is not None or len(self._items) >= self._backlog:
            return False
        self._items.append(item)
        self._wake()
        return True

    def end(self, error: BaseException) -> None:
        """No more streams will come: :meth:`accept` raises *error* once the queue is empty."""
        if self._ended is None:
            self._ended = error
            self._wake()

    @property
    def closed(self) -> bool:
        """``True`` once :meth:`aclose` was called."""
        return self._closed

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.set()

    async def accept(self) -> Stream:
        while True:
            if self._closed:
                raise StreamClosed("listener is closed")
            if self._items:
                item = self._items.popleft()
                if isinstance(item, BaseException):
                    raise item
                await anyio.lowlevel.checkpoint()
                return item
            if self._ended is not None:
                raise self._ended
            waiter = self._waiter = anyio.Event()
            await waiter.wait()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        while self._items:
            item = self._items.popleft()
            if isinstance(item, Stream):
                with anyio.CancelScope(shield=True):
                    await item.reset(ErrorCode.REFUSED_STREAM)
        self._wake()
        await anyio.lowlevel.cancel_shielded_checkpoint()


class StreamServer(ABC):
    """A running server of one backend: it accepts connections and offers the streams
    their peers open through one :attr:`listener`. An async context manager."""

    @property
    @abstractmethod
    def listener(self) -> Listener:
        """The streams opened by the peers of every connection."""

    @property
    @abstractmethod
    def address(self) -> str:
        """Where the server listens (with the real port when port 0 was asked for)."""

    @property
    @abstractmethod
    def connections(self) -> list[StreamProvider]:
        """The providers of the connections open right now."""

    @abstractmethod
    async def aclose(self, *, grace: float | None = None) -> None:
        """Stop accepting, close every connection gracefully within *grace*."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None


ProviderFactory = Callable[[anyio.abc.ByteStream], AbstractAsyncContextManager[StreamProvider]]


class ConnectionServer(StreamServer):
    """A :class:`StreamServer` for backends that run on byte streams.

    :param byte_listener: where connections come from (TCP, TLS, Unix)
    :param make_provider: runs the backend on one accepted byte stream (an async context
        manager giving the connection's provider)
    :param handler: decides each stream, as in :meth:`StreamProvider.listen`
    :param address: how to describe where it listens
    :param backlog: streams queued for :meth:`Listener.accept` across all connections
    """

    def __init__(
        self,
        byte_listener: anyio.abc.Listener[anyio.abc.ByteStream],
        make_provider: ProviderFactory,
        handler: Handler | None = None,
        *,
        address: str = "",
        backlog: int = 1024,
    ) -> None:
        self._byte_listener = byte_listener
        self._make_provider = make_provider
        self._handler = handler
        self._address = address
        self._merged = MergedListener(backlog)
        self._providers: set[StreamProvider] = set()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closing = False

    @property
    def listener(self) -> Listener:
        return self._merged

    @property
    def address(self) -> str:
        return self._address

    @property
    def connections(self) -> list[StreamProvider]:
        return list(self._providers)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._byte_listener.extra_attributes

    async def __aenter__(self) -> Self:
        group = anyio.create_task_group()
        await group.__aenter__()
        self._task_group = group
        group.start_soon(self._accept_connections)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        assert self._task_group is not None
        return await self._task_group.__aexit__(exc_type, exc_val, exc_tb)

    async def _accept_connections(self) -> None:
        assert self._task_group is not None
        try:
            # serve() rather than accept(): anyio's TLS listener does its handshakes there
            await self._byte_listener.serve(self._serve_connection, self._task_group)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return
        except BaseExceptionGroup as group:
            # a TCP listener is a MultiListener, whose serve() wraps each listener's
            # ClosedResourceError in a group when the server closes it
            _, rest = group.split((anyio.ClosedResourceError, anyio.BrokenResourceError))
            if rest is not None:
                raise rest from None

    async def _serve_connection(self, byte_stream: anyio.abc.ByteStream) -> None:
        try:
            async with self._make_provider(byte_stream) as provider:
                self._providers.add(provider)
                try:
                    listener = provider.listen(self._handler)
                    while True:
                        try:
                            stream = await listener.accept()
                        except (anyio.ClosedResourceError, anyio.BrokenResourceError, GoingAway):
                            break
                        except Exception as exc:
                            # what a handler raised: the server's user sees it on accept()
                            self._merged.feed(exc)
                            continue
                        if not self._merged.feed(stream):
                            await stream.reset(ErrorCode.REFUSED_STREAM)
                finally:
                    self._providers.discard(provider)
        except Exception as exc:
            logger.info("connection on %s ended: %r", self._address, exc)
            await anyio.aclose_forcefully(byte_stream)

    async def aclose(self, *, grace: float | None = None) -> None:
        if self._closing:
            return
        self._closing = True
        with anyio.CancelScope(shield=True):
            await self._byte_listener.aclose()
            async with anyio.create_task_group() as group:
                for provider in list(self._providers):
                    group.start_soon(_close_provider, provider, grace)
            self._merged.end(StreamClosed("server is closed"))
            if self._task_group is not None:
                self._task_group.cancel_scope.cancel()


async def _close_provider(provider: StreamProvider, grace: float | None) -> None:
    await provider.aclose(grace=grace)
