"""What the framer connection reads: handed to the codec from the reader task, or, on
anyio's asyncio TCP streams, straight from the event loop as it arrives (no task wakes
up per read, and the socket's reading is not switched off and on around each one).

Either way the same synchronous :meth:`FramerInput._feed` handles the bytes; what needs a
task (closing for a broken limit, waiting for room in the connection's buffer, the end of
the connection) stays in the reader task, which the event loop callbacks wake.
"""

from __future__ import annotations

import logging
from abc import abstractmethod

import anyio
import anyio.abc

from ..._core.errors import ConnectionLost, GoingAway, LimitExceeded
from ..._core.loop_io import InputHandover, socket_receiver, take_over_reading
from ..._core.mux import MuxProvider
from ..._core.transport import CoalescingBuffer
from .codec import (
    DataReceived,
    EmptyFrame,
    FrameDecoder,
    FramerProtocolError,
    GoAwayCode,
    GoAwayReceived,
    PingReceived,
    WindowUpdated,
)
from .config import FramerSettings

__all__ = ["FramerInput"]

logger = logging.getLogger("streams.framer")

#: seconds to drop the peer's input after closing for its fault (see _lifecycle._LINGER)
_DISCARD_SECONDS = 1.6


class FramerInput(MuxProvider):
    """The reading half of :class:`~.driver.FramerProvider`; its attributes are set by
    the provider's constructor and its frame handlers live there."""

    settings: FramerSettings
    _transport: anyio.abc.ByteStream
    _decoder: FrameDecoder
    _out: CoalescingBuffer
    _going_away: GoingAway | None
    #: ``True`` while the reader handles frames: a limit hit then unwinds to it
    _reading: bool
    #: bytes buffered in the connection's streams, not yet read by their applications
    _buffered: int
    _room: anyio.Event | None

    def _init_input(self) -> None:
        self._reading = False
        self._buffered = 0
        self._room = None
        # the event-loop mode: what the callbacks leave to the reader task
        self._input = InputHandover()

    # -- what the driver and the lifecycle provide -------------------------------------

    @abstractmethod
    def _on_data(self, event: DataReceived) -> None:
        """Handle a data frame."""

    @abstractmethod
    def _on_control(
        self, event: WindowUpdated | PingReceived | GoAwayReceived | EmptyFrame
    ) -> None:
        """Handle a frame other than data."""

    @abstractmethod
    def _lost(self, error: ConnectionLost) -> None:
        """The connection ended or broke."""

    @abstractmethod
    def _limit_failure(self, error: LimitExceeded) -> None:
        """The peer went over a limit: close for it."""

    @abstractmethod
    def _protocol_failure(self, exc: FramerProtocolError) -> None:
        """The peer broke the protocol: close for it."""

    @abstractmethod
    async def _discard_input(self) -> None:
        """Read and drop the peer's input while the Go Away leaves."""

    # -- both modes ---------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Handle what arrived, then send the answers it produced.

        :raises Exception: a broken limit, a protocol error, or a bug of ours (all close
            the connection: :meth:`_input_failed`)
        """
        out = self._out
        out.flush_follows = True
        self._reading = True
        try:
            for event in self._decoder.receive_data(data):
                if isinstance(event, DataReceived):
                    self._on_data(event)
                else:
                    self._on_control(event)
        finally:
            self._reading = False
            # answers to what arrived (acceptances, credit, pongs) leave before the reader
            # waits again; on a failure, so do the answers to what came before it
            out.flush()

    def _input_failed(self, exc: Exception) -> bool:
        """Close the connection for *exc*, raised by :meth:`_feed`; ``True`` if the peer's
        further input should be read and dropped while the Go Away leaves."""
        if isinstance(exc, LimitExceeded):
            self._limit_failure(exc)
            return True
        if isinstance(exc, FramerProtocolError):
            self._protocol_failure(exc)
            return True
        # a bug of ours must not crash the user's task group: fail this connection
        logger.error("framer driver failed on its input", exc_info=exc)
        failure = FramerProtocolError(repr(exc), GoAwayCode.INTERNAL_ERROR)
        failure.__cause__ = exc
        self._protocol_failure(failure)
        return False

    def _ended(self, error: BaseException | None) -> None:
        if error is None:
            self._lost(self._going_away or ConnectionLost("the peer closed the connection"))
        else:
            self._lost(ConnectionLost(f"the connection broke: {error!r}"))

    async def _read(self) -> None:
        control = take_over_reading(self._transport, self)
        if control is not None:
            self._input.control = control
            try:
                await self._follow_input()
            finally:
                self._input.handled = False
                control.pause()
            return
        receive = socket_receiver(self._transport) or self._transport.receive
        read_size = self.settings.read_size
        while True:
            try:
                data = await receive(read_size)
            except anyio.EndOfStream:
                self._ended(None)
                return
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                self._ended(exc)
                return
            try:
                self._feed(data)
            except Exception as exc:
                if self._input_failed(exc):
                    await self._discard_input()
                return
            if self._buffered > self.settings.max_connection_buffer:
                await self._wait_for_room()

    # -- the event-loop mode ------------------------------------------------------------

    def input_received(self, data: bytes) -> None:
        """Bytes arrived (called by the event loop)."""
        handover = self._input
        if not handover.handled:
            return  # dropped: after a failure, or once the reader is gone
        try:
            self._feed(data)
        except Exception as exc:
            handover.failed(exc)
            return
        control = handover.control
        if self._buffered > self.settings.max_connection_buffer and control is not None:
            control.pause()
            handover.wake()

    def input_ended(self, error: BaseException | None) -> None:
        """The input ended (called by the event loop)."""
        self._input.input_ended(error)

    async def _follow_input(self) -> None:
        """The reader task of the event-loop mode: does what the callbacks cannot."""
        handover = self._input
        control = handover.control
        assert control is not None
        while True:
            if handover.error is not None:
                if self._input_failed(handover.error):
                    # the callbacks drop what still arrives; wait for the peer's close
                    with anyio.move_on_after(_DISCARD_SECONDS):
                        while not handover.ended:
                            await handover.wait()
                return
            if handover.ended and handover.handled:
                self._ended(handover.end)
                return
            if control.paused:
                await self._wait_for_room()
                control.resume()
                continue
            await handover.wait()

    # -- the connection's buffer --------------------------------------------------------

    def consumed(self, size: int) -> None:
        """The application read *size* buffered bytes."""
        self._buffered -= size
        room = self._room
        if room is not None and self._buffered <= self.settings.max_connection_buffer:
            self._room = None
            room.set()

    async def _wait_for_room(self) -> None:
        limit = self.settings.max_connection_buffer
        while self._failure is None:
            # streams closed with unread data are not reported; recount
            self._buffered = sum(stream.buffered for stream in self.streams.values())
            if self._buffered <= limit:
                return
            room = self._room = anyio.Event()
            with anyio.move_on_after(0.1):
                await room.wait()
