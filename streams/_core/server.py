"""Serving: a listener that merges the streams of many connections, and the server that
accepts connections and runs a provider on each."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel

from .abc import Handler, Listener, Stream, StreamProvider
from .errors import ErrorCode, GoingAway, StreamClosed
from .queue_listener import QueueListener
from .tasks import TaskHost
from .transport import pause_reading_until_asked

__all__ = ["ConnectionServer", "MergedListener", "StreamServer"]

logger = logging.getLogger("streams.server")


class MergedListener(QueueListener):
    """One listener fed with the streams of many connections (a server's, or a pool's).

    :param backlog: streams queued for :meth:`accept`; more are reset with
        ``REFUSED_STREAM`` by whoever feeds them
    """

    def __init__(self, backlog: int = 1024) -> None:
        super().__init__()
        self._backlog = backlog
        self._ended: BaseException | None = None

    def feed(self, item: Stream | BaseException) -> bool:
        """Queue a stream (or an error for :meth:`accept` to raise); ``False`` if full."""
        if self.closed or self._ended is not None or len(self._items) >= self._backlog:
            return False
        self._put(item)
        return True

    def connections_open(self, count: int) -> None:
        """*count* connections feed this listener now: handler tasks of :meth:`serve`
        wait for more streams only while there is one (the last to close lets them go)."""
        self.limit_idle(16 if count else 0)

    def end(self, error: BaseException) -> None:
        """No more streams will come: :meth:`accept` raises *error* once the queue is empty."""
        if self._ended is None:
            self._ended = error
            self.wake()

    def _end_error(self) -> BaseException | None:
        return self._ended

    async def _discard(self, stream: Stream) -> None:
        await stream.reset(ErrorCode.REFUSED_STREAM)


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

    async def abort(self) -> None:
        """Stop at once, as a crash would: connections are dropped without Go Away, so
        their peers see errors (a failure drill for failover)."""
        for provider in self.connections:
            abort = getattr(provider, "abort", None)
            if callable(abort):
                await abort("the server was killed")
        await self.aclose(grace=0)

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
        self._host: TaskHost | None = None
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
        self._host = TaskHost()
        self._task_group = await self._host.__aenter__()
        self._task_group.start_soon(self._accept_connections)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        assert self._host is not None
        return await self._host.__aexit__(exc_type, exc_val, exc_tb)

    async def _accept_connections(self) -> None:
        assert self._task_group is not None
        try:
            # serve() rather than accept(): anyio's TLS listener does its handshakes there
            await self._byte_listener.serve(self._serve_connection, self._task_group)
        except* (anyio.ClosedResourceError, anyio.BrokenResourceError):
            # closing the listener ends serve(); a multi-address listener (TCP on every
            # family) raises that inside an exception group
            pass

    async def _serve_connection(self, byte_stream: anyio.abc.ByteStream) -> None:
        pause_reading_until_asked(byte_stream)
        try:
            async with self._make_provider(byte_stream) as provider:
                self._providers.add(provider)
                self._merged.connections_open(len(self._providers))
                try:
                    listener = provider.listen(self._handler)
                    if isinstance(listener, QueueListener):
                        # accepted streams go straight to the server's listener (and on
                        # to its serve()), without waking this task for each; what the
                        # server's backlog refuses still comes through accept() below
                        listener.forward_to(self._merged.feed)
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
                    self._merged.connections_open(len(self._providers))
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
            if self._host is not None:
                self._host.cancel()


async def _close_provider(provider: StreamProvider, grace: float | None) -> None:
    await provider.aclose(grace=grace)
