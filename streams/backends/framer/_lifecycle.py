"""The framer connection's life apart from its frames: keepalive, idle timeout, pings,
failure (a protocol error or a limit: Go Away, then close) and closing the transport.

:class:`~.driver.FramerProvider` builds on it and maps streams onto frames.
"""

from __future__ import annotations

import logging
import time

import anyio
import anyio.abc

from ..._core.errors import ConnectionLost, ErrorCode, LimitExceeded, ProtocolError
from ..._core.limits import log_limit_exceeded
from ..._core.transport import CoalescingBuffer
from ._input import FramerInput
from ._limits import ConnectionLimits
from ._stream import FramerStream
from .codec import FramerProtocolError, GoAwayCode, encode_go_away, encode_ping
from .config import FramerSettings

__all__ = ["FramerLifecycle"]

logger = logging.getLogger("streams.framer")

#: seconds each step of stopping the reader and the writer may take (three steps stay
#: within the 2 s that MuxProvider gives closing the transport)
_STOP_WAIT = 0.6
#: seconds a connection closed for the peer's fault waits for its Go Away to be flushed
#: (reading and dropping the peer's input meanwhile), before it half-closes and waits
#: _STOP_WAIT more for the peer's close: together within those 2 s too
_LINGER = 1.0


class FramerLifecycle(FramerInput):
    """The part of :class:`~.driver.FramerProvider` that does not handle stream frames;
    its attributes are set by the provider's constructor."""

    settings: FramerSettings
    _transport: anyio.abc.ByteStream
    _out: CoalescingBuffer
    _limits: ConnectionLimits
    #: ``True`` once the connection is being closed for the peer's fault
    _lingering: bool
    _writer_done: anyio.Event
    _reader_scope: anyio.CancelScope
    _reader_done: anyio.Event
    _announced: dict[int, FramerStream]
    _pings: dict[int, anyio.Event]
    _next_ping: int
    _transport_closing: bool
    last_activity: float

    # -- keepalive and idle timeout ------------------------------------------------------

    async def _keepalive(self) -> None:
        interval = self.settings.keepalive_interval
        assert interval is not None
        while True:
            try:
                await self.ping()
            except (ConnectionLost, anyio.ClosedResourceError):
                return
            await anyio.sleep(interval)

    async def _idle_watch(self) -> None:
        timeout = self.settings.idle_timeout
        assert timeout is not None
        while not self.is_closing:
            idle_for = time.monotonic() - self.last_activity
            if not self.streams and not self._announced and idle_for >= timeout:
                logger.info("closing a framer connection idle for %.1f s", idle_for)
                await self.aclose(grace=0)
                return
            remaining = timeout - idle_for
            await anyio.sleep(max(0.01, remaining if remaining > 0 else timeout / 4))

    # -- failure and closing -------------------------------------------------------------

    def _lost(self, error: ConnectionLost) -> None:
        if self._transport_closing:
            return  # our own close shut the transport
        self.fail(error)
        self._out.close()
        self.task_group.start_soon(self._abort_transport)

    def _protocol_failure(self, exc: FramerProtocolError) -> None:
        code = ErrorCode.FLOW_CONTROL_ERROR if exc.flow_control else ErrorCode.PROTOCOL_ERROR
        if exc.limit is not None:
            limit_error = LimitExceeded(exc.limit, str(exc), code)
            limit_error.__cause__ = exc
            self._limit_failure(limit_error)
            return
        if exc.go_away == GoAwayCode.INTERNAL_ERROR:
            code = ErrorCode.INTERNAL_ERROR
        else:
            logger.warning("framer peer broke the protocol: %s", exc)
        error = ProtocolError(f"the peer broke the framer protocol: {exc}", code)
        error.__cause__ = exc
        self._close_for(error, exc.go_away)

    def _limit_failure(self, error: LimitExceeded) -> None:
        """The peer went over a limit: log which, and close the connection with a Go Away
        (yamux has no code for "calm down": protocol error is the nearest)."""
        if self._failure is None:
            log_limit_exceeded(logger, error, self._limits.peer)
        self._close_for(error, GoAwayCode.PROTOCOL_ERROR)

    def _close_for(self, error: ProtocolError, go_away: GoAwayCode) -> None:
        if self._failure is not None:
            return
        self._out.write(encode_go_away(go_away))
        self._lingering = True
        self.fail(error)
        self._out.close()
        self.task_group.start_soon(self._abort_transport)

    async def _discard_input(self) -> None:
        # closing a socket that holds unread input sends a TCP reset, which can destroy
        # the Go Away still on its way: drop what the peer sends until it closes its side
        # (after our half-close) or _stop_io gives up on it
        receive = self._transport.receive
        with anyio.move_on_after(_LINGER + _STOP_WAIT):
            while True:
                try:
                    await receive(self.settings.read_size)
                except (
                    OSError,
                    anyio.EndOfStream,
                    anyio.BrokenResourceError,
                    anyio.ClosedResourceError,
                ):
                    return

    def _answered(self, size: int) -> None:
        """Count an answer of *size* bytes queued for the peer (``max_queued_control_frames``).

        In the reader, the limit unwinds to it; elsewhere the connection closes here.
        """
        try:
            self._limits.answered(size)
        except LimitExceeded as exc:
            if self._reading:
                raise
            self._limit_failure(exc)

    def fail(self, error: ConnectionLost) -> None:
        super().fail(error)
        for event in self._pings.values():
            event.set()
        announced, self._announced = self._announced, {}
        for stream in announced.values():
            stream.on_connection_lost(error)
        if self._room is not None:
            self._room.set()

    async def _stop_io(self, *, graceful: bool = False) -> None:
        # the reader should leave before the transport closes under it: anyio's Unix socket
        # streams on asyncio can fail with InvalidStateError when a waiting receive is
        # cancelled or closed. On a graceful close, half-close the transport and let the
        # peer's close end the reader; cancel it only if that does not happen soon.
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(_LINGER if self._lingering else _STOP_WAIT),
        ):
            await self._writer_done.wait()
        # a connection closed for the peer's fault half-closes too: its Go Away then
        # reaches a peer that reads, before the close (a reset would destroy it)
        if (graceful or self._lingering) and not self._reader_done.is_set():
            with anyio.CancelScope(shield=True), anyio.move_on_after(_STOP_WAIT):
                try:
                    await self._transport.send_eof()
                except (
                    NotImplementedError,
                    OSError,
                    anyio.BrokenResourceError,
                    anyio.BusyResourceError,
                    anyio.ClosedResourceError,
                ):
                    pass
                else:
                    await self._reader_done.wait()
        self._reader_scope.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(_STOP_WAIT):
            await self._reader_done.wait()

    async def _abort_transport(self) -> None:
        await self._stop_io()
        await anyio.aclose_forcefully(self._transport)

    async def _close_transport(self) -> None:
        self._out.close()
        self._transport_closing = True
        try:
            # a failed or aborted connection owes the peer no orderly goodbye
            await self._stop_io(graceful=self._failure is None)
            await self._transport.aclose()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            # whatever happened above (a timeout of the caller's included), the transport
            # ends closed
            await anyio.aclose_forcefully(self._transport)

    # -- ping ----------------------------------------------------------------------------

    async def ping(self) -> float:
        """Measure the round-trip time with a Ping; it also updates :attr:`rtt`.

        :raises ~streams.ConnectionLost: if the connection failed, or the ping went
            unanswered for ``ping_timeout`` (the connection is then failed too)
        """
        self.check_can_ping()
        opaque = self._next_ping
        self._next_ping = (opaque + 1) & 0xFFFFFFFF
        event = self._pings[opaque] = anyio.Event()
        started = anyio.current_time()
        self._out.write(encode_ping(opaque))
        timeout = self.settings.ping_timeout
        try:
            with anyio.fail_after(timeout):
                await event.wait()
        except TimeoutError:
            error = ConnectionLost(f"the peer did not answer a ping within {timeout} s")
            self._lost(error)
            raise error from None
        finally:
            self._pings.pop(opaque, None)
        if self._failure is not None:
            raise self._failure
        rtt = self._rtt = anyio.current_time() - started
        return rtt

    def check_can_ping(self) -> None:
        """Raise why no ping can be sent now, if there is a reason."""
        if self._failure is not None:
            raise self._failure
        if self._closed_locally or self.is_closed:
            raise ConnectionLost("the connection is closed")
