"""One SSH channel under one :class:`~streams._core.stream.MuxStream`.

:class:`ChannelSession` is the asyncssh session object of a stream's channel: asyncssh
calls it when the channel opens, when data, end of file or close arrive and when its send
buffer fills or drains; the provider calls it to write. It keeps SSH's own flow control in
charge: incoming data is delivered to the stream only while the stream's receive buffer has
room (``pause_reading`` otherwise, so asyncssh stops granting window), and a sender waits
while asyncssh's send buffer is above its high-water mark.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import asyncssh
from asyncssh.channel import SSHChannel
from asyncssh.constants import MSG_CHANNEL_EOF

from ..._core.errors import ConnectionLost, ErrorCode, ProtocolError, StreamReset
from ..._core.flow import FlowControlViolation
from ..._core.stream import MuxStream
from ._codec import (
    CodecError,
    FrameReader,
    HeaderLimitError,
    OpenFrame,
    ReplyFrame,
    decode_reply,
    encode_reply,
)

if TYPE_CHECKING:
    import asyncio

    from ._provider import SSHProvider
    from ._streamchannel import StreamChannel

__all__ = [
    "ChannelKind",
    "ChannelSession",
    "queued_behind",
    "translate_error",
    "watch_eof",
]

#: how often a sender blocked on a full send buffer looks whether the channel was closed
#: under it, while this side's reading is paused (asyncssh then reports a peer's close
#: only once the received data was delivered)
_WRITE_POLL = 0.25
#: a write at least this large yields to the loop after it: a stream sending in bulk
#: would otherwise refill the connection's buffer each time it drained, before the other
#: writers woken with it ran (100 streams: the slowest got a tenth of the fastest's bytes)
_BULK_WRITE = 16 * 1024


class ChannelKind(enum.Enum):
    """What a channel carries."""

    #: a stream between two ``streams`` peers: a channel of our own type, the headers in
    #: its open request and the reply in its confirmation (``_streamchannel``)
    STREAMS = "streams"
    #: the same in a ``direct-streamlocal`` (or ``forwarded-streamlocal``) channel to
    #: :data:`~._codec.STREAM_PATH`, a frame of headers first each way: still accepted
    #: from peers that open streams so
    INBAND = "streams-v1"
    #: a plain ``direct-tcpip`` channel: bytes only, no headers on the wire
    TCP = "direct-tcpip"


def translate_error(
    error: BaseException | None, what: str = "ssh connection lost"
) -> ConnectionLost:
    """The :class:`~streams.ConnectionLost` (or :class:`~streams.ProtocolError`) for an
    asyncssh or socket error, chained to it."""
    if isinstance(error, asyncssh.ProtocolError):
        lost: ConnectionLost = ProtocolError(f"{what}: protocol error: {error.reason}")
    elif isinstance(error, asyncssh.DisconnectError):
        lost = ConnectionLost(f"{what}: {error.reason}")
    elif error is not None:
        lost = ConnectionLost(f"{what}: {error}")
    else:
        lost = ConnectionLost(what)
    lost.__cause__ = error
    return lost


def watch_eof(chan: SSHChannel[bytes], session: ChannelSession) -> None:
    """Tell *session* when the peer's EOF packet arrives, before asyncssh delivers it.

    asyncssh delivers an EOF only after the data queued while reading was paused; if the
    peer's CLOSE arrives in between (the normal EOF-then-CLOSE of a peer that finished), the
    EOF is never delivered and the close would look like a reset. The channel's packet
    table is replaced on this one channel object (asyncssh dispatches packets through
    ``_packet_handlers``); nothing else in asyncssh changes.
    """
    handlers = dict(type(chan)._packet_handlers)
    original = handlers[MSG_CHANNEL_EOF]

    def on_eof(channel: Any, pkttype: int, pktid: int, packet: Any) -> Any:
        session.eof_seen = True
        return original(channel, pkttype, pktid, packet)

    handlers[MSG_CHANNEL_EOF] = on_eof
    chan._packet_handlers = handlers


class ChannelSession(asyncssh.SSHTCPSession[bytes], asyncssh.SSHUNIXSession[bytes]):
    """asyncssh's session object for one stream's channel.

    It keeps at most 30 attributes: CPython shares one key table among the instance
    dictionaries of a class only up to that many, and an idle stream's object grew by
    1.3 KiB with the 31st.

    :param provider: the provider the stream belongs to
    :param kind: what the channel carries
    :param opener: ``True`` on the side that opened the channel
    :param stream: the stream, when it exists already (the opener's side); the acceptor's
        stream is created once the opener's headers arrived
    """

    def __init__(
        self,
        provider: SSHProvider,
        kind: ChannelKind,
        *,
        opener: bool,
        stream: MuxStream | None = None,
    ) -> None:
        self.provider = provider
        self.kind = kind
        self.opener = opener
        self.stream = stream
        self.chan: SSHChannel[bytes] | None = None
        #: the acceptor of a ``direct-tcpip`` channel answers the open with this future
        self.decision: asyncio.Future[Any] | None = None
        self._reader: FrameReader | None = None
        if kind is ChannelKind.INBAND:
            self._reader = FrameReader(
                reply=opener,
                max_body=provider.ssh_settings.max_header_block,
                max_headers=provider.settings.max_headers,
            )
        #: bytes of data that arrived on the channel (counted as asyncssh receives them)
        self.arrived = 0
        #: bytes of data asyncssh delivered to this session (the rest it holds)
        self.delivered = 0
        #: ``True`` while this channel counts against the peer's ``max_incoming_streams``
        self.admitted = False
        self._closing_here = False
        self._discarding = False
        self.guard = provider.guard
        if self.guard is not None:
            self.guard.sessions.add(self)
        self._reading_paused = False
        self._writing_paused = False
        self._writer: anyio.Event | None = None
        self._eof_pending = False
        self._reset_pending: bool | None = None
        self._close_when_drained = False
        #: the opener's frame (its headers), sent in the open request
        self.open_frame = b""
        #: acceptor of a :attr:`ChannelKind.STREAMS` channel: the channel whose open
        #: request waits for the decision, and the decision (a reply frame) once made
        self.pending_chan: StreamChannel | None = None
        self.answer: bytes | None = None
        #: that request is to be refused (the stream ended undecided)
        self.abandoned = False
        #: opener: data written before the channel opened (a zero-round-trip open), at
        #: most ``write_buffer`` bytes, and whether the reply refused the stream
        self._early: list[bytes] = []
        self._early_size = 0
        self.refused = False
        #: the peer's EOF packet arrived (it may still wait behind paused data)
        self.eof_seen = False
        self.lost = False
        self.error: BaseException | None = None

    # -- asyncssh's callbacks ------------------------------------------------------------

    def connection_made(self, chan: SSHChannel[bytes]) -> None:
        if self.kind is not ChannelKind.STREAMS:
            # a stream channel's class does all this in its own packet table
            if self.chan is None and not self.opener:
                # an accepted channel: no packet can have arrived before this call
                watch_eof(chan, self)
            _count_queued_data_in_window(chan, self)
            if self.guard is not None:
                self.guard.watch_channel(chan, self)
        self.chan = chan
        chan.set_write_buffer_limits(high=self.provider.ssh_settings.write_buffer)
        with self.provider.bridge.pin:
            early, self._early = self._early, []
            graceful = self._reset_pending
            if graceful is None or (graceful and not self.refused):
                # what a zero-round-trip open sent before the channel opened
                for chunk in early:
                    chan.write(chunk)
                if self._eof_pending:
                    chan.write_eof()
            if graceful is not None:
                self._close_channel(graceful=graceful)
                return
            self._wake_writer()

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self.delivered += len(data)
        if self._discarding:
            return
        with self.provider.bridge.pin:
            if self._reader is not None:
                try:
                    frame, data = self._reader.feed(data)
                except HeaderLimitError as exc:
                    self._refuse_headers(exc)
                    return
                except CodecError as exc:
                    self._protocol_error(str(exc))
                    return
                if frame is None:
                    return
                self._reader = None
                if not self._on_frame(frame):
                    return
            if data:
                self._deliver(data)

    def eof_received(self) -> bool:
        with self.provider.bridge.pin:
            if self._reader is not None:
                self._protocol_error("the channel ended before its first frame")
            elif self.stream is not None:
                self.stream.on_eof()
        # keep our direction open: the stream decides when it half-closes
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._forget()
        if exc is None and not self._closing_here and self.guard is not None:
            stream = self.stream
            if self._reader is not None or (
                stream is not None and not stream.finished and not self.eof_seen
            ):
                # closed by the peer before the stream began or finished: a reset
                self.guard.reset_seen()
        with self.provider.bridge.pin:
            self._wake_writer()
            stream = self.stream
            if stream is None or stream.finished:
                self._fail_decision()
                return
            if exc is not None:
                self.error = translate_error(exc)
                stream.on_connection_lost(self.error)
                return
            if self.eof_seen and self._reader is None:
                stream.on_eof()
        # a channel close; if the whole connection is going down, the provider fails the
        # stream with the connection's error first, in the same turn of the loop
        chan_loop = self.provider.loop
        if chan_loop is not None:
            chan_loop.call_soon(self._peer_closed)
        else:
            self._peer_closed()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._close_when_drained and self.provider.loop is not None:
            # asyncssh sends a pending EOF only after this callback returns
            self.provider.loop.call_soon(self._close_if_drained)
        with self.provider.bridge.pin:
            self._wake_writer()

    def session_started(self) -> None:
        """Nothing to start: the stream is already there."""

    def reply_arrived(self, data: bytes) -> None:
        """Opener: the acceptor's reply frame came in the open confirmation."""
        with self.provider.bridge.pin:
            try:
                frame = decode_reply(data)
            except CodecError as exc:
                self._protocol_error(f"the open confirmation: {exc}")
                return
            self.refused = not frame.accepted
            if self.stream is not None:
                self.provider.on_reply(self.stream, frame)

    def open_failed(self, code: int, reason: str) -> None:
        """Opener: the peer refused to open the channel."""
        with self.provider.bridge.pin:
            self.provider.open_failed(self, code, reason)

    def answer_with(self, reply: bytes) -> None:
        """Acceptor of a :attr:`ChannelKind.STREAMS` channel: the decision, sent in the
        open confirmation (now, or as soon as asyncssh hands the request over)."""
        if self.answer is not None:
            return
        self.answer = reply
        chan = self.pending_chan
        if chan is not None:
            chan.confirm(reply)

    def refuse_open_headers(self, error: HeaderLimitError) -> None:
        """Acceptor of a :attr:`ChannelKind.STREAMS` channel: refuse the stream whose
        headers are over a limit (the connection goes on)."""
        self._discarding = True
        if self.guard is not None:
            self.guard.refused(error.limit, str(error))
        self.answer_with(
            encode_reply(
                accepted=False,
                reason=f"limit {error.limit} exceeded: {error}",
                code=ErrorCode.REFUSED_STREAM,
            )
        )
        self.finish()

    # -- what the provider asks ------------------------------------------------------------

    async def write(self, stream: MuxStream, data: memoryview) -> None:
        """Put *data* in the channel, waiting while its send buffer is full (or the
        connection's, for a peer that does not read)."""
        if self.guard is not None and self.guard.output_paused:
            await self.guard.wait_writable()
        if (
            self.chan is None
            and self.opener
            and not self.lost
            and self._early_size + len(data) <= self.provider.ssh_settings.write_buffer
            and not (stream.is_closed or stream.finished)
        ):
            # not open yet: queued, and sent as the channel opens
            self._early.append(bytes(data))
            self._early_size += len(data)
            return
        while self.chan is None or self._writing_paused:
            if self.lost:
                break
            if stream.is_closed or stream.finished:
                # closed or reset here while waiting: the stream knows what to raise
                stream._check_sendable()
                return
            if self.chan is not None and self.chan.is_closing() and not stream.eof_sent:
                # the peer closed the channel: this direction is reset now, while what it
                # sent before may still wait behind paused reading, to be read first
                raise StreamReset(ErrorCode.CANCEL, remote=True)
            waiter = self._writer = anyio.Event()
            self.provider.flush()
            if not self._reading_paused:
                # a close of the peer reaches connection_lost, which wakes this waiter
                await waiter.wait()
                continue
            with anyio.move_on_after(_WRITE_POLL):
                await waiter.wait()
        if self.lost or self.chan is None:
            raise self.error or self.provider.failure or StreamReset(ErrorCode.CANCEL, remote=True)
        try:
            self.chan.write(bytes(data))
        except OSError as exc:
            # a channel closed under the write: by the whole connection failing (its error
            # is the one to see), or by the peer alone (a reset)
            raise self._closed_under_write() from exc
        if len(data) >= _BULK_WRITE:
            # bulk: let the connection's other writers take their turn
            await self.provider.loop_ops.checkpoint()
        # a small write that did not wait takes no turn of the loop (docs/contract.md,
        # Checkpoints): the stream's send was the cancel point, and what the task writes
        # next (an end of stream) leaves in the same packet batch

    def write_eof(self) -> None:
        """Half-close the channel (now, or once it is open)."""
        if self.chan is None:
            self._eof_pending = True
            return
        if not self.chan.is_closing():
            self.chan.write_eof()

    def write_raw(self, data: bytes) -> None:
        """Write bytes regardless of flow control (frames of our own; they are small)."""
        if self.chan is not None and not self.chan.is_closing():
            self.chan.write(data)

    def reset(self, *, graceful: bool) -> None:
        """Close the channel at once (``graceful``: after what is queued, EOF included)."""
        self._wake_writer()
        if self.chan is None:
            self._reset_pending = graceful
            self._fail_decision()
            return
        self._close_channel(graceful=graceful)

    def finish(self) -> None:
        """The stream is done: close the channel after what is queued."""
        self._fail_decision()
        if self.answer is None and self.pending_chan is not None:
            # ended before its handler decided: the open request is refused
            self.abandoned = True
            self.pending_chan.refuse(asyncssh.OPEN_CONNECT_FAILED, "the stream was closed")
        self._wake_writer()
        if self.chan is None:
            # the channel may never open (refused, or the connection went): nothing of it
            # is held any more
            self._forget()
            if self._reset_pending is None:
                self._reset_pending = True
            return
        self._close_channel(graceful=True)

    def consumed(self, stream: MuxStream) -> None:
        """The application read data: deliver more if the stream has room again."""
        if self._reading_paused and self._has_room(stream) and self.chan is not None:
            self._reading_paused = False
            self.chan.resume_reading()

    # -- helpers -------------------------------------------------------------------------

    def _close_channel(self, *, graceful: bool) -> None:
        chan = self.chan
        assert chan is not None
        self._closing_here = True
        if not graceful:
            chan.abort()
        elif chan.get_write_buffer_size() == 0 or self.lost:
            chan.close()
        else:
            # asyncssh's close() sends CLOSE without the EOF still queued behind data: the
            # peer would see a reset. Close once the buffer (and so the EOF) went out.
            self._close_when_drained = True
            chan.set_write_buffer_limits(high=0, low=0)

    def _close_if_drained(self) -> None:
        chan = self.chan
        if chan is None or self.lost:
            return
        if chan.get_write_buffer_size() == 0:
            chan.close()

    def _closed_under_write(self) -> BaseException:
        if self.error is not None:
            return self.error
        if self.provider.failure is not None:
            return self.provider.failure
        conn = self.provider.conn
        if conn is not None and conn._transport is None:
            # asyncssh closes the channels before it reports the connection's end
            return ConnectionLost("the ssh connection closed")
        return StreamReset(ErrorCode.CANCEL, remote=True)

    def inbound_held(self) -> int:
        """Bytes of the peer's data held for this channel and not read by the application:
        in asyncssh (reading paused), in an unfinished header frame, in the stream."""
        held = self.arrived - self.delivered
        if self._reader is not None:
            held += self._reader.buffered
        stream = self.stream
        if stream is not None:
            held += stream.buffered
        return held

    def release(self) -> None:
        """Stop counting this channel against the peer's ``max_incoming_streams``."""
        if self.admitted and self.guard is not None:
            self.admitted = False
            self.guard.release_channel()

    def _forget(self) -> None:
        self.release()
        if self.guard is not None:
            self.guard.sessions.discard(self)

    def _refuse_headers(self, error: HeaderLimitError) -> None:
        # a header frame over a limit refuses this stream only; the rest of what the peer
        # sends on the channel is dropped unread
        self._reader = None
        self._discarding = True
        if self.guard is not None:
            self.guard.refused(error.limit, str(error))
        if self.chan is None:
            return
        self.write_raw(
            encode_reply(
                accepted=False,
                reason=f"limit {error.limit} exceeded: {error}",
                code=ErrorCode.REFUSED_STREAM,
            )
        )
        self._close_channel(graceful=True)

    def _has_room(self, stream: MuxStream) -> bool:
        return stream.receive_window.available >= self.provider.ssh_settings.max_packet

    def _deliver(self, data: bytes) -> None:
        stream = self.stream
        if stream is None:
            return
        try:
            stream.on_data(data)
        except FlowControlViolation as exc:
            # the peer ignored the window asyncssh advertised: a broken peer
            self._protocol_error(f"flow control: {exc}")
            return
        if not self._has_room(stream) and not self._reading_paused and self.chan is not None:
            self._reading_paused = True
            self.chan.pause_reading()
            # a sender waiting now must also watch for a close asyncssh will not report
            self._wake_writer()

    def _on_frame(self, frame: OpenFrame | ReplyFrame) -> bool:
        if isinstance(frame, OpenFrame):
            if self.opener:
                self._protocol_error("an open frame arrived at the opener")
                return False
            self.stream = self.provider.incoming_channel(self, frame.headers)
            return self.stream is not None
        if not self.opener or self.stream is None:
            self._protocol_error("a reply frame arrived at the acceptor")
            return False
        self.provider.on_reply(self.stream, frame)
        return frame.accepted

    def _protocol_error(self, message: str) -> None:
        # a peer that breaks the framing of our channels is broken as a whole
        self.provider.protocol_violation(message)

    def _peer_closed(self) -> None:
        with self.provider.bridge.pin:
            stream = self.stream
            if stream is not None and not stream.finished:
                stream.on_reset(ErrorCode.CANCEL)

    def _fail_decision(self) -> None:
        decision, self.decision = self.decision, None
        if decision is not None and not decision.done():
            decision.set_exception(
                asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "the stream was closed")
            )

    def _wake_writer(self) -> None:
        waiter, self._writer = self._writer, None
        if waiter is not None:
            waiter.set()


def _count_queued_data_in_window(chan: SSHChannel[bytes], session: ChannelSession) -> None:
    """Make asyncssh's window grants leave out the data it still queues for the session.

    While reading is paused asyncssh queues incoming data, and when it delivers a queued
    packet it tops the peer's window back up to the full size regardless of what is still
    queued behind it: every pause and resume granted the peer another half window, so a
    reader slower than its sender let the queue grow without bound (32 MB behind a 2 MiB
    window in a 64 MiB transfer). Counting the queued bytes as if still in flight while
    asyncssh decides makes it grant only the room that is really free.
    """
    deliver = chan._deliver_data
    queue: list[tuple[bytes, Any]] = chan._recv_buf

    def deliver_within_the_window(data: bytes, datatype: Any) -> None:
        queued = queued_behind(session, queue, data)
        if queued <= 0:
            deliver(data, datatype)
            return
        chan._recv_window += queued
        try:
            deliver(data, datatype)
        finally:
            chan._recv_window -= queued

    chan._deliver_data = deliver_within_the_window  # type: ignore[method-assign]


def queued_behind(session: ChannelSession, queue: list[tuple[bytes, Any]], data: bytes) -> int:
    """Bytes asyncssh still queues for *session* behind *data*, the packet it delivers."""
    if not queue:
        return 0
    if session.guard is not None:
        # the guard counted every packet's data as it arrived, the session what it was
        # given: the rest is queued behind this packet (no walk of the queue, which holds
        # up to a window of packets, for each one)
        return session.arrived - session.delivered - len(data)
    return sum(len(item) for item, _ in queue)
