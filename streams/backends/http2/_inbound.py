"""What the peer sends, as calls on the HTTP/2 backend's streams: h2's events (data, ends,
resets, requests, responses, ping answers, ``GOAWAY``) become ``on_*`` calls on
:class:`Http2Stream` objects and :class:`~streams._core.mux.MuxProvider`. The driver's
reader hands each event to :meth:`Http2Events._handle`; the driver provides the few
writes an event needs (the abstract methods below).
"""

from __future__ import annotations

import contextlib
import logging
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import anyio
import h2.events
import h2.exceptions
import hpack
import hyperframe.exceptions

from ..._core.errors import ConnectionLost, ErrorCode, GoingAway, ProtocolError, StreamRejected
from ..._core.headers import Headers
from ..._core.mux import MuxProvider
from ..._core.stream import AcceptState, MuxStream
from . import _codec_mapping as _mapping
from ._codec import GracefulH2Connection
from ._guard import RefusalLog
from ._stream import Http2Stream

__all__ = ["H2_ERRORS", "Http2Events"]

logger = logging.getLogger("streams.http2")

#: what h2 and the libraries under it raise
H2_ERRORS = (h2.exceptions.H2Error, hpack.HPACKError, hyperframe.exceptions.HyperframeError)


class Http2Events(MuxProvider):
    """The half of :class:`~streams.backends.http2.Http2Provider` that maps what arrives
    onto streams."""

    _conn: GracefulH2Connection
    #: senders waiting for window, by stream id
    _send_waiters: dict[int, anyio.Event]
    #: an opener waiting for the peer's limit of concurrent streams
    _slot_waiter: anyio.Event | None
    _refusals: RefusalLog
    #: PINGs in flight: when each was sent, and the event its sender waits on
    _pings: dict[bytes, tuple[float, anyio.Event]]
    _ping_results: dict[bytes, float]

    @abstractmethod
    def _new_stream(self, stream_id: int, headers: Headers, *, local: bool) -> Http2Stream:
        """A stream object for *stream_id*."""

    @abstractmethod
    def _call(self, stream: MuxStream, action: Callable[[], None]) -> None:
        """Run an h2 call about *stream* and flush what it queued."""

    @abstractmethod
    def return_connection_credit(self, size: int) -> None:
        """Give the peer back *size* bytes of connection-level window."""

    @abstractmethod
    def _teardown(self, error: ConnectionLost, *, linger: bool = False) -> None:
        """End the connection now with *error*."""

    def _wake_slot(self) -> None:
        waiter, self._slot_waiter = self._slot_waiter, None
        if waiter is not None:
            waiter.set()

    def _wake_sender(self, stream_id: int) -> None:
        waiter = self._send_waiters.pop(stream_id, None)
        if waiter is not None:
            waiter.set()

    def _stream(self, stream_id: int) -> Http2Stream | None:
        stream = self.streams.get(stream_id)
        return stream if isinstance(stream, Http2Stream) else None

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            self._on_data(event)
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id:
                self._wake_sender(event.stream_id)
            else:
                for stream_id in list(self._send_waiters):
                    self._wake_sender(stream_id)
        elif isinstance(event, h2.events.RequestReceived):
            self._on_request(event)
        elif isinstance(event, h2.events.ResponseReceived):
            self._on_response(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._stream(event.stream_id or 0)
            if stream is not None:
                stream.on_eof()
            self._wake_slot()
        elif isinstance(event, h2.events.StreamReset):
            self._on_reset(event)
        elif isinstance(event, h2.events.TrailersReceived):
            stream = self._stream(event.stream_id or 0)
            if stream is not None:
                stream.trailers = Headers(_pairs(event.headers))
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            for stream_id in list(self._send_waiters):
                self._wake_sender(stream_id)
            self._wake_slot()
        elif isinstance(event, h2.events.PingAckReceived):
            self._on_ping_ack(event.ping_data or b"")
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_goaway(event)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id or 0
        data = event.data or b""
        controlled = event.flow_controlled_length or 0
        padding = controlled - len(data)
        stream = self._stream(stream_id)
        if stream is None or stream.finished:
            # nobody will read it: give the credit back at once
            self.return_connection_credit(controlled)
            return
        if padding:
            self.return_connection_credit(padding)
            self._call(stream, lambda: self._conn.increment_flow_control_window(padding, stream_id))
        stream.data_arrived += len(data)
        stream.on_data(data)
        if stream.finished or stream.is_closed:
            self.return_connection_credit(stream.data_arrived - stream.data_credited)
            stream.data_credited = stream.data_arrived

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id or 0
        stream = self._new_stream(stream_id, Headers(_pairs(event.headers)), local=False)
        settings = self.settings
        if len(stream.headers) > settings.max_headers:
            # the block was decoded (HPACK stays in step), so refusing the stream is enough
            self.streams[stream_id] = stream
            self._incoming_count += 1
            self._refuse_for_limit(
                stream,
                "max_headers",
                f"{len(stream.headers)} headers, more than {settings.max_headers}",
                status="431",
            )
            return
        if self._incoming_count >= settings.max_incoming_streams:
            self._refusals.log(
                logger,
                stream_id,
                "max_incoming_streams",
                f"more than {settings.max_incoming_streams} streams at once",
            )
        self.incoming(stream)

    def _refuse_for_limit(self, stream: MuxStream, limit: str, why: str, *, status: str) -> None:
        self._refusals.log(logger, stream.stream_id, limit, why)
        rejection = StreamRejected(Headers({":status": status}), why, code=ErrorCode.REFUSED_STREAM)
        self._reject(stream, rejection)

    def _on_response(self, event: h2.events.ResponseReceived) -> None:
        stream_id = event.stream_id or 0
        stream = self._stream(stream_id)
        if stream is None:
            return
        headers = Headers(_pairs(event.headers))
        if _mapping.is_accepted(headers.get(":status", "")):
            stream.on_accepted(headers)
            return
        stream.on_rejected(_mapping.rejection_from_response(headers))
        # the rejection ends our direction too, so the stream stops counting as open
        with contextlib.suppress(*H2_ERRORS):
            self._conn.reset_stream(stream_id, ErrorCode.CANCEL)

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        stream_id = event.stream_id or 0
        code = int(event.error_code or 0)
        stream = self._stream(stream_id)
        self._wake_sender(stream_id)
        self._wake_slot()
        if stream is None:
            return
        if stream.local and stream.accept_state is AcceptState.PENDING:
            retryable = code == ErrorCode.REFUSED_STREAM
            reason = "refused" if retryable else f"reset before a response ({code})"
            stream.on_rejected(StreamRejected(Headers(), reason, code=code, retryable=retryable))
            return
        stream.on_reset(code)

    def _on_ping_ack(self, opaque: bytes) -> None:
        pending = self._pings.pop(opaque, None)
        if pending is None:
            return
        sent_at, event = pending
        rtt = anyio.current_time() - sent_at
        self._rtt = rtt
        self._ping_results[opaque] = rtt
        event.set()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        code = int(event.error_code or 0)
        last = event.last_stream_id or 0
        debug = (event.additional_data or b"").decode("utf-8", "replace")
        if code != ErrorCode.NO_ERROR:
            message = f"the peer closed the connection with {ErrorCode.coerce(code)!r}"
            self._teardown(ProtocolError(f"{message}: {debug}" if debug else message, code))
            return
        going = GoingAway(
            f"the peer is going away; streams above {last} were not processed",
            code=code,
            last_stream_id=last,
        )
        self.on_goaway(going)
        for stream in list(self.streams.values()):
            if stream.local and stream.stream_id > last:
                stream.on_connection_lost(going)
        self._wake_slot()


def _pairs(headers: Any) -> list[tuple[str, str]]:
    out = []
    for name, value in headers or ():
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        out.append((name, value))
    return out
