"""What the HTTP/2 connection reads: handed to h2 from a reader task, or, on anyio's asyncio
TCP streams (asyncio and uvloop), straight from the event loop's ``data_received``
callback as it arrives: no task wakes up per read, and the socket's reading is not
switched off and on around each one, as anyio's ``receive()`` does.

Either way the same synchronous :meth:`Http2Input._feed` handles the bytes and sends the
answers they produced; what needs a task (closing the connection for a broken limit or
a protocol error, the end of the connection) stays in the reader task, which the
callbacks wake. On trio the reader reads the raw socket; on TLS and any other stream it
calls ``receive()``.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod

import anyio
import anyio.abc
import hpack

from ..._core.errors import ConnectionLost, ErrorCode, LimitExceeded, ProtocolError
from ..._core.flow import FlowControlViolation
from ..._core.loop_io import InputHandover, socket_receiver, take_over_reading
from ._codec_limits import AnswerQueue
from ._guard import LINGER_BYTES, Outbound, WatchedSend, limit_exceeded
from ._inbound import H2_ERRORS, Http2Events
from .settings import Http2Settings

__all__ = ["READ_SIZE", "Http2Input"]

logger = logging.getLogger("streams.http2")

#: bytes asked of the transport per read
READ_SIZE = 256 * 1024


class Http2Input(Http2Events):
    """The reading half of :class:`~streams.backends.http2.Http2Provider`; its attributes
    are set by the provider's constructor."""

    h2_settings: Http2Settings
    _transport: anyio.abc.ByteStream
    _out: Outbound
    _sender: WatchedSend
    _answers: AnswerQueue
    _initial_data: bytes
    _torn_down: bool

    def _init_input(self) -> None:
        # the event-loop mode: what the callbacks leave to the reader task
        self._input = InputHandover()
        # bytes the callbacks dropped after a failure (bounded like the task's linger)
        self._input_dropped = 0

    # -- what the driver provides -------------------------------------------------------

    @abstractmethod
    def _flush(self, *, more: bool = False) -> None:
        """Hand what h2 queued to the writer."""

    @abstractmethod
    def _close_for_limit(self, error: LimitExceeded) -> None:
        """End the connection for a limit the peer went over."""

    # -- both modes ---------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Hand *data* to h2, act on its events, then send the answers they produced.

        :raises Exception: what :meth:`_input_failed` handles (a broken limit, a protocol
            error, a flow-control disagreement, or a bug of ours)
        """
        out = self._out
        # the answers are flushed below, before the reader yields: queueing them need not
        # wake the writer task (on trio a task switch, to find the queue empty)
        out.flush_follows = True
        try:
            # the flood limits' clock: any monotonic one (the buckets start full), and this
            # one costs no event-loop lookup (a getpid() on Python 3.11's asyncio)
            events = self._conn.receive_data(data, time.monotonic())
            handle = self._handle
            for event in events:
                handle(event)
            self._flush()
        finally:
            # the answers to what arrived leave before the reader waits again (on a
            # failure, those to what came before it); the writer takes what is left
            out.flush()
        if self._torn_down:
            return
        self._answers.taken(self._out.queued)
        # a burst of answers (or of our own requests) may queue many frames at once: only
        # while the writer is stuck in a send with the queue past its high-water mark do
        # they show a peer that does not read. A send is under way from its first
        # checkpoint, and input handled from the event loop's callbacks sees that often
        if self._sender.sending and self._out.backed_up:
            self._answers.check()

    def _input_failed(self, exc: Exception) -> None:
        """End the connection for *exc*, raised by :meth:`_feed`."""
        if isinstance(exc, LimitExceeded):
            self._close_for_limit(exc)
            return
        if isinstance(exc, H2_ERRORS):
            exceeded = limit_exceeded(exc, self.h2_settings)
            if exceeded is not None:
                self._close_for_limit(exceeded)
                return
            code = getattr(exc, "error_code", None)
            if isinstance(exc, hpack.HPACKError):
                code = ErrorCode.COMPRESSION_ERROR
            code = int(code) if code is not None else int(ErrorCode.PROTOCOL_ERROR)
            # h2 queued a GOAWAY with the code
            self._flush()
            error = ProtocolError(f"the peer broke HTTP/2: {exc}", code)
            error.__cause__ = exc
            self._teardown(error)
            return
        if isinstance(exc, FlowControlViolation):
            # h2 checks the windows first, so this means our bookkeeping and h2's disagree;
            # end the connection rather than trust either
            self._close_connection(ErrorCode.FLOW_CONTROL_ERROR)
            error = ProtocolError(str(exc), ErrorCode.FLOW_CONTROL_ERROR)
            error.__cause__ = exc
            self._teardown(error)
            return
        # a bug of ours must not crash the user's task group: fail this connection
        logger.error("HTTP/2 driver failed on its input", exc_info=exc)
        self._close_connection(ErrorCode.INTERNAL_ERROR)
        error = ProtocolError(repr(exc), ErrorCode.INTERNAL_ERROR)
        error.__cause__ = exc
        self._teardown(error)

    def _close_connection(self, code: int) -> None:
        try:
            self._conn.close_connection(code)
        except H2_ERRORS as exc:
            logger.debug("h2 refused a connection frame: %r", exc)
        self._flush()

    async def _read_loop(self) -> None:
        if self._initial_data:
            data, self._initial_data = self._initial_data, b""
            if not self._feed_or_fail(data):
                return
        control = take_over_reading(self._transport, self)
        if control is not None:
            self._input.control = control
            try:
                await self._follow_input()
            finally:
                self._input.handled = False
            return
        # on trio, the socket itself: trio's receive yields after every read that found data
        receive = socket_receiver(self._transport) or self._transport.receive
        while True:
            try:
                data = await receive(READ_SIZE)
            except anyio.EndOfStream:
                self._teardown(ConnectionLost("the peer closed the connection"))
                return
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                self._teardown(ConnectionLost(f"reading from the connection failed: {exc}"))
                return
            if not self._feed_or_fail(data) or self._torn_down:
                return

    def _feed_or_fail(self, data: bytes) -> bool:
        try:
            self._feed(data)
        except Exception as exc:
            self._input_failed(exc)
            return False
        return True

    # -- the event-loop mode ------------------------------------------------------------

    @property
    def reads_from_callbacks(self) -> bool:
        """``True`` once the input arrives through the event loop's callbacks: nothing may
        call the transport's ``receive()`` then."""
        return self._input.control is not None

    def input_received(self, data: bytes) -> None:
        """Bytes arrived (called by the event loop)."""
        handover = self._input
        if not handover.handled or self._torn_down:
            # dropped: after a failure, or while a closed connection lingers
            self._input_dropped += len(data)
            if self._input_dropped > LINGER_BYTES:
                handover.ended = True
                handover.wake()
            return
        try:
            self._feed(data)
        except Exception as exc:
            handover.failed(exc)

    def input_ended(self, error: BaseException | None) -> None:
        """The input ended (called by the event loop)."""
        self._input.input_ended(error)

    async def _follow_input(self) -> None:
        """The reader task of the event-loop mode: does what the callbacks cannot."""
        handover = self._input
        while True:
            if handover.error is not None:
                self._input_failed(handover.error)
                return
            if self._torn_down:
                return
            if handover.ended:
                error = handover.end
                if error is None:
                    self._teardown(ConnectionLost("the peer closed the connection"))
                else:
                    self._teardown(ConnectionLost(f"reading from the connection failed: {error}"))
                return
            await handover.wait()

    async def wait_input_ended(self) -> bool:
        """In the event-loop mode, while a closed connection lingers: wait until the peer
        closed its side (then return ``False``), or sent more than
        :data:`~._guard.LINGER_BYTES` (``True``), the callbacks dropping what arrives
        meanwhile."""
        while not self._input.ended:
            await self._input.wait()
        return self._input_dropped > LINGER_BYTES
