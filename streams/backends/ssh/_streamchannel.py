"""The channel type of a stream between two ``streams`` peers (:data:`STREAM_CHANNEL`).

RFC 4254 (5.1) lets a channel type carry data of its own in the open request and in the
open confirmation. This type puts the opener's header frame in the request and the
acceptor's reply frame (accepted or refused, response headers) in the confirmation, so a
stream opens in one round trip, as a bare channel does; the headers never appear in a
channel path that asyncssh would log. A refusal is a confirmed channel whose reply says
so, closed at once: SSH's open failure carries no headers.

asyncssh has no public hook for a channel type of its own: the opening side sends the
request and takes the answer in :class:`StreamChannel`'s overrides of asyncssh's
``process_open_confirmation``/``process_open_failure``, and the accepting side is
reached through the handler that asyncssh's dispatcher looks up by the type's name on the
connection object (:func:`install`, set on that one object). Both sides answer in the
packet's own dispatch: no task and no future per open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import asyncssh
from asyncssh.channel import SSHForwardChannel
from asyncssh.constants import DEFAULT_LANG, MSG_CHANNEL_EOF, MSG_CHANNEL_OPEN
from asyncssh.logging import SSHLogger
from asyncssh.misc import map_handler_name
from asyncssh.packet import String, UInt32

from ._channel import ChannelKind, ChannelSession, queued_behind, translate_error
from ._codec import STREAM_CHANNEL, CodecError, HeaderLimitError, decode_open
from ._limits import Handler, guarded_channel_handlers

if TYPE_CHECKING:
    import asyncio

    from ._provider import SSHProvider

__all__ = ["StreamChannel", "accept_open", "install", "send_open"]

_TYPE = STREAM_CHANNEL.encode("ascii")
#: the attribute asyncssh's ``_process_channel_open`` looks up for an incoming open
_HANDLER = "_process_" + map_handler_name(STREAM_CHANNEL) + "_open"

AnyConnection = asyncssh.SSHClientConnection | asyncssh.SSHServerConnection


def _session_of(channel: Any) -> ChannelSession:
    session: ChannelSession = channel.stream_session
    return session


def _packet_table() -> dict[int, Handler]:
    # the guard's counting of data, requests and window adjusts, and the EOF watch (see
    # _channel.watch_eof), for the whole class: nothing made per channel
    handlers = guarded_channel_handlers(dict(SSHForwardChannel._packet_handlers), _session_of)
    original_eof = handlers[MSG_CHANNEL_EOF]

    def on_eof(channel: Any, pkttype: int, pktid: int, packet: Any) -> Any:
        channel.stream_session.eof_seen = True
        return original_eof(channel, pkttype, pktid, packet)

    handlers[MSG_CHANNEL_EOF] = on_eof
    return handlers


class StreamChannel(SSHForwardChannel[bytes]):
    """One stream's channel, on either side.

    Its packet table counts for the connection's guard and notes the peer's EOF packet
    (what ``ConnectionGuard.watch_channel`` and ``watch_eof`` install on other channel
    objects one by one), and its delivery leaves queued data out of the window it grants
    (as ``_count_queued_data_in_window`` does for the others).

    :param conn: the connection
    :param loop: the asyncio loop asyncssh runs on
    :param session: the stream's session object
    :param window: the receive window
    :param max_packet: the largest data packet this side takes
    """

    def __init__(
        self,
        conn: AnyConnection,
        loop: asyncio.AbstractEventLoop,
        session: ChannelSession,
        *,
        window: int,
        max_packet: int,
    ) -> None:
        super().__init__(conn, loop, None, "strict", window, max_packet)
        conn._update_recv_pktlen(max_packet)
        self.stream_session = session
        #: opener: waiting for the peer's answer; acceptor: the request awaits ours
        self.opening = False

    _packet_handlers = _packet_table()

    def _deliver_data(self, data: bytes, datatype: Any) -> None:
        # asyncssh tops the peer's window up to the full size as it delivers a queued
        # packet; what is still queued behind it counts as in flight meanwhile
        queued = queued_behind(self.stream_session, self._recv_buf, data)
        if queued <= 0:
            super()._deliver_data(data, datatype)
            return
        self._recv_window += queued
        try:
            super()._deliver_data(data, datatype)
        finally:
            self._recv_window -= queued

    # -- the opening side ------------------------------------------------------------------

    def send_open(self, frame: bytes) -> None:
        """Ask the peer to open the channel, *frame* (the headers) riding in the request."""
        self.opening = True
        assert self._conn is not None
        assert self._recv_chan is not None
        self._conn.send_packet(
            MSG_CHANNEL_OPEN,
            String(_TYPE),
            UInt32(self._recv_chan),
            UInt32(self._recv_window),
            UInt32(self._recv_pktsize),
            frame,
            handler=self,
        )

    def process_open_confirmation(
        self, send_chan: int, send_window: int, send_pktsize: int, packet: Any
    ) -> None:
        if not self.opening or self._send_state != "closed":
            raise asyncssh.ProtocolError("Channel not being opened")
        self.opening = False
        self._send_chan = send_chan
        self._send_window = send_window
        self._send_pktsize = send_pktsize
        self._send_state = "open"
        self._recv_state = "open"
        self._start(packet.get_remaining_payload())

    def process_open_failure(self, code: int, reason: str, lang: str) -> None:
        if not self.opening:
            raise asyncssh.ProtocolError("Channel not being opened")
        self.opening = False
        self._loop.call_soon(self._cleanup)
        self.stream_session.open_failed(code, reason)

    # -- the accepting side ----------------------------------------------------------------

    def process_open(
        self, send_chan: int, send_window: int, send_pktsize: int, session: Any
    ) -> None:
        self._send_chan = send_chan
        self._send_window = send_window
        self._send_pktsize = send_pktsize
        self.opening = True
        session = self.stream_session
        if session.answer is not None:
            self.confirm(session.answer)
        elif session.abandoned:
            self.refuse(asyncssh.OPEN_CONNECT_FAILED, "the stream was closed")
        # else the handler decides later, and the session calls confirm() or refuse()

    def confirm(self, reply: bytes) -> None:
        """Open the channel, *reply* (the decision) riding in the confirmation."""
        if not self.opening or self._conn is None:
            return
        self.opening = False
        assert self._send_chan is not None
        assert self._recv_chan is not None
        self._conn.send_channel_open_confirmation(
            self._send_chan, self._recv_chan, self._recv_window, self._recv_pktsize, reply
        )
        self._send_state = "open"
        self._recv_state = "open"
        self._start(b"")

    def refuse(self, code: int, reason: str) -> None:
        """Answer the open request with an open failure."""
        if not self.opening:
            return
        self.opening = False
        if self._conn is not None and self._send_chan is not None:
            self._conn.send_channel_open_failure(self._send_chan, code, reason, DEFAULT_LANG)
        self._loop.call_soon(self._cleanup)

    # -- both ------------------------------------------------------------------------------

    # asyncssh describes each packet for its debug log before looking at the level
    # (``_packetlog``): here the level is looked at first

    def log_sent_packet(self, pkttype: int, pktid: int | None, packet: Any, note: str = "") -> None:
        if SSHLogger._debug_level >= 3:
            super().log_sent_packet(pkttype, pktid, packet, note)

    def log_received_packet(
        self, pkttype: int, pktid: int | None, packet: Any, note: str = ""
    ) -> None:
        if SSHLogger._debug_level >= 3:
            super().log_received_packet(pkttype, pktid, packet, note)

    def _cleanup(self, exc: Exception | None = None) -> None:
        super()._cleanup(exc)
        # asyncssh drops its link to the session here; dropping ours too leaves no cycle
        # (channel, session, stream), so all three are freed as the stream ends, not by the
        # cycle collector: per exchange that collector otherwise ran about 30 us (asyncio).
        # No packet reaches a cleaned-up channel; it may be cleaned up twice (a refusal
        # schedules it, the connection's end runs it again).
        vars(self).pop("stream_session", None)

    def _start(self, reply: bytes) -> None:
        # what asyncssh does once a forwarded channel is open, without its task per open
        session = self.stream_session
        self._session = session
        if reply:
            # the decision first: a refused stream's early data is never sent
            session.reply_arrived(reply)
        session.connection_made(self)
        if self._recv_paused == "starting":
            self._recv_paused = False
            self._flush_recv_buf()


def install(conn: AnyConnection, requested: Callable[[bytes], StreamChannel]) -> None:
    """Take :data:`STREAM_CHANNEL` open requests on *conn*: *requested* gets the request's
    data and returns the channel (with its session), or raises
    :class:`asyncssh.ChannelOpenError` to refuse it."""

    def open_requested(packet: Any) -> tuple[StreamChannel, ChannelSession]:
        chan = requested(packet.get_remaining_payload())
        return chan, chan.stream_session

    setattr(conn, _HANDLER, open_requested)


def send_open(provider: SSHProvider, session: ChannelSession) -> None:
    """Open the channel of *session*'s stream (the opener's frame in the request)."""
    stream = session.stream
    conn = provider.conn
    loop = provider.loop
    assert stream is not None
    assert conn is not None
    assert loop is not None
    settings = provider.ssh_settings
    try:
        chan = StreamChannel(
            conn, loop, session, window=settings.window, max_packet=settings.max_packet
        )
        chan.send_open(session.open_frame)
    except (OSError, asyncssh.Error) as exc:
        stream.on_connection_lost(translate_error(exc, "opening an ssh channel failed"))


def accept_open(provider: SSHProvider, data: bytes) -> StreamChannel:
    """The peer asks to open a stream channel; *data* is its open frame. The stream goes
    to the handler now; the channel is confirmed as soon as it decided.

    :raises asyncssh.ChannelOpenError: to refuse the channel before any stream exists
        (closing, ``max_incoming_streams``, or a broken frame, which also fails the
        connection)
    """
    with provider.bridge.pin:
        if provider.is_closing:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_RESOURCE_SHORTAGE, "the peer is closing")
        over_limit = None
        try:
            frame = decode_open(
                data,
                max_body=provider.ssh_settings.max_header_block,
                max_headers=provider.settings.max_headers,
            )
        except HeaderLimitError as exc:
            over_limit = exc
        except CodecError as exc:
            provider.protocol_violation(f"a stream's open request: {exc}")
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
        guard = provider.guard
        if guard is not None:
            guard.admit_channel()
        conn, loop = provider.conn, provider.loop
        assert conn is not None
        assert loop is not None
        session = ChannelSession(provider, ChannelKind.STREAMS, opener=False)
        session.admitted = guard is not None
        settings = provider.ssh_settings
        chan = session.pending_chan = StreamChannel(
            conn, loop, session, window=settings.window, max_packet=settings.max_packet
        )
        if over_limit is not None:
            # a well-formed frame over a limit refuses this stream only
            session.refuse_open_headers(over_limit)
        else:
            provider.incoming_channel(session, frame.headers)
        return chan
