"""The anyio driver that runs h2 on a byte stream: the input (from the event loop's
callbacks on asyncio TCP, from a reader task elsewhere) is in ``_input``, the mapping of
h2's events onto :class:`MuxStream` objects in ``_inbound``; here a writer task, optional
keepalive, and what streams ask of the connection.

Flow control, receiving: each stream's :class:`~streams._core.flow.ReceiveWindow` decides
when the application has read enough to grant credit, and the grant goes to h2 for the
stream and, for the bytes actually read, for the connection. Sending: a stream's own send
window is unlimited and :meth:`Http2Provider.write_data` waits until h2's stream *and*
connection windows allow each frame, so ``send`` waits instead of buffering.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import TaskGroup

from ..._core.errors import (
    ConnectionLost,
    ErrorCode,
    GoingAway,
    LimitExceeded,
    OpenTimeout,
    StreamError,
    StreamRejected,
)
from ..._core.flow import MAX_WINDOW
from ..._core.headers import Headers, HeadersLike
from ..._core.limits import FloodGuard, log_limit_exceeded
from ..._core.stream import MuxStream
from . import _codec_mapping as _mapping
from ._codec import new_connection
from ._codec_limits import HEADER_BLOCK_SLACK, AnswerQueue, InboundLimits
from ._codec_upgrade import UpgradeRequest
from ._guard import (
    Outbound,
    RefusalLog,
    WatchedSend,
    goaway_for,
    linger,
    peer_name,
)
from ._inbound import H2_ERRORS
from ._input import Http2Input
from ._stream import Http2Stream
from .settings import Http2Settings

__all__ = ["Http2Provider", "Http2Stream"]

logger = logging.getLogger("streams.http2")

#: the largest chunk MuxStream hands to write_data; split into frames here
STREAM_CHUNK = 256 * 1024


class Http2Provider(Http2Input):
    """One HTTP/2 connection, client or server side, as a
    :class:`~streams.StreamProvider`. An async context manager.

    Only the client side opens streams (HTTP/2 has no server-initiated requests); the
    server side's :meth:`open_stream` raises :class:`~streams.StreamError`.

    :param transport: the connected byte stream (TCP, or TLS that negotiated ``h2``)
    :param client: ``True`` on the side that dialled
    :param settings: window sizes, limits, keepalive
    :param scheme: the default ``:scheme`` of requests
    :param authority: the default ``:authority`` of requests
    :param initial_data: bytes already read from *transport* that belong to HTTP/2
    :param upgrade: server side: the HTTP/1.1 request that switched with ``Upgrade: h2c``,
        which becomes stream 1
    """

    backend_name = "http2"
    # an open that waits for the answer blocks there; MuxProvider adds a checkpoint to one
    # that does not, so the HEADERS are queued before this task first yields
    write_open_checkpoints = False

    def __init__(
        self,
        transport: anyio.abc.ByteStream,
        *,
        client: bool,
        settings: Http2Settings | None = None,
        scheme: str = "http",
        authority: str = "localhost",
        initial_data: bytes = b"",
        upgrade: UpgradeRequest | None = None,
    ) -> None:
        settings = settings if settings is not None else Http2Settings()
        super().__init__(settings)
        self.h2_settings = settings
        self.client = client
        self._transport = transport
        # the coalescing writer sends HEADERS, DATA and END_STREAM queued together in one
        # write, and lets writers past the mark take turns in order
        self._sender = WatchedSend(transport)
        self._out = Outbound(
            self._sender,
            high_water=max(1 << 20, settings.max_frame_size * 4),
            # a writer queues a whole chunk's frames per turn (see write_data)
            turn_bytes=max(STREAM_CHUNK, settings.max_frame_size),
            direct_to=transport,
        )
        self._writer_done = anyio.Event()
        self._scheme = settings.default_scheme or scheme
        self._authority = settings.default_authority or authority
        self._conn = new_connection(
            client=client,
            receive_window=settings.receive_window,
            connection_window=settings.connection_window,
            max_frame_size=settings.max_frame_size,
            max_concurrent_streams=settings.max_incoming_streams,
            max_header_list_size=settings.max_header_list_size,
            upgrade_settings=upgrade.settings if upgrade is not None else None,
            # the buckets start full, so the clock may start anywhere
            limits=InboundLimits(
                FloodGuard.from_settings(settings, 0.0),
                settings.max_header_list_size + HEADER_BLOCK_SLACK,
            ),
        )
        self._answers = AnswerQueue(settings.max_queued_control_frames)
        self._refusals = RefusalLog(peer_name(transport))
        self._initial_data = initial_data
        self._upgrade = upgrade
        self._send_waiters: dict[int, anyio.Event] = {}
        self._slot_waiter: anyio.Event | None = None
        self._connection_credit = 0
        self._pings: dict[bytes, tuple[float, anyio.Event]] = {}
        self._ping_results: dict[bytes, float] = {}
        self._torn_down = False
        # a chunk's DATA frames go to the writer as one string on trio, whose socket
        # writes from a view of it until done: a quarter of the sends for one copy. On
        # asyncio and uvloop, whose transports copy what the kernel did not take at once,
        # a large write costs more than the sends it saves (256 MiB bulk, CPU per MiB:
        # trio 1,200 -> 1,110 us joined; asyncio 1,430 -> 1,930, uvloop 1,140 -> 1,400)
        self._join_frames = not self.loop_ops.is_asyncio
        # set once a connection closed for a limit has lingered
        self._lingering: anyio.Event | None = None
        self._init_input()

    # -- lifecycle -------------------------------------------------------------------------

    async def _start(self, task_group: TaskGroup) -> None:
        self._flush()
        if self._upgrade is not None:
            self._start_upgraded_request(self._upgrade)
        task_group.start_soon(self._write_loop)
        task_group.start_soon(self._read_loop)
        # one PING at once gives the round-trip time that window auto-tuning needs
        self._send_ping(os.urandom(8))
        if self.h2_settings.keepalive_interval is not None:
            task_group.start_soon(self._keepalive, self.h2_settings.keepalive_interval)
        await anyio.lowlevel.checkpoint()

    def _start_upgraded_request(self, upgrade: UpgradeRequest) -> None:
        # h2 has stream 1 half-closed (remote): the whole request came as HTTP/1.1
        stream = self._new_stream(1, Headers(upgrade.headers), local=False)
        self.incoming(stream)
        if upgrade.body and not stream.finished:
            stream.data_arrived += len(upgrade.body)
            stream.on_data(upgrade.body)
        stream.on_eof()

    async def _write_loop(self) -> None:
        try:
            await self._out.run(self._on_write_error)
        finally:
            self._writer_done.set()

    def _on_write_error(self, exc: BaseException) -> None:
        self._teardown(ConnectionLost(f"writing to the connection failed: {exc}"))

    def _close_for_limit(self, error: LimitExceeded) -> None:
        """End the connection for a limit the peer went over: log which, and send a
        ``GOAWAY`` with its code ahead of anything still queued (a peer that floods us
        rarely reads, and what waits for it is worthless now)."""
        log_limit_exceeded(logger, error, peer_name(self._transport))
        self._out.discard_queued()
        self._conn.data_to_send()
        self._out.write(goaway_for(error, self._conn.highest_inbound_stream_id))
        self._teardown(error, linger=True)

    async def _keepalive(self, interval: float) -> None:
        while not self._torn_down:
            await anyio.sleep(interval)
            try:
                await self.ping()
            except TimeoutError:
                timeout = self.h2_settings.ping_timeout
                self._teardown(ConnectionLost(f"no answer to a PING within {timeout} s"))
                return
            except StreamError:
                return

    async def ping(self) -> float:
        """Send a ``PING`` and return the round-trip time in seconds.

        :raises TimeoutError: if no answer came within the ``ping_timeout`` setting
        :raises ~streams.ConnectionLost: if the connection failed
        """
        self._raise_if_down()
        opaque = os.urandom(8)
        with anyio.fail_after(self.h2_settings.ping_timeout):
            event = self._send_ping(opaque)
            try:
                await event.wait()
            finally:
                self._pings.pop(opaque, None)
        self._raise_if_down()
        return self._ping_results.pop(opaque)

    def _send_ping(self, opaque: bytes) -> anyio.Event:
        event = anyio.Event()
        self._pings[opaque] = (anyio.current_time(), event)
        try:
            self._conn.ping(opaque)
        except H2_ERRORS as exc:
            self._pings.pop(opaque, None)
            raise ConnectionLost(f"cannot send a PING: {exc}") from exc
        self._flush()
        return event

    def _raise_if_down(self) -> None:
        if self._closed_locally or self._torn_down:
            self.check_can_open()
            raise ConnectionLost("the connection is closed")

    def _teardown(self, error: ConnectionLost, *, linger: bool = False) -> None:
        """The connection ends now: fail everything, flush what is queued, close.

        With *linger*, the peer gets time to read our last frames; see :meth:`_linger`.
        """
        if self._torn_down:
            return
        self._torn_down = True
        self.fail(error)
        self._wake_everyone()
        self._out.close()
        if self._task_group is not None:
            if linger:
                self._lingering = anyio.Event()
            self._task_group.start_soon(self._close_after_flush)

    async def _close_after_flush(self) -> None:
        try:
            with anyio.CancelScope(shield=True):
                if self._lingering is not None:
                    await linger(
                        self._transport,
                        self._out,
                        self._writer_done,
                        # the callbacks drop the input: nothing may read the transport
                        discard=self.wait_input_ended if self.reads_from_callbacks else None,
                    )
                else:
                    with anyio.move_on_after(1.5):
                        await self._writer_done.wait()
        finally:
            if self._lingering is not None:
                self._lingering.set()
            await anyio.aclose_forcefully(self._transport)

    async def _close_transport(self) -> None:
        self._torn_down = True
        self._wake_everyone()
        self._flush()
        self._out.close()
        try:
            with anyio.move_on_after(1.5):
                await self._writer_done.wait()
            if self._lingering is not None:
                await self._lingering.wait()
        finally:
            await anyio.aclose_forcefully(self._transport)

    def _wake_everyone(self) -> None:
        waiters = list(self._send_waiters.values())
        self._send_waiters.clear()
        for waiter in waiters:
            waiter.set()
        self._wake_slot()
        for _, event in self._pings.values():
            event.set()

    def flush(self) -> None:
        self._out.flush()

    @property
    def output(self) -> Outbound:
        """The connection's outbound queue."""
        return self._out

    def _flush(self, *, more: bool = False) -> None:
        """Hand what h2 queued to the writer (*more*: data, which its sender may follow
        with more before it waits; kept for the callers' sake, the writer treats both
        alike)."""
        chunks = self._conn.take_chunks()
        if chunks:
            self._out.write(*chunks)
            self._answers.queued(sum(map(len, chunks)), self._conn.take_answer_count())

    # -- opening ---------------------------------------------------------------------------

    async def open_stream(
        self, headers: HeadersLike | None = None, *, wait_accept: bool = True
    ) -> Http2Stream:
        if not self.client:
            self.check_can_open()
            raise StreamError(
                "an HTTP/2 server cannot open streams: only the client side sends requests"
            )
        self.check_can_open()
        await self._wait_for_slot()
        stream = await super().open_stream(headers, wait_accept=wait_accept)
        assert isinstance(stream, Http2Stream)
        return stream

    async def _wait_for_slot(self) -> None:
        """Wait while the peer's ``SETTINGS_MAX_CONCURRENT_STREAMS`` is reached."""
        limit = self._conn.remote_settings.max_concurrent_streams
        # h2 counts its open streams by walking all of them; every stream it counts is one
        # of ours until h2 closes it (a client has no others), so ours bound its count
        if len(self.streams) < limit or self._conn.open_outbound_streams < limit:
            return
        timeout = self.settings.open_timeout
        try:
            with anyio.fail_after(timeout if timeout is not None else float("inf")):
                while True:
                    self.check_can_open()
                    if self._torn_down:
                        raise ConnectionLost("the connection is closed")
                    limit = self._conn.remote_settings.max_concurrent_streams
                    if self._conn.open_outbound_streams < limit:
                        return
                    waiter = self._slot_waiter = self._slot_waiter or anyio.Event()
                    await waiter.wait()
        except TimeoutError:
            raise OpenTimeout(
                f"the peer's limit of concurrent streams stayed reached for {timeout} s"
            ) from None

    def _new_stream(self, stream_id: int, headers: Headers, *, local: bool) -> Http2Stream:
        settings = self.settings
        return Http2Stream(
            self,
            stream_id,
            headers,
            local=local,
            send_window=MAX_WINDOW,
            receive_window=settings.receive_window,
            max_receive_window=settings.max_receive_window,
            max_frame=STREAM_CHUNK,
        )

    def create_local_stream(self, headers: Headers) -> MuxStream:
        if self._torn_down:
            raise ConnectionLost("the connection is closed")
        # checked now, before the stream exists anywhere, so a bad header costs nothing
        request = _mapping.request_headers(headers, scheme=self._scheme, authority=self._authority)
        try:
            stream_id = self._conn.get_next_available_stream_id()
        except H2_ERRORS:
            # 2**30 streams on one connection: a new connection is needed
            going = GoingAway("this connection has used every stream id", last_stream_id=0)
            self.on_goaway(going)
            raise going from None
        stream = self._new_stream(stream_id, headers, local=True)
        stream.request = request
        return stream

    async def write_open(self, stream: MuxStream) -> None:
        # synchronous up to here: the id allocated in create_local_stream is still the next
        assert isinstance(stream, Http2Stream)
        # a GET or HEAD has no body, and servers answer it once the request is complete
        end = stream.request[0][1] in _mapping.BODYLESS_METHODS
        try:
            self._conn.send_headers(stream.stream_id, stream.request, end_stream=end)
        except H2_ERRORS as exc:
            self.check_can_open()
            raise ConnectionLost(f"cannot open a stream: {exc}") from exc
        if end:
            stream.end_with_headers()
        self._flush()

    def write_accept(self, stream: MuxStream, response_headers: Headers) -> None:
        try:
            response = _mapping.accept_response(response_headers)
        except ValueError as exc:
            logger.warning(
                "stream %s: cannot send the handler's headers: %s", stream.stream_id, exc
            )
            response = [(":status", "200")]
        # both sides then see the same response headers, :status included
        response_headers.clear()
        response_headers.extend(response)
        self._call(stream, lambda: self._conn.send_headers(stream.stream_id, response))

    def write_reject(self, stream: MuxStream, rejection: StreamRejected) -> None:
        stream_id = stream.stream_id
        if rejection.retryable:
            self._call(stream, lambda: self._conn.reset_stream(stream_id, ErrorCode.REFUSED_STREAM))
            return
        response = _mapping.reject_response(rejection)

        def respond() -> None:
            self._conn.send_headers(stream_id, response, end_stream=True)
            if not stream.recv_eof:
                # RFC 9113, section 8.1: a complete response, then NO_ERROR stops the upload
                self._conn.reset_stream(stream_id, ErrorCode.NO_ERROR)

        self._call(stream, respond)

    def write_goaway(self) -> None:
        if self._torn_down:
            return
        self._conn.send_graceful_goaway(self._conn.highest_inbound_stream_id)
        self._flush()

    # -- the stream owner interface ----------------------------------------------------------

    async def write_data(self, stream: MuxStream, data: memoryview) -> None:
        stream_id = stream.stream_id
        conn = self._conn
        view = data
        while view:
            # a turn only when the connection's output is full (MuxStream.send was the
            # cancel point): the frames then leave with what this task queues next (its
            # END_STREAM) when it waits or closes
            if self._out.must_wait:
                await self._out.drain()
            stream._check_sendable()
            if self._torn_down:
                self.check_can_open()
                raise ConnectionLost("the connection is closed")
            try:
                window = conn.local_flow_control_window(stream_id)
            except H2_ERRORS:
                window = 0
                stream._check_sendable()
            size = min(len(view), window)
            if size <= 0:
                waiter = self._send_waiters.get(stream_id)
                if waiter is None:
                    waiter = self._send_waiters[stream_id] = self.loop_ops.event()
                await waiter.wait()
                continue
            # every frame the window allows now, then one write and one wait: the writer
            # sends the chunk in one go instead of a frame per turn
            frame_size = conn.max_outbound_frame_size
            try:
                for start in range(0, size, frame_size):
                    conn.send_data(stream_id, view[start : min(start + frame_size, size)].tobytes())
                    if not self._join_frames:
                        self._flush(more=True)
            except H2_ERRORS as exc:
                self._flush()
                stream._check_sendable()
                raise ConnectionLost(f"stream {stream_id} cannot send: {exc}") from exc
            if self._join_frames:
                chunks = conn.take_chunks()
                if chunks:
                    joined = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                    self._out.write(joined)
                    self._answers.queued(len(joined), conn.take_answer_count())
            view = view[size:]

    def write_eof(self, stream: MuxStream) -> None:
        if isinstance(stream, Http2Stream) and stream.ended_with_headers:
            return
        self._call(stream, lambda: self._conn.end_stream(stream.stream_id))

    def write_reset(self, stream: MuxStream, code: int) -> None:
        self._call(stream, lambda: self._conn.reset_stream(stream.stream_id, code))
        self._wake_sender(stream.stream_id)

    def write_window_update(self, stream: MuxStream, increment: int) -> None:
        assert isinstance(stream, Http2Stream)
        self._call(
            stream, lambda: self._conn.increment_flow_control_window(increment, stream.stream_id)
        )

    def stream_finished(self, stream: MuxStream) -> None:
        super().stream_finished(stream)
        assert isinstance(stream, Http2Stream)
        # what the stream will never read still counts against the connection's window
        self.return_connection_credit(stream.data_arrived - stream.data_credited)
        stream.data_credited = stream.data_arrived
        self._wake_sender(stream.stream_id)
        self._wake_slot()

    def stream_extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._transport.extra_attributes

    def _call(self, stream: MuxStream, action: Callable[[], None]) -> None:
        """Run an h2 call about *stream* that may find the stream already closed in h2."""
        if self._torn_down:
            return
        try:
            action()
        except H2_ERRORS as exc:
            logger.debug("stream %s: h2 refused a frame: %r", stream.stream_id, exc)
        self._flush()

    def return_connection_credit(self, size: int) -> None:
        if size <= 0 or self._torn_down:
            return
        self._connection_credit += size
        window = self.h2_settings.connection_window
        # batched, but never so much that the peer runs dry while we sit on credit
        low = self._conn.inbound_flow_control_window < window // 4
        if self._connection_credit >= window // 16 or low:
            credit, self._connection_credit = self._connection_credit, 0
            try:
                self._conn.increment_flow_control_window(credit)
            except H2_ERRORS as exc:
                logger.debug("connection credit of %s refused by h2: %r", credit, exc)
            self._flush()
