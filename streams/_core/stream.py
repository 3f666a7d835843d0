"""The stream that every framed backend shares.

:class:`MuxStream` implements the whole :class:`~streams.Stream` contract (buffers, flow
control, half-close, reset, busy detection, cancellation safety) on top of a small
:class:`StreamOwner` interface that a backend's driver implements to put frames on its wire.
The driver feeds what arrives through the ``on_*`` methods. Writing this once means every
backend gets the same, tested semantics.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio

from .abc import Stream, StreamAttribute
from .errors import ErrorCode, StreamClosed, StreamRejected, StreamReset
from .flow import ReceiveWindow, SendWindow
from .headers import Headers
from .loopops import LoopOps

__all__ = ["AcceptState", "MuxStream", "StreamOwner"]


class StreamOwner(Protocol):
    """What a backend's driver provides to its streams. Writes keep the stream's order."""

    backend_name: str
    #: the event loop's primitives, resolved once (see :mod:`~streams._core.loopops`)
    loop_ops: LoopOps

    @property
    def rtt(self) -> float | None: ...

    async def write_data(self, stream: MuxStream, data: memoryview) -> None:
        """Queue one data frame; may wait while the connection's output is full."""

    def write_eof(self, stream: MuxStream) -> None:
        """Queue the end of the stream's send direction. Never blocks."""

    def write_reset(self, stream: MuxStream, code: int) -> None:
        """Queue a reset of the stream. Never blocks."""

    def write_window_update(self, stream: MuxStream, increment: int) -> None:
        """Grant the peer *increment* more bytes on the stream. Never blocks."""

    def flush(self) -> None:
        """The stream is about to wait (or closed): write what is queued now if the
        transport takes it without waiting. Never blocks; may do nothing (the writer
        task then sends it at its turn)."""

    def stream_finished(self, stream: MuxStream) -> None:
        """The stream expects no more frames: forget it."""

    def stream_extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """Attributes of the connection (addresses, TLS) that every stream exposes."""


#: the receive buffer of every stream that has not buffered anything yet; never appended to
_NO_CHUNKS: deque[bytes] = deque()


class AcceptState(enum.Enum):
    """Where the stream stands with the accepting side's handler."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class MuxStream(Stream):
    """A stream of a multiplexed connection, driven by a :class:`StreamOwner`.

    :param owner: the driver that writes this stream's frames
    :param stream_id: the protocol's stream id
    :param headers: the opener's headers
    :param local: ``True`` on the side that opened the stream
    :param send_window: the peer's initial window for this stream
    :param receive_window: the window this side grants
    :param max_receive_window: how far auto-tuning may grow the receive window
    :param max_frame: the largest data frame to write
    :param hold_until_accepted: wait for acceptance before sending data (peers that drop
        data which arrives before their reply)
    """

    # slots: a connection may hold thousands of idle streams, and every hot attribute
    # access is a slot read instead of a dict lookup
    __slots__ = (
        "_accepted_event",
        "_chunks",
        "_closed",
        "_eof_sent",
        "_failure",
        "_finished",
        "_headers",
        "_hold_until_accepted",
        "_max_frame",
        "_ops",
        "_owner",
        "_receiving",
        "_recv_eof",
        "_recv_waiter",
        "_recv_window",
        "_rejection",
        "_reset",
        "_response_headers",
        "_send_waiter",
        "_send_window",
        "_sending",
        "accept_state",
        "buffered",
        "bytes_received",
        "bytes_sent",
        "close_callbacks",
        "local",
        "opened_at",
        "stream_id",
    )

    #: the protocol's identifier (a plain attribute: drivers read it on every frame)
    stream_id: int

    def __init__(
        self,
        owner: StreamOwner,
        stream_id: int,
        headers: Headers,
        *,
        local: bool,
        send_window: int,
        receive_window: int,
        max_receive_window: int | None = None,
        max_frame: int = 65536,
        hold_until_accepted: bool = False,
    ) -> None:
        self._owner = owner
        self._ops = owner.loop_ops
        self.stream_id = stream_id
        self._headers = headers
        self._response_headers: Headers | None = None
        self.local = local
        self.accept_state = AcceptState.PENDING
        self._rejection: StreamRejected | None = None
        self._accepted_event: anyio.Event | None = None
        self._hold_until_accepted = hold_until_accepted

        # a deque of its own comes with the first data: an empty deque's block would be
        # most of an idle stream's memory
        self._chunks = _NO_CHUNKS
        self.buffered = 0
        self._recv_eof = False
        self._recv_window = ReceiveWindow(receive_window, max_receive_window)
        self._recv_waiter: anyio.Event | None = None
        self._receiving = False

        self._send_window = SendWindow(send_window)
        self._max_frame = max_frame
        self._send_waiter: anyio.Event | None = None
        self._sending = False
        self._eof_sent = False

        self._closed = False
        self._reset: StreamReset | None = None
        self._failure: BaseException | None = None
        self._finished = False
        #: called once as the application closes the stream, with the reset it had seen
        #: before (observers such as metrics use it instead of wrapping every call)
        self.close_callbacks: list[Callable[[MuxStream, StreamReset | None], None]] | None = None
        #: bytes moved each way, for introspection
        self.bytes_sent = 0
        self.bytes_received = 0
        self.opened_at = time.monotonic()

    # -- the contract --------------------------------------------------------------------

    @property
    def headers(self) -> Headers:
        return self._headers

    @property
    def response_headers(self) -> Headers | None:
        return self._response_headers

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {
            **self._owner.stream_extra_attributes(),
            StreamAttribute.stream_id: lambda: self.stream_id,
            StreamAttribute.headers: lambda: self._headers,
            StreamAttribute.backend: lambda: self._owner.backend_name,
            StreamAttribute.local_open: lambda: self.local,
        }

    async def accepted(self) -> Headers:
        while True:
            if self.accept_state is AcceptState.ACCEPTED:
                assert self._response_headers is not None
                await self._ops.checkpoint_if_cancelled()
                return self._response_headers
            if self._rejection is not None:
                raise self._rejection
            self._raise_if_broken()
            if self._closed:
                raise StreamClosed()
            event = self._accepted_event = self._accepted_event or self._ops.event()
            self._owner.flush()
            await event.wait()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if self._receiving:
            raise anyio.BusyResourceError("receiving from")
        self._receiving = True
        try:
            waited = False
            while True:
                if self._closed:
                    raise StreamClosed()
                if self._rejection is not None:
                    raise self._rejection
                if self._reset is not None and not self._reset.remote:
                    raise self._reset
                if self._chunks:
                    if not waited:
                        # a cancel point before taking, so that a cancellation loses
                        # nothing; no schedule point where nothing needs waiting for (see
                        # docs/contract.md, "Checkpoints")
                        await self._ops.checkpoint_if_cancelled()
                    return self._take(max_bytes)
                if self._recv_eof:
                    raise anyio.EndOfStream
                if self._reset is not None:
                    raise self._reset
                if self._failure is not None:
                    raise self._failure
                waiter = self._recv_waiter = self._ops.event()
                self._owner.flush()
                await waiter.wait()
                waited = True
        finally:
            self._receiving = False

    async def send(self, item: bytes) -> None:
        if self._sending:
            raise anyio.BusyResourceError("sending to")
        self._sending = True
        try:
            self._check_sendable()
            # in a cancelled scope, nothing is queued: the caller may send it again
            await self._ops.checkpoint_if_cancelled()
            if self._hold_until_accepted and self.accept_state is AcceptState.PENDING:
                await self.accepted()
            view = memoryview(item)
            if not view:
                return
            while view:
                self._check_sendable()
                size = self._send_window.take(min(len(view), self._max_frame))
                if not size:
                    waiter = self._send_waiter = self._ops.event()
                    await waiter.wait()
                    continue
                await self._owner.write_data(self, view[:size])
                self.bytes_sent += size
                view = view[size:]
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        if self._sending:
            raise anyio.BusyResourceError("sending to")
        await self._ops.checkpoint_if_cancelled()
        self._write_eof()

    async def reset(self, code: int = ErrorCode.CANCEL) -> None:
        self._local_reset(code)
        await self._ops.checkpoint()

    async def aclose(self) -> None:
        # never blocks, so it needs no schedule point, and works in a cancelled scope
        self.close_now()
        self._owner.flush()

    # -- helpers for the contract -----------------------------------------------------------

    def close_now(self) -> None:
        """Synchronous :meth:`aclose`, for drivers and for closing inside a cancelled scope."""
        if self._closed:
            return
        reset_seen = self._reset
        if not self._finished and self._reset is None and self._failure is None:
            self._write_eof()
            if not self._recv_eof:
                self._local_reset(ErrorCode.CANCEL)
        self._closed = True
        self._chunks = _NO_CHUNKS
        self.buffered = 0
        self._wake_all()
        self._maybe_finish()
        callbacks, self.close_callbacks = self.close_callbacks, None
        for callback in callbacks or ():
            callback(self, reset_seen)

    def _write_eof(self) -> None:
        if self._eof_sent or self._finished or self._closed:
            return
        if self._reset is not None or self._failure is not None:
            return
        self._eof_sent = True
        self._owner.write_eof(self)
        self._wake_sender()
        self._maybe_finish()

    def _local_reset(self, code: int) -> None:
        if self._reset is not None or self._failure is not None or self._closed:
            return
        if self._finished:
            return
        self._reset = StreamReset(code, remote=False)
        self._chunks = _NO_CHUNKS
        self.buffered = 0
        self._owner.write_reset(self, code)
        self._wake_all()
        self._maybe_finish()

    def _check_sendable(self) -> None:
        if self._closed or self._eof_sent:
            raise StreamClosed("stream is closed for sending")
        if self._rejection is not None:
            raise self._rejection
        if self._reset is not None:
            raise self._reset
        if self._failure is not None:
            raise self._failure

    def _raise_if_broken(self) -> None:
        if self._reset is not None:
            raise self._reset
        if self._failure is not None:
            raise self._failure

    def _take(self, max_bytes: int) -> bytes:
        chunks = self._chunks
        assert chunks
        chunk = chunks[0]
        if len(chunk) <= max_bytes:
            chunks.popleft()
            data = chunk
        else:
            data = chunk[:max_bytes]
            chunks[0] = chunk[max_bytes:]
        size = len(data)
        self.buffered -= size
        self.bytes_received += size
        if not self._recv_eof and self._reset is None:
            increment = self._recv_window.on_consumed(size, time.monotonic(), self._owner.rtt)
            if increment:
                self._owner.write_window_update(self, increment)
        return data

    # -- what the driver feeds in --------------------------------------------------------

    @property
    def recv_eof(self) -> bool:
        """``True`` once the peer half-closed its direction."""
        return self._recv_eof

    @property
    def eof_sent(self) -> bool:
        """``True`` once this side half-closed its direction."""
        return self._eof_sent

    @property
    def is_closed(self) -> bool:
        """``True`` once the application closed the stream on this side."""
        return self._closed

    @property
    def finished(self) -> bool:
        """``True`` once no frame will be written or expected for the stream."""
        return self._finished

    @property
    def failure(self) -> BaseException | None:
        """The connection error that broke the stream (``None`` if none did): what a close
        callback reads to tell a stream cut by its connection from one that ended well."""
        return self._failure

    @property
    def state(self) -> str:
        """A one-word description of the stream's state, for humans."""
        if self._failure is not None:
            return "failed"
        if self._reset is not None:
            return "reset"
        if self._rejection is not None:
            return "rejected"
        if self._closed or (self._eof_sent and self._recv_eof):
            return "closed"
        if self.accept_state is AcceptState.PENDING:
            return "opening"
        if self._eof_sent:
            return "half-closed (local)"
        if self._recv_eof:
            return "half-closed (remote)"
        return "open"

    @property
    def receive_window(self) -> ReceiveWindow:
        """The credit this side grants the peer."""
        return self._recv_window

    @property
    def send_credit(self) -> int:
        """The credit the peer granted this side."""
        return self._send_window.credit

    def on_data(self, data: bytes) -> None:
        """Data arrived for the stream.

        :raises ~streams._core.flow.FlowControlViolation: if the peer exceeded its credit
        """
        self._recv_window.on_data(len(data))
        if self._closed or self._reset is not None or self._recv_eof:
            return
        if data:
            chunks = self._chunks
            if chunks is _NO_CHUNKS:
                chunks = self._chunks = deque()
            chunks.append(data)
            self.buffered += len(data)
            self._wake_receiver()

    def on_eof(self) -> None:
        """The peer half-closed its direction."""
        if self._recv_eof:
            return
        self._recv_eof = True
        self._wake_receiver()
        self._maybe_finish()

    def on_reset(self, code: int) -> None:
        """The peer reset the stream.

        Data that arrived before the reset stays readable; then the reset is raised (or
        the end of file, if the peer had finished its direction before resetting).
        """
        if self._reset is not None or self._failure is not None:
            return
        self._reset = StreamReset(code, remote=True)
        self._wake_all()
        self._maybe_finish()

    def on_window_update(self, increment: int) -> None:
        """The peer granted more credit.

        :raises ~streams._core.flow.FlowControlViolation: if the window overflows
        """
        self._send_window.grow(increment)
        self._wake_sender()

    def adjust_send_window(self, delta: int) -> None:
        """Shift the send window (a changed initial window setting)."""
        self._send_window.adjust(delta)
        self._wake_sender()

    def on_accepted(self, response_headers: Headers) -> None:
        """The peer's handler accepted the stream (or this side accepted it)."""
        if self.accept_state is not AcceptState.PENDING:
            return
        self.accept_state = AcceptState.ACCEPTED
        self._response_headers = response_headers
        self._wake_accepted()
        self._wake_sender()

    def on_rejected(self, rejection: StreamRejected) -> None:
        """The peer's handler refused the stream."""
        if self.accept_state is not AcceptState.PENDING:
            return
        self.accept_state = AcceptState.REJECTED
        self._rejection = rejection
        self._response_headers = rejection.response_headers
        self._chunks = _NO_CHUNKS
        self.buffered = 0
        self._wake_all()
        self._finish()

    def on_connection_lost(self, error: BaseException) -> None:
        """The connection failed or closed: every pending and later operation fails.

        A direction that the peer had already finished keeps its data and end of file.
        """
        if self._finished and (self._recv_eof or self._reset is not None):
            return
        if self._failure is None and self._reset is None:
            self._failure = error
        self._wake_all()
        self._finish()

    def _maybe_finish(self) -> None:
        if self._reset is not None or (self._eof_sent and self._recv_eof):
            self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._owner.stream_finished(self)

    # -- waking --------------------------------------------------------------------------

    def _wake_receiver(self) -> None:
        waiter, self._recv_waiter = self._recv_waiter, None
        if waiter is not None:
            waiter.set()

    def _wake_sender(self) -> None:
        waiter, self._send_waiter = self._send_waiter, None
        if waiter is not None:
            waiter.set()

    def _wake_accepted(self) -> None:
        waiter, self._accepted_event = self._accepted_event, None
        if waiter is not None:
            waiter.set()

    def _wake_all(self) -> None:
        self._wake_receiver()
        self._wake_sender()
        self._wake_accepted()

    def __repr__(self) -> str:
        side = "local" if self.local else "remote"
        return f"<MuxStream {self._owner.backend_name} id={self.stream_id} {side} {self.state}>"
