"""The contract: :class:`Stream`, :class:`StreamProvider`, :class:`Listener` and handlers.

The exact semantics are in ``docs/contract.md``; the conformance suite in
:mod:`streams.testing` checks them for any implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeAlias

import anyio
from anyio.abc import ByteStream, TaskGroup
from anyio.abc import Listener as AnyioListener

from .errors import ErrorCode
from .headers import Headers, HeadersLike

__all__ = [
    "Handler",
    "HandlerResult",
    "Listener",
    "Stream",
    "StreamAttribute",
    "StreamProvider",
]


class StreamAttribute(anyio.TypedAttributeSet):
    """Typed extra attributes every :class:`Stream` provides (``stream.extra(...)``)."""

    #: the protocol's identifier of the stream
    stream_id: int = anyio.typed_attribute()
    #: the headers the opener sent
    headers: Headers = anyio.typed_attribute()
    #: the name of the backend that carries the stream (``"framer"``, ``"http2"``, ...)
    backend: str = anyio.typed_attribute()
    #: ``True`` on the side that opened the stream
    local_open: bool = anyio.typed_attribute()


class Stream(ByteStream):
    """One bidirectional byte stream on a multiplexed connection.

    An :class:`anyio.abc.ByteStream`, so TLS wrapping, buffered readers and text streams
    work on it unchanged. It adds the headers it was opened with, the response headers it
    was accepted with, and :meth:`reset`.

    Errors follow trio's meanings: :class:`anyio.ClosedResourceError` when *this* side
    closed it, :class:`anyio.BrokenResourceError` (:class:`~streams.StreamReset`,
    :class:`~streams.ConnectionLost`) when something else broke it.
    """

    @property
    @abstractmethod
    def headers(self) -> Headers:
        """The headers the opener sent, as received."""

    @property
    @abstractmethod
    def response_headers(self) -> Headers | None:
        """The headers the acceptor replied with; ``None`` while the reply is not known."""

    @property
    @abstractmethod
    def stream_id(self) -> int:
        """The protocol's identifier for the stream, for logs and debugging."""

    @abstractmethod
    async def accepted(self) -> Headers:
        """Wait until the peer accepted the stream and return its response headers.

        Returns at once on an accepted stream and on the accepting side.

        :raises ~streams.StreamRejected: if the peer's handler refused the stream
        :raises ~anyio.BrokenResourceError: if the stream or connection failed first
        """

    @abstractmethod
    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Receive at most *max_bytes* bytes; never returns an empty result.

        :raises ~anyio.EndOfStream: once the peer half-closed and every byte before was read
        :raises ~streams.StreamReset: if the stream was reset by either side
        :raises ~anyio.ClosedResourceError: if this side closed the stream
        :raises ~anyio.BusyResourceError: if another task is already receiving
        :raises ValueError: if *max_bytes* is not positive
        """

    @abstractmethod
    async def send(self, item: bytes) -> None:
        """Send *item*, waiting while the peer's flow-control window is exhausted.

        :raises ~anyio.ClosedResourceError: after :meth:`send_eof` or :meth:`aclose`
        :raises ~streams.StreamReset: if the stream was reset
        :raises ~anyio.BusyResourceError: if another task is already sending
        """

    @abstractmethod
    async def send_eof(self) -> None:
        """Half-close: no more local writes; the peer reads the rest, then end of file.

        Local reads continue. Idempotent.
        """

    @abstractmethod
    async def reset(self, code: int = ErrorCode.CANCEL) -> None:
        """Abort both directions at once with *code*.

        Pending and later operations on both sides raise :class:`~streams.StreamReset`
        (a direction the peer had already finished cleanly keeps its end of file).
        Idempotent; a no-op on a stream that is already closed or reset.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Release the stream: half-close it if not done, and reset it with ``CANCEL`` if the
        peer is still sending, so no buffer grows for a reader who left.

        Idempotent, never blocks, and works inside a cancelled scope.
        """


HandlerResult: TypeAlias = "tuple[HeadersLike | None, bool]"
"""What a handler returns: ``(response_headers, accept)``."""

Handler: TypeAlias = Callable[
    [Headers], "tuple[HeadersLike | None, bool] | Awaitable[tuple[HeadersLike | None, bool]]"
]
"""Decides whether to accept a new stream from its headers.

Called with the stream's :class:`Headers`; returns ``(response_headers, accept)``, directly
or as an awaitable. An exception rejects the stream and is raised from
:meth:`Listener.accept`.
"""


class Listener(AnyioListener[Stream]):
    """Streams created by the remote side; also async-iterable.

    :meth:`accept` on a closed listener or provider raises
    :class:`anyio.ClosedResourceError`.
    """

    @abstractmethod
    async def accept(self) -> Stream:
        """Wait for the next stream the handler accepted.

        :raises ~anyio.ClosedResourceError: if the listener or its provider was closed here
        :raises ~streams.ConnectionLost: if the connection failed
        :raises Exception: whatever the handler raised for a stream it thereby rejected
        """

    async def serve(
        self, handler: Callable[[Stream], Any], task_group: TaskGroup | None = None
    ) -> None:
        """Accept streams until the listener closes, running *handler* on each in a task.

        Returns when the listener or its provider is closed, or the peer went away (and,
        without *task_group*, the handlers are done). Implementations may run a handler in
        the task of one that finished, as long as no handler sees a context variable
        another one set (the shared machinery does this: see ``docs/contract.md``).
        """

        async def run(stream: Stream) -> None:
            async with stream:
                await handler(stream)

        async with anyio.create_task_group() as own_group:
            group = task_group if task_group is not None else own_group
            async for stream in self:
                group.start_soon(run, stream)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Stream:
        from .errors import GoingAway

        try:
            return await self.accept()
        except (anyio.ClosedResourceError, GoingAway):
            raise StopAsyncIteration from None


class StreamProvider(ABC):
    """Opens streams, lets the peer's streams in through :meth:`listen`, and closes as a
    whole.

    A provider owns the tasks that run its connection, so it is an async context manager:
    ``async with`` starts it and closes it on exit. Nothing it starts outlives that block.
    """

    #: the backend's name, for labels and logs (wrappers report the one below them)
    backend_name: str = "unknown"

    @abstractmethod
    async def open_stream(
        self, headers: HeadersLike | None = None, *, wait_accept: bool = True
    ) -> Stream:
        """Open a stream with *headers*.

        With ``wait_accept=True`` it returns once the peer accepted the stream, with
        :attr:`Stream.response_headers` set. With ``wait_accept=False`` (the zero round trip
        open) it returns as soon as the open is sent; data may be sent at once, and
        :meth:`Stream.accepted` tells the outcome.

        :raises ~streams.StreamRejected: if the remote handler refused the stream
        :raises ~streams.ProviderClosed: after :meth:`aclose`
        :raises ~streams.GoingAway: after the peer announced Go Away
        :raises ~streams.ConnectionLost: if the connection failed
        :raises ~streams.OpenTimeout: if the peer did not answer in time
        """

    @abstractmethod
    def listen(self, handler: Handler | None = None) -> Listener:
        """Return a :class:`Listener` of streams the remote side opens.

        *handler* decides each stream from its headers (see :data:`Handler`); without one
        every stream is accepted with empty response headers. One listener at a time.
        """

    @abstractmethod
    async def aclose(self, *, grace: float | None = None) -> None:
        """Close gracefully: no new streams either way; open streams may finish within
        *grace* seconds (the provider's default when ``None``); then the connection closes
        and the streams still open fail. Idempotent, bounded in time, shielded."""

    @abstractmethod
    async def wait_closed(self) -> None:
        """Return once the provider is closed, by either side or by a failure."""

    @property
    @abstractmethod
    def is_closing(self) -> bool:
        """``True`` once no new stream can be opened here (closed, going away or broken)."""

    @property
    def active_streams(self) -> int:
        """How many streams are open on this provider right now."""
        return 0

    @property
    def max_streams(self) -> int | None:
        """How many concurrent streams the peer allows, when it said so."""
        return None

    @property
    def rtt(self) -> float | None:
        """The last measured round-trip time to the peer, in seconds, when known."""
        return None

    async def ping(self) -> float:
        """Measure the round-trip time to the peer, in seconds.

        :raises NotImplementedError: if the protocol has no ping
        :raises ~streams.ConnectionLost: if the connection failed
        """
        raise NotImplementedError(f"{type(self).__name__} has no ping")

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
