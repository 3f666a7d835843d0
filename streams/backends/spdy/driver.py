"""The anyio driver: runs a :class:`~streams.backends.spdy.codec.SpdyCodec` on a byte stream
and maps SPDY/3.1 onto the stream contract (see ``docs/spdy.md``).

``SYN_STREAM`` opens, ``SYN_REPLY`` accepts, ``RST_STREAM`` ``REFUSED_STREAM`` rejects,
``FIN`` is ``send_eof``, ``RST_STREAM`` is ``reset``. Stream windows are the shared
:class:`~streams._core.stream.MuxStream`'s; the session window (3.1) is kept here, and
credit goes back to the peer only as the application reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from ..._core.errors import (
    ErrorCode,
    GoingAway,
    LimitExceeded,
    StreamRejected,
)
from ..._core.flow import MAX_WINDOW, FlowControlViolation
from ..._core.headers import Headers
from ..._core.stream import AcceptState, MuxStream
from . import codec as spdy
from ._session import SpdySession
from .codec import GoAwayStatus, RstStatus, SessionError, SettingId
from .settings import REJECT_REASON, REJECT_RETRYABLE, SpdySettings, error_code, rst_status
from .stream import SpdyStream

__all__ = ["SpdyProvider", "SpdySettings", "SpdyStream", "error_code", "rst_status"]

logger = logging.getLogger("streams.spdy")


class SpdyProvider(SpdySession):
    """One SPDY/3.1 session on a byte stream. An async context manager.

    :param transport: the connection (TCP, TLS, Unix, or an upgraded HTTP/1.1 connection)
    :param client: ``True`` on the side that dialled (odd stream and ping ids)
    :param settings: the session's settings
    """

    backend_name = "spdy"
    write_open_checkpoints = False

    # -- frame handlers --------------------------------------------------------------------

    async def _handle(self, event: spdy.Event) -> None:
        self._frames_received += 1
        if type(event) is not spdy.DataReceived or not event.data:
            assert self._guard is not None
            ours = type(event) is spdy.PingReceived and self.codec.is_local_ping(event.ping_id)
            self._guard.check_event(event, anyio.current_time(), answered_ping=not ours)
        match event:
            case spdy.DataReceived():
                await self._on_data(event)
            case spdy.StreamOpened():
                self._on_open(event)
            case spdy.ReplyReceived():
                self._on_reply(event)
            case spdy.HeadersReceived():
                self._on_headers(event)
            case spdy.ResetReceived():
                self._on_reset(event)
            case spdy.WindowUpdateReceived():
                self._on_window_update(event)
            case spdy.SettingsReceived():
                self._on_settings(event)
            case spdy.PingReceived():
                self._on_ping(event)
            case spdy.GoAwayReceived():
                self._on_goaway_frame(event)
            case spdy.StreamFailed():
                self._on_stream_failed(event)

    def _stream(self, stream_id: int) -> SpdyStream | None:
        stream = self.streams.get(stream_id)
        return stream if isinstance(stream, SpdyStream) else None

    async def _on_data(self, event: spdy.DataReceived) -> None:
        size = len(event.data)
        if not self._no_flow_control:
            self._charge_session(size)
        stream = self._stream(event.stream_id) if event.open else None
        if stream is None:
            self.session_consumed(size)
            return
        if self._no_flow_control:
            window = stream.receive_window
            window.available = max(window.available, size)
        try:
            stream.on_data(event.data)
        except FlowControlViolation as exc:
            self._stream_limit("receive_window", stream.stream_id, str(exc), "reset")
            stream.abort(ErrorCode.FLOW_CONTROL_ERROR)
            return
        if event.fin:
            stream.on_eof()
        if self._no_flow_control:
            # no window holds the peer back: stop reading until the application catches up
            while stream.buffered > stream.receive_window.size and not stream.finished:
                if stream.is_closed or self.failure is not None:
                    break
                waiter = self._consumed_waiter = self._consumed_waiter or anyio.Event()
                await waiter.wait()

    def _on_open(self, event: spdy.StreamOpened) -> None:
        settings = self.spdy_settings
        if self._incoming_count >= settings.max_incoming_streams and not self._close_started:
            # MuxProvider.incoming refuses it; say why
            detail = f"{self._incoming_count} streams open"
            self._stream_limit("max_incoming_streams", event.stream_id, detail, "refused")
        size = sum(len(name) + len(value) for name, value in event.headers)
        if self._header_bytes + size > settings.max_connection_headers:
            detail = f"{self._header_bytes} header bytes held, {size} more"
            self._stream_limit("max_connection_headers", event.stream_id, detail, "refused")
            self._answer(self.codec.rst_stream(event.stream_id, RstStatus.REFUSED_STREAM))
            return
        stream = SpdyStream(
            self,
            event.stream_id,
            Headers(event.headers),
            local=False,
            send_window=self._initial_send_window(),
            receive_window=settings.receive_window,
            max_receive_window=settings.max_receive_window,
            max_frame=settings.max_frame_size,
        )
        stream.header_bytes = size
        self._header_bytes += size
        self.incoming(stream)
        if event.fin:
            stream.on_eof()

    def _on_reply(self, event: spdy.ReplyReceived) -> None:
        stream = self._stream(event.stream_id)
        if stream is None:
            return
        stream.on_accepted(Headers(event.headers))
        confirm = self.spdy_settings.confirm_replies
        if confirm is None:
            confirm = not self._peer_speaks_full_spdy
        if confirm:
            ping_id = self.codec.next_ping_id()
            self._confirming[ping_id] = stream
            self._answer(self.codec.ping(ping_id))
        else:
            self._release(stream)
        if event.fin:
            stream.on_eof()

    def _on_headers(self, event: spdy.HeadersReceived) -> None:
        stream = self._stream(event.stream_id)
        if stream is None:
            return
        if stream.local and stream.accept_state is AcceptState.PENDING:
            # our own peers send the refusal's headers just before its RST_STREAM
            stream.rejection_headers = Headers(event.headers)
        if event.fin:
            stream.on_eof()

    def _on_reset(self, event: spdy.ResetReceived) -> None:
        stream = self._stream(event.stream_id)
        if stream is None:
            return
        code = error_code(event.status)
        if stream.local and stream.accept_state is AcceptState.PENDING:
            headers = stream.rejection_headers
            if headers is not None or code == ErrorCode.REFUSED_STREAM:
                response = Headers()
                reason = ""
                retryable = headers is None
                for name, value in (headers or Headers()).items():
                    if name == REJECT_REASON:
                        reason = value
                    elif name == REJECT_RETRYABLE:
                        retryable = value == "1"
                    else:
                        response.add(name, value)
                stream.on_rejected(StreamRejected(response, reason, code=code, retryable=retryable))
                return
        stream.on_reset(code)

    def _on_window_update(self, event: spdy.WindowUpdateReceived) -> None:
        self._peer_speaks_full_spdy = True
        if self._no_flow_control:
            return
        if event.stream_id == 0:
            try:
                self._session_send.grow(event.delta)
            except FlowControlViolation as exc:
                raise LimitExceeded(
                    "window_overflow", f"session window: {exc}", ErrorCode.FLOW_CONTROL_ERROR
                ) from None
            self._wake_session()
            return
        stream = self._stream(event.stream_id)
        if stream is None:
            return
        try:
            stream.on_window_update(event.delta)
        except FlowControlViolation as exc:
            self._stream_limit("window_overflow", stream.stream_id, str(exc), "reset")
            stream.abort(ErrorCode.FLOW_CONTROL_ERROR)

    def _on_settings(self, event: spdy.SettingsReceived) -> None:
        self._peer_speaks_full_spdy = True
        window: int | None = None
        for setting, value in event.settings:
            if setting == SettingId.MAX_CONCURRENT_STREAMS:
                self._peer_max_streams = value
            elif setting == SettingId.INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise SessionError(f"initial window of {value} bytes")
                window = value
        if window is None:
            return
        # only the last value counts: a frame repeating the setting a hundred thousand
        # times must not shift every stream's window as many times
        delta = window - self._peer_initial_window
        self._peer_initial_window = window
        if delta and not self._no_flow_control:
            for stream in list(self.streams.values()):
                stream.adjust_send_window(delta)

    def _on_ping(self, event: spdy.PingReceived) -> None:
        if not self.codec.is_local_ping(event.ping_id):
            self._answer(self.codec.ping(event.ping_id))
            return
        confirmed = self._confirming.pop(event.ping_id, None)
        if confirmed is not None:
            self._release(confirmed)
            self._wake_confirmations()
            return
        pending = self._pings.pop(event.ping_id, None)
        if pending is not None:
            pending[1].set()

    def _on_goaway_frame(self, event: spdy.GoAwayReceived) -> None:
        try:
            status = GoAwayStatus(event.status)
        except ValueError:
            status = GoAwayStatus.PROTOCOL_ERROR
        code = {
            GoAwayStatus.OK: ErrorCode.NO_ERROR,
            GoAwayStatus.PROTOCOL_ERROR: ErrorCode.PROTOCOL_ERROR,
            GoAwayStatus.INTERNAL_ERROR: ErrorCode.INTERNAL_ERROR,
        }[status]
        error = GoingAway(
            f"the peer is going away ({status.name})",
            code=code,
            last_stream_id=event.last_stream_id,
        )
        self.on_goaway(error)
        # streams of ours above the peer's last one were never processed: safe to retry
        for stream in list(self.streams.values()):
            if stream.local and stream.stream_id > event.last_stream_id:
                stream.on_connection_lost(error)

    def _on_stream_failed(self, event: spdy.StreamFailed) -> None:
        if event.limit is not None:
            self._stream_limit(event.limit, event.stream_id, event.reason, "refused")
        else:
            logger.info("SPDY stream %s failed: %s", event.stream_id, event.reason)
        if event.discarded:
            # dropped data still counts against the session window, or a peer could
            # earn credit without limit by sending to streams that do not exist
            if not self._no_flow_control:
                self._charge_session(event.discarded)
            self.session_consumed(event.discarded)
        stream = self._stream(event.stream_id)
        if stream is not None and not stream.finished:
            stream.abort(error_code(event.status))
        else:
            self._answer(self.codec.rst_stream(event.stream_id, event.status))

    # -- writing (the MuxProvider and StreamOwner hooks) -----------------------------------

    def create_local_stream(self, headers: Headers) -> MuxStream:
        try:
            stream_id = self.codec.next_stream_id()
        except RuntimeError as exc:
            raise GoingAway(str(exc)) from None
        settings = self.spdy_settings
        return SpdyStream(
            self,
            stream_id,
            headers,
            local=True,
            send_window=self._initial_send_window(),
            receive_window=settings.receive_window,
            max_receive_window=settings.max_receive_window,
            max_frame=settings.max_frame_size,
        )

    async def write_open(self, stream: MuxStream) -> None:
        if self.failure is not None:
            raise self.failure
        try:
            frame = self.codec.syn_stream(stream.stream_id, stream.headers.lowercased())
        except ValueError:
            assert isinstance(stream, SpdyStream)
            stream.on_wire = False
            raise
        # no yield unless the output is full: the open leaves in one write with the data
        # and end of stream the caller queues next (MuxProvider checks for cancellation)
        self._out.write(frame)
        if self._out.must_wait:
            await self._out.drain()

    def write_accept(self, stream: MuxStream, response_headers: Headers) -> None:
        try:
            frame = self.codec.syn_reply(stream.stream_id, response_headers.lowercased())
        except ValueError as exc:
            logger.warning("stream %s: cannot send the response headers: %s", stream, exc)
            self._answer(self.codec.rst_stream(stream.stream_id, RstStatus.INTERNAL_ERROR))
            assert isinstance(stream, SpdyStream)
            stream.on_wire = False
            stream.abort(ErrorCode.INTERNAL_ERROR)
            return
        self._answer(frame)

    def write_reject(self, stream: MuxStream, rejection: StreamRejected) -> None:
        extra = Headers(rejection.response_headers)
        if extra or rejection.reason:
            extra.add(REJECT_REASON, rejection.reason)
            extra.add(REJECT_RETRYABLE, "1" if rejection.retryable else "0")
            try:
                frame = self.codec.headers(stream.stream_id, extra.lowercased())
            except ValueError:
                frame = b""
            if frame:
                self._answer(frame)
        self._answer(self.codec.rst_stream(stream.stream_id, rst_status(rejection.code)))

    async def write_data(self, stream: MuxStream, data: memoryview) -> None:
        assert isinstance(stream, SpdyStream)
        remaining = data
        hold_limit = self.spdy_settings.receive_window
        try:
            while remaining:
                if self._out.must_wait:
                    # before writing, not only after: many streams writing at once must
                    # not each add a frame to a queue that is already full
                    await self._out.drain()
                room = len(remaining)
                if not stream.released:
                    if stream.finished:
                        return
                    room = min(room, hold_limit - stream.held_bytes)
                    if room <= 0:
                        # held data is bounded: past the limit, wait for the reply
                        await stream.wait_released()
                        if self.failure is not None:
                            raise self.failure
                        continue
                if self._no_flow_control:
                    size = room
                else:
                    size = self._session_send.take(room)
                    if not size:
                        if self.failure is not None:
                            raise self.failure
                        if stream.finished:
                            return
                        waiter = self._session_waiter = self._session_waiter or anyio.Event()
                        await waiter.wait()
                        continue
                chunk = remaining[:size]
                if not isinstance(chunk.obj, bytes):
                    chunk = memoryview(bytes(chunk))
                header = self.codec.data_header(stream.stream_id, size)
                if not stream.released:
                    # docker/spdystream drops data that arrives before its SYN_REPLY, so
                    # it waits here (up to a bound) for the reply
                    stream.held.append(header + chunk)
                    stream.held_bytes += size
                else:
                    self._out.write(header, chunk)
                remaining = remaining[size:]
                if self._no_flow_control:
                    stream.on_window_update(size)
                # no yield while there is room: MuxStream.send checked for cancellation,
                # and the frames queued until the task waits leave in one write
                if self._out.must_wait:
                    await self._out.drain()
        finally:
            if remaining and not self._no_flow_control and not stream.finished:
                # a cancelled send: give back the stream credit MuxStream took for it
                stream.on_window_update(len(remaining))

    def write_eof(self, stream: MuxStream) -> None:
        assert isinstance(stream, SpdyStream)
        if not stream.on_wire:
            return
        if not stream.released:
            # a FIN before the SYN_REPLY would be dropped by docker/spdystream
            stream.eof_pending = True
            return
        self._out.write(self.codec.data_header(stream.stream_id, 0, fin=True))

    def write_reset(self, stream: MuxStream, code: int) -> None:
        assert isinstance(stream, SpdyStream)
        stream.eof_pending = False
        stream.drop_held()
        if stream.on_wire:
            self._answer(self.codec.rst_stream(stream.stream_id, rst_status(code)))

    def write_window_update(self, stream: MuxStream, increment: int) -> None:
        if self._no_flow_control:
            self._wake_consumed()
            return
        self._answer(self.codec.window_update(stream.stream_id, increment))

    def write_goaway(self) -> None:
        mode = self.spdy_settings.goaway
        early = mode == "early" or (mode == "auto" and self._peer_speaks_full_spdy)
        if early and not self._goaway_sent and self.failure is None:
            self._goaway_sent = True
            self._out.write(self.codec.goaway())

    def stream_finished(self, stream: MuxStream) -> None:
        if self.streams.get(stream.stream_id) is stream and isinstance(stream, SpdyStream):
            self._header_bytes -= stream.header_bytes
        super().stream_finished(stream)
        self._wake_consumed()
        self._wake_session()

    def stream_extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._out.extra_attributes
