"""The framer's anyio driver: runs the codec on any anyio byte stream.

One reader task reads the transport in large chunks and feeds the codec; one writer task
(:class:`~streams._core.transport.OutboundBuffer`) writes what the streams queued, in
batches; a keepalive task pings. Everything else is :class:`MuxProvider` and
:class:`MuxStream`, which this module maps onto frames.
"""

from __future__ import annotations

import logging
import time
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
    StreamRejected,
)
from ..._core.flow import FlowControlViolation
from ..._core.headers import Headers
from ..._core.stream import AcceptState, MuxStream
from ..._core.transport import CoalescingBuffer
from ._lifecycle import FramerLifecycle
from ._limits import ConnectionLimits
from ._stream import FramerStream
from .codec import (
    ACK,
    FIN,
    HEADER_SIZE,
    INITIAL_WINDOW,
    RST,
    SYN,
    BlockKind,
    DataReceived,
    EmptyFrame,
    FrameDecoder,
    FramerProtocolError,
    GoAwayCode,
    GoAwayReceived,
    HeaderBlock,
    HeaderBlockReader,
    HeaderBlockRefused,
    PingReceived,
    WindowUpdated,
    encode_data_header,
    encode_go_away,
    encode_header_block,
    encode_ping,
    encode_window_update,
)
from .config import FramerSettings

__all__ = ["FramerProvider", "FramerStream"]

logger = logging.getLogger("streams.framer")

_GO_AWAY_CODES = {
    GoAwayCode.NORMAL: ErrorCode.NO_ERROR,
    GoAwayCode.PROTOCOL_ERROR: ErrorCode.PROTOCOL_ERROR,
    GoAwayCode.INTERNAL_ERROR: ErrorCode.INTERNAL_ERROR,
}
_OPENING = (BlockKind.OPEN,)
#: a Window Update without flags that grants less than this is counted as a frame without
#: effect: yamux peers grant at least half a window at a time, we a quarter
_TINY_WINDOW_UPDATE = 4096
_ANSWERS = (BlockKind.ACCEPT, BlockKind.REJECT)
#: the header blocks without headers, the most common ones (a default open, an acceptance
#: without response headers): encoded once, and recognised without decoding
_EMPTY_OPEN = encode_header_block(HeaderBlock(kind=BlockKind.OPEN))
_EMPTY_ACCEPT = encode_header_block(HeaderBlock(kind=BlockKind.ACCEPT))
_EMPTY_BLOCKS = {_EMPTY_OPEN: BlockKind.OPEN, _EMPTY_ACCEPT: BlockKind.ACCEPT}
_EMPTY_SIZE = len(_EMPTY_OPEN)
_EMPTY_HEADER_BLOCKS = {kind: HeaderBlock(kind=kind) for kind in _EMPTY_BLOCKS.values()}


class FramerProvider(FramerLifecycle):
    """One framer connection over *transport*.

    :param transport: the byte stream to run on (TCP, TLS, Unix socket, memory)
    :param client: ``True`` on the side that dialled (it opens odd stream ids)
    :param raw: plain yamux, without header blocks
    :param settings: the connection's settings
    """

    backend_name = "framer"
    settings: FramerSettings
    # an open only queues its frames (see write_open)
    write_open_checkpoints = False

    def __init__(
        self,
        transport: anyio.abc.ByteStream,
        *,
        client: bool,
        raw: bool = False,
        settings: FramerSettings | None = None,
    ) -> None:
        settings = settings if settings is not None else FramerSettings()
        super().__init__(settings)
        self.settings = settings
        self.raw = raw
        self._transport = transport
        self._decoder = FrameDecoder(client=client, max_data_length=settings.max_receive_window)
        self._out = CoalescingBuffer(
            transport, high_water=settings.write_buffer, turn_bytes=settings.max_frame_size
        )
        peer = transport.extra(anyio.abc.SocketAttribute.remote_address, None)
        if isinstance(peer, tuple):
            peer = f"{peer[0]}:{peer[1]}"
        self._limits = ConnectionLimits(settings, self._out, time.monotonic(), peer or "the peer")
        #: ``True`` once the connection is being closed for the peer's fault
        self._lingering = False
        self._writer_done = anyio.Event()
        self._reader_scope = anyio.CancelScope()
        self._reader_done = anyio.Event()
        #: streams whose peer's header block has not fully arrived
        self._readers: dict[int, HeaderBlockReader] = {}
        #: streams the peer opened whose OPEN block is still arriving (not yet dispatched)
        self._announced: dict[int, FramerStream] = {}
        self._pings: dict[int, anyio.Event] = {}
        self._next_ping = 1
        self._init_input()
        self._transport_closing = False
        #: when a stream last opened or finished (``time.monotonic()``: no event loop
        #: lookup on the open path), for the idle timeout
        self.last_activity = time.monotonic()

    # -- tasks ---------------------------------------------------------------------------

    async def _start(self, task_group: TaskGroup) -> None:
        task_group.start_soon(self._write_loop)
        task_group.start_soon(self._read_loop)
        if self.settings.keepalive_interval is not None:
            task_group.start_soon(self._keepalive)
        if self.settings.idle_timeout is not None:
            task_group.start_soon(self._idle_watch)
        await anyio.lowlevel.checkpoint()

    async def _write_loop(self) -> None:
        try:
            await self._out.run(self._write_failed)
        finally:
            self._writer_done.set()

    def _write_failed(self, error: BaseException) -> None:
        self._lost(ConnectionLost(f"writing to the connection failed: {error}"))

    async def _read_loop(self) -> None:
        try:
            with self._reader_scope:
                await self._read()
        finally:
            self._reader_done.set()

    # -- connection buffer ---------------------------------------------------------------

    @property
    def output(self) -> CoalescingBuffer:
        """The connection's outbound queue."""
        return self._out

    # -- frames in -----------------------------------------------------------------------

    def _new_stream(self, stream_id: int, headers: Headers, *, local: bool) -> FramerStream:
        settings = self.settings
        return FramerStream(
            self,
            stream_id,
            headers,
            local=local,
            send_window=INITIAL_WINDOW,
            receive_window=settings.receive_window,
            max_receive_window=settings.max_receive_window,
            max_frame=settings.max_frame_size,
        )

    def _remote_open(self, stream_id: int) -> None:
        settings = self.settings
        now = time.monotonic()
        self._limits.check("streams_per_second", now)
        stream = self._new_stream(stream_id, Headers(), local=False)
        self.last_activity = now
        if settings.receive_window > INITIAL_WINDOW:
            # the stream's ReceiveWindow already counts the larger window: grant it
            self._out.write(
                encode_window_update(stream_id, settings.receive_window - INITIAL_WINDOW)
            )
            self._answered(HEADER_SIZE)
        if self.raw:
            self.incoming(stream)
            return
        self._announced[stream_id] = stream
        if len(self._announced) + self._incoming_count > settings.max_incoming_streams:
            # streams whose headers are still arriving count too: each may hold a partial
            # header block, and a peer that never completes them must not hold more
            self._limits.stream_refused(
                logger, "max_incoming_streams", stream_id, f"{settings.max_incoming_streams} open"
            )
            self._refuse(stream)
            return
        self._readers[stream_id] = HeaderBlockReader(
            _OPENING, settings.max_header_block, settings.max_headers
        )

    def incoming(self, stream: MuxStream) -> None:
        limit = self.settings.max_incoming_streams
        if self._incoming_count >= limit:
            self._limits.stream_refused(
                logger, "max_incoming_streams", stream.stream_id, f"{limit} open"
            )
        super().incoming(stream)

    def _refuse_block(self, stream: FramerStream, exc: HeaderBlockRefused) -> None:
        """A header block over a limit: only its stream is refused (or, for an answer to
        our own open, reset); the connection carries on."""
        self._readers.pop(stream.stream_id, None)
        assert exc.limit is not None
        self._limits.stream_refused(logger, exc.limit, stream.stream_id, str(exc))
        if stream.local:
            stream._local_reset(ErrorCode.PROTOCOL_ERROR)
        else:
            self._reject(stream, StreamRejected(Headers(), str(exc)))

    def _find(self, stream_id: int) -> FramerStream | None:
        # every stream of this provider is one (an isinstance on an ABC, or typing.cast,
        # costs a Python call per frame)
        stream: FramerStream | None = self.streams.get(stream_id)  # type: ignore[assignment]
        if stream is None:
            return self._announced.get(stream_id)
        return stream

    def _on_data(self, event: DataReceived) -> None:
        flags = event.flags
        stream_id = event.stream_id
        if flags & SYN:
            self._remote_open(stream_id)
        stream = self._find(stream_id)
        if stream is None:
            # finished here; the frame crossed our reset or rejection
            if flags & RST:
                self._limits.check("resets_per_second", time.monotonic())
            return
        data = event.data
        if flags & ACK and self.raw:
            stream.on_accepted(Headers())
        if self._readers and stream_id in self._readers:
            data = self._header_bytes(stream, data, flags)
            if stream.finished:
                return
        if data:
            try:
                stream.on_data(data)
            except FlowControlViolation as exc:
                raise FramerProtocolError(str(exc), flow_control=True) from exc
            self._buffered += len(data)
        if flags & (FIN | RST):
            self._end_flags(stream, flags, ErrorCode.CANCEL)

    def _header_bytes(self, stream: FramerStream, data: bytes, flags: int) -> bytes:
        """Feed the peer's header block; return the stream data that follows it."""
        window = stream.receive_window
        try:
            window.on_data(len(data))
        except FlowControlViolation as exc:
            raise FramerProtocolError(str(exc), flow_control=True) from exc
        reader = self._readers[stream.stream_id]
        kind = _EMPTY_BLOCKS.get(data[:_EMPTY_SIZE]) if not reader.pending else None
        if kind is not None and kind in reader.expected:
            block: HeaderBlock | None = _EMPTY_HEADER_BLOCKS[kind]
            rest = data[_EMPTY_SIZE:]
        else:
            try:
                block, rest = reader.feed(data)
            except HeaderBlockRefused as exc:
                self._refuse_block(stream, exc)
                return b""
        used = len(data) - len(rest)
        increment = window.on_consumed(used)
        if block is None:
            if flags & FIN:
                raise FramerProtocolError(f"stream {stream.stream_id} ended before its headers")
            if increment:
                self.write_window_update(stream, increment)
            return b""
        del self._readers[stream.stream_id]
        # the bytes after the block are counted again by stream.on_data
        window.available += len(rest)
        if increment:
            self.write_window_update(stream, increment)
        headers = Headers(block.headers)
        if block.kind == BlockKind.OPEN:
            stream.set_headers(headers)
            del self._announced[stream.stream_id]
            self.incoming(stream)
        elif block.kind == BlockKind.ACCEPT:
            stream.on_accepted(headers)
        else:
            stream.on_rejected(
                StreamRejected(
                    headers,
                    block.reason or "rejected by the peer",
                    code=block.code,
                    retryable=block.retryable,
                )
            )
        return rest

    def _end_flags(self, stream: FramerStream, flags: int, reset_code: int) -> None:
        if flags & FIN:
            stream.on_eof()
        if flags & RST:
            if self.raw and stream.local and stream.accept_state is AcceptState.PENDING:
                stream.on_rejected(
                    StreamRejected(Headers(), "refused by the peer (reset)", retryable=True)
                )
            else:
                self._limits.check("resets_per_second", time.monotonic())
                stream.on_reset(reset_code)
        if stream.stream_id in self._announced and stream.finished:
            self._drop_announced(stream)

    def _on_control(
        self, event: WindowUpdated | PingReceived | GoAwayReceived | EmptyFrame
    ) -> None:
        if type(event) is WindowUpdated:
            flags = event.flags
            stream_id = event.stream_id
            if flags & SYN:
                self._remote_open(stream_id)
            elif not flags and event.increment < _TINY_WINDOW_UPDATE:
                self._limits.check("empty_frames_per_second", time.monotonic())
            stream = self._find(stream_id)
            if stream is None:
                if flags & RST:
                    self._limits.check("resets_per_second", time.monotonic())
                return
            if flags & ACK and self.raw:
                stream.on_accepted(Headers())
            if flags & RST:
                code = ErrorCode.CANCEL if self.raw else event.increment
                self._end_flags(stream, flags, code)
                return
            if event.increment:
                try:
                    stream.on_window_update(event.increment)
                except FlowControlViolation as exc:
                    raise FramerProtocolError(
                        str(exc), flow_control=True, limit="window_overflow"
                    ) from exc
            if flags & FIN:
                if stream_id in self._readers:
                    raise FramerProtocolError(f"stream {stream_id} ended before its headers")
                self._end_flags(stream, flags, ErrorCode.CANCEL)
        elif type(event) is PingReceived:
            if event.ack:
                waiter = self._pings.get(event.opaque)
                if waiter is not None:
                    waiter.set()
                    return
            # answers we did not ask for count as pings too
            self._limits.check("pings_per_second", time.monotonic())
            if not event.ack:
                self._out.write(encode_ping(event.opaque, ack=True))
                self._answered(HEADER_SIZE)
        elif type(event) is EmptyFrame:
            self._limits.check("empty_frames_per_second", time.monotonic())
        elif type(event) is GoAwayReceived:
            code = _GO_AWAY_CODES[event.code]
            self.on_goaway(GoingAway(f"the peer is going away ({code.name})", code=code))

    def _drop_announced(self, stream: FramerStream) -> None:
        self._announced.pop(stream.stream_id, None)
        self._readers.pop(stream.stream_id, None)

    # -- frames out ----------------------------------------------------------------------

    def create_local_stream(self, headers: Headers) -> MuxStream:
        block = b""
        if not self.raw:
            if not headers:
                block = _EMPTY_OPEN
            else:
                try:
                    block = encode_header_block(
                        HeaderBlock(kind=BlockKind.OPEN, headers=tuple(headers.items())),
                        self.settings.max_header_block,
                    )
                except ValueError as exc:
                    raise ValueError(f"cannot send these headers: {exc}") from None
        try:
            stream_id = self._decoder.allocate_stream_id()
        except FramerProtocolError as exc:
            raise ConnectionLost(str(exc)) from None
        stream = self._new_stream(stream_id, headers, local=True)
        if block:
            stream.adjust_send_window(-len(block))
            self._readers[stream_id] = HeaderBlockReader(_ANSWERS, self.settings.max_header_block)
        stream.open_block = block
        return stream

    async def write_open(self, stream: MuxStream) -> None:
        assert type(stream) is FramerStream
        block, stream.open_block = stream.open_block, b""
        stream_id = stream.stream_id
        if block:
            self._out.write(encode_data_header(stream_id, len(block), SYN), block)
            extra = self.settings.receive_window - INITIAL_WINDOW
            if extra:
                self._out.write(encode_window_update(stream_id, extra))
        else:
            extra = self.settings.receive_window - INITIAL_WINDOW
            self._out.write(encode_window_update(stream_id, extra, SYN))
        self.last_activity = time.monotonic()
        # no yield unless the output is full: the open's frames then leave in one write
        # with the data and end of stream the caller queues next
        if self._out.must_wait:
            await self._out.drain()

    def write_accept(self, stream: MuxStream, response_headers: Headers) -> None:
        if self.raw:
            self._out.write(encode_window_update(stream.stream_id, 0, ACK))
            self._answered(HEADER_SIZE)
            return
        try:
            block = (
                encode_header_block(
                    HeaderBlock(kind=BlockKind.ACCEPT, headers=tuple(response_headers.items())),
                    self.settings.max_header_block,
                )
                if response_headers
                else _EMPTY_ACCEPT
            )
        except ValueError as exc:
            logger.warning("stream %s: cannot send its response headers: %s", stream.stream_id, exc)
            block = encode_header_block(HeaderBlock(kind=BlockKind.ACCEPT))
            self._out.write(encode_data_header(stream.stream_id, len(block), ACK), block)
            stream.on_reset(ErrorCode.INTERNAL_ERROR)
            self.write_reset(stream, ErrorCode.INTERNAL_ERROR)
            return
        stream.adjust_send_window(-len(block))
        assert type(stream) is FramerStream
        # an opener whose data came with its open did not wait for this answer: it may
        # leave with the handler's first reply
        self._out.write_deferrable(
            stream.opener_went_ahead, encode_data_header(stream.stream_id, len(block), ACK), block
        )
        self._answered(HEADER_SIZE + len(block))

    def write_reject(self, stream: MuxStream, rejection: StreamRejected) -> None:
        stream_id = stream.stream_id
        self._readers.pop(stream_id, None)
        if self.raw:
            self._out.write(encode_window_update(stream_id, 0, RST))
            self._answered(HEADER_SIZE)
            return
        refusal = HeaderBlock(
            kind=BlockKind.REJECT,
            headers=tuple(rejection.response_headers.items()),
            code=int(rejection.code),
            reason=rejection.reason,
            retryable=rejection.retryable,
        )
        try:
            block = encode_header_block(refusal, self.settings.max_header_block)
        except ValueError as exc:
            logger.warning("stream %s: cannot send its refusal's headers: %s", stream_id, exc)
            block = encode_header_block(HeaderBlock(kind=BlockKind.REJECT, code=refusal.code))
        self._out.write(encode_data_header(stream_id, len(block), ACK | RST), block)
        self._answered(HEADER_SIZE + len(block))

    async def write_data(self, stream: MuxStream, data: memoryview) -> None:
        out = self._out
        # bytes are immutable, so a view of them can wait in the queue without a copy
        payload = data if isinstance(data.obj, bytes) else bytes(data)
        if out.must_wait:
            # wait for a turn before queueing, not after: if every stream queued its frame
            # first, a peer that opens thousands of streams and reads none of their output
            # would grow the queue by a frame per stream, past any bound
            try:
                await out.drain()
            except BaseException:
                # the frame never left: the credit it took returns to the stream
                stream.adjust_send_window(len(data))
                raise
            if self._failure is not None:
                raise self._failure
            assert isinstance(stream, FramerStream)
            stream.progressed()
            out.write(encode_data_header(stream.stream_id, len(data)), payload)
            return
        # no yield: MuxStream.send checked for cancellation before taking the credit, and
        # the frames queued until the task waits leave in one write
        out.write(encode_data_header(stream.stream_id, len(data)), payload)

    def write_eof(self, stream: MuxStream) -> None:
        self._out.write(encode_window_update(stream.stream_id, 0, FIN))

    def write_reset(self, stream: MuxStream, code: int) -> None:
        self._readers.pop(stream.stream_id, None)
        self._out.write(encode_window_update(stream.stream_id, 0 if self.raw else int(code), RST))

    def write_window_update(self, stream: MuxStream, increment: int) -> None:
        self._out.write(encode_window_update(stream.stream_id, increment))

    def write_goaway(self) -> None:
        self._out.write(encode_go_away(GoAwayCode.NORMAL))

    def flush(self) -> None:
        self._out.flush()

    def flush_follows(self) -> None:
        self._out.flush_follows = True

    def stream_finished(self, stream: MuxStream) -> None:
        self.last_activity = time.monotonic()
        if self._readers:
            self._readers.pop(stream.stream_id, None)
        if stream.stream_id in self._announced:
            self._announced.pop(stream.stream_id, None)
            return
        super().stream_finished(stream)

    def stream_extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._transport.extra_attributes
