"""The session half of the SPDY driver: the connection's tasks (reader, writer,
keepalive), how it fails or hits a limit, the session window, and pings. The frame
handlers and the stream hooks are :class:`~streams.backends.spdy.driver.SpdyProvider`'s.
"""

from __future__ import annotations

import logging
from abc import abstractmethod

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import TaskGroup

from ..._core.errors import (
    ConnectionLost,
    ErrorCode,
    LimitExceeded,
    ProtocolError,
    ProviderClosed,
)
from ..._core.flow import MAX_WINDOW, FlowControlViolation, ReceiveWindow, SendWindow
from ..._core.limits import log_limit_exceeded
from ..._core.loop_io import socket_receiver
from ..._core.transport import CoalescingBuffer
from . import codec as spdy
from ._guard import AnswerQueue, SendCounter, SessionGuard, limit_error, peer_name
from ._lifecycle import InnerTaskGroupProvider
from .codec import GoAwayStatus, SessionError, SettingId
from .settings import SpdySettings
from .stream import SpdyStream

__all__ = ["SpdySession"]

logger = logging.getLogger("streams.spdy")


class SpdySession(InnerTaskGroupProvider):
    """What a SPDY/3.1 session runs besides its frame handlers and stream hooks.

    :param transport: the connection (TCP, TLS, Unix, or an upgraded HTTP/1.1 connection)
    :param client: ``True`` on the side that dialled (odd stream and ping ids)
    :param settings: the session's settings
    """

    def __init__(
        self,
        transport: anyio.abc.ByteStream,
        *,
        client: bool,
        settings: SpdySettings | None = None,
    ) -> None:
        settings = settings if settings is not None else SpdySettings()
        super().__init__(settings)
        self.spdy_settings = settings
        self._transport = transport
        self.codec = spdy.SpdyCodec(
            client=client,
            max_header_block=settings.max_header_block,
            max_control_frame=settings.max_control_frame,
            compression_level=settings.compression_level,
            max_headers=settings.max_headers,
        )
        self._wire = SendCounter(transport)
        self._out = _Outbound(
            self._wire,
            settings.write_buffer,
            turn_bytes=settings.max_frame_size,
            direct_to=transport,
        )
        self._answers = AnswerQueue(
            self._wire, settings.max_queued_control_frames, settings.max_queued_control_bytes
        )
        self._guard: SessionGuard | None = None
        #: decompressed header bytes held by the peer's open streams
        self._header_bytes = 0
        #: after a protocol or limit failure: keep reading (and discarding) while the
        #: GOAWAY leaves, so the peer's unread bytes do not turn our close into a reset
        self._linger = False
        self._no_flow_control = settings.no_flow_control
        self._peer_initial_window = spdy.DEFAULT_WINDOW
        self._session_send = SendWindow(spdy.DEFAULT_WINDOW)
        self._session_recv = ReceiveWindow(settings.session_window)
        self._session_waiter: anyio.Event | None = None
        self._consumed_waiter: anyio.Event | None = None
        self._pings: dict[int, tuple[float, anyio.Event]] = {}
        self._confirming: dict[int, SpdyStream] = {}
        self._confirmations: anyio.Event | None = None
        self._peer_max_streams: int | None = None
        self._peer_speaks_full_spdy = False
        self._goaway_sent = False
        self._writer_done = anyio.Event()
        self._frames_received = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def _start(self, task_group: TaskGroup) -> None:
        settings = self.spdy_settings
        self._guard = SessionGuard(settings, peer_name(self._transport), anyio.current_time())
        self._out.write(
            self.codec.settings(
                [
                    (SettingId.INITIAL_WINDOW_SIZE, settings.receive_window),
                    (SettingId.MAX_CONCURRENT_STREAMS, settings.max_incoming_streams),
                ]
            )
        )
        if settings.session_window > spdy.DEFAULT_WINDOW:
            self._out.write(
                self.codec.window_update(0, settings.session_window - spdy.DEFAULT_WINDOW)
            )
        task_group.start_soon(self._run_writer)
        task_group.start_soon(self._read_loop)
        if settings.keepalive_interval is not None:
            task_group.start_soon(self._keepalive, settings.keepalive_interval)
        await anyio.lowlevel.checkpoint()

    async def _run_writer(self) -> None:
        try:
            await self._out.run(self._write_failed)
        finally:
            self._writer_done.set()

    def _write_failed(self, error: BaseException) -> None:
        if not self._close_started:
            self._fail(ConnectionLost(f"writing to the peer failed: {error}"))

    async def _close_transport(self) -> None:
        # data held for a reply's confirmation must reach the peer before GOAWAY
        with anyio.move_on_after(1.0):
            while self._confirming and self.failure is None:
                waiter = self._confirmations = self._confirmations or anyio.Event()
                await waiter.wait()
        for stream in list(self._confirming.values()):
            self._release(stream)
        self._confirming.clear()
        if not self._goaway_sent and self.failure is None:
            self._goaway_sent = True
            self._out.write(self.codec.goaway())
        self._out.close()
        with anyio.move_on_after(1.0):
            await self._writer_done.wait()
        await anyio.aclose_forcefully(self._transport)

    # -- failure and limits ----------------------------------------------------------------

    def _fail(self, error: ConnectionLost) -> None:
        self.fail(error)
        self._wake_session()
        self._wake_consumed()
        self._wake_confirmations()
        for _, event in self._pings.values():
            event.set()

    def _fail_session(self, error: SessionError) -> None:
        """The peer broke the protocol: ``GOAWAY`` with the status, then close."""
        if error.limit is not None:
            self._fail_limit(limit_error(error))
            return
        self._goaway(error.status)
        logger.info("closing a SPDY session: %s", error)
        self._fail(ProtocolError(f"the peer broke SPDY: {error}", ErrorCode.PROTOCOL_ERROR))

    def _fail_limit(self, error: LimitExceeded) -> None:
        """The peer went over a limit: log which, ``GOAWAY`` (SPDY's only status for a
        misbehaving peer is ``PROTOCOL_ERROR``), then close."""
        if self.failure is not None:
            return
        assert self._guard is not None
        log_limit_exceeded(logger, error, self._guard.peer)
        # the session ends for what the peer did: what it would still get (echoes of a
        # flood, say) must not hold the GOAWAY back from a peer that reads slowly
        self._out.discard_queued()
        self._goaway(GoAwayStatus.PROTOCOL_ERROR)
        self._fail(error)

    def _goaway(self, status: GoAwayStatus) -> None:
        if not self._goaway_sent:
            self._goaway_sent = True
            self._out.write(self.codec.goaway(status))
        self._out.close()
        self._linger = True

    # -- reading ---------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        receive = socket_receiver(self._transport) or self._transport.receive
        out = self._out
        try:
            while True:
                try:
                    data = await receive(256 * 1024)
                except anyio.EndOfStream:
                    self._fail(self._going_away or ConnectionLost("the peer closed the connection"))
                    return
                for event in self.codec.receive_data(data):
                    await self._handle(event)
                    if self._answers.over() is not None:
                        out.flush()
                        await self._answers.wait_for_writer()
                # answers to what arrived (replies, credit, pongs) leave before the reader
                # waits again, in one write with what the streams queued meanwhile
                out.flush()
        except SessionError as exc:
            self._fail_session(exc)
        except LimitExceeded as exc:
            self._fail_limit(exc)
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            # also while closing here: streams still draining must learn the peer is gone
            self._fail(ConnectionLost(f"reading from the peer failed: {exc!r}"))
        finally:
            if self.failure is not None and not self._close_started:
                # let a GOAWAY already queued reach the peer, then drop the connection
                self._out.close()
                with anyio.CancelScope(shield=True):
                    with anyio.move_on_after(1.0):
                        if self._linger:
                            await self._discard_until_written()
                        await self._writer_done.wait()
                    await anyio.aclose_forcefully(self._transport)

    async def _discard_until_written(self) -> None:
        async with anyio.create_task_group() as group:

            async def discard() -> None:
                try:
                    while True:
                        await self._transport.receive(256 * 1024)
                except (OSError, anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                except anyio.ClosedResourceError:
                    return

            group.start_soon(discard)
            await self._writer_done.wait()
            group.cancel_scope.cancel()

    # -- the stream owner's output hooks ---------------------------------------------------

    def flush(self) -> None:
        self._out.flush()

    def flush_follows(self) -> None:
        self._out.flush_follows = True

    # -- the session window and answers ----------------------------------------------------

    def _charge_session(self, size: int) -> None:
        try:
            self._session_recv.on_data(size)
        except FlowControlViolation as exc:
            raise LimitExceeded("session_window", str(exc), ErrorCode.FLOW_CONTROL_ERROR) from None

    def _stream_limit(self, limit: str, stream_id: int, detail: str, action: str) -> None:
        assert self._guard is not None
        self._guard.stream_limit(limit, stream_id, detail, action, logger)

    def _release(self, stream: SpdyStream) -> None:
        """Let the stream's data go: what was held first, then the FIN if it is due."""
        if stream.released:
            return
        stream.released = True
        if stream.state in ("reset", "failed", "rejected"):
            stream.drop_held()
            stream.eof_pending = False
            return
        # a stream that finished here while held (sent everything, read everything, closed)
        # still owes the peer what it held
        held, stream.held = stream.held, []
        stream.held_bytes = 0
        self._out.write(*held)
        if stream.eof_pending:
            stream.eof_pending = False
            self._out.write(self.codec.data_header(stream.stream_id, 0, fin=True))
        stream.wake_released()

    def session_consumed(self, size: int) -> None:
        """*size* bytes left a stream's buffer (read or dropped): credit the session."""
        if self._no_flow_control:
            self._wake_consumed()
            return
        if size and self.failure is None:
            increment = self._session_recv.on_consumed(size)
            if increment:
                self._answer(self.codec.window_update(0, increment))

    def _answer(self, frame: bytes) -> None:
        """Queue a control frame the peer's frames called for, counting it against the
        limits on answers queued for a peer that does not read."""
        self._answers.add(len(frame))
        self._out.write(frame)

    def session_credit_back(self, size: int) -> None:
        """Data that took session credit was never sent: the credit is ours again."""
        if not self._no_flow_control and size:
            self._session_send.grow(size)
            self._wake_session()

    def _wake_confirmations(self) -> None:
        waiter, self._confirmations = self._confirmations, None
        if waiter is not None:
            waiter.set()

    def _wake_session(self) -> None:
        waiter, self._session_waiter = self._session_waiter, None
        if waiter is not None:
            waiter.set()

    def _wake_consumed(self) -> None:
        waiter, self._consumed_waiter = self._consumed_waiter, None
        if waiter is not None:
            waiter.set()

    def _initial_send_window(self) -> int:
        return MAX_WINDOW if self._no_flow_control else self._peer_initial_window

    # -- ping ------------------------------------------------------------------------------

    @property
    def max_streams(self) -> int | None:
        return self._peer_max_streams

    async def ping(self) -> float:
        """Send a ``PING`` and return the round-trip time in seconds.

        :raises ~streams.ConnectionLost: if the connection failed first
        :raises ~streams.ProviderClosed: if the provider was closed here
        """
        if self._closed_locally:
            raise ProviderClosed()
        if self.failure is not None:
            raise self.failure
        ping_id = self.codec.next_ping_id()
        waiter = anyio.Event()
        started = anyio.current_time()
        self._pings[ping_id] = (started, waiter)
        self._out.write(self.codec.ping(ping_id))
        try:
            await waiter.wait()
        finally:
            self._pings.pop(ping_id, None)
        if self.failure is not None:
            raise self.failure
        if self._closed_locally:
            raise ProviderClosed()
        rtt = self._rtt = anyio.current_time() - started
        return rtt

    async def _keepalive(self, interval: float) -> None:
        timeout = self.spdy_settings.keepalive_timeout
        while self.failure is None and not self._close_started:
            await anyio.sleep(interval)
            seen = self._frames_received
            try:
                with anyio.move_on_after(timeout):
                    await self.ping()
                    continue
            except anyio.ClosedResourceError:
                return
            except ConnectionLost:
                return
            if self._frames_received == seen and not self._close_started:
                self._fail(ConnectionLost(f"no answer to a keepalive ping within {timeout} s"))
                await anyio.aclose_forcefully(self._transport)
                return

    @abstractmethod
    async def _handle(self, event: spdy.Event) -> None:
        """Act on one event of the codec."""


class _Outbound(CoalescingBuffer):
    """The session's queue, telling the answer limits when the queue is taken, whether by
    the writer task or written straight to the socket by a flush."""

    _stream: SendCounter

    def _taken(self) -> None:
        super()._taken()
        self._stream.started()
