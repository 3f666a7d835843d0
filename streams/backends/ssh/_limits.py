"""Limits against an abusive SSH peer, enforced where asyncssh dispatches its packets.

SSH gives a peer many cheap ways to make the other side work or queue: channel opens,
global requests (``keepalive@openssh.com``), channel requests (``env``, ``exec``), debug
messages, empty data packets, authentication attempts, channels closed as soon as
they open (the rapid-reset attack of HTTP/2, CVE-2023-44487), data on many channels that
the application does not read (SSH has no connection-level window), and, for a peer that
stops reading, answers queued without bound: asyncssh ignores the transport's
``pause_writing``. asyncssh itself limits none of these, so :class:`ConnectionGuard` counts
them as their packets arrive. It replaces a few entries of the packet tables of one
connection object and its channel objects (asyncssh dispatches through
``_packet_handlers``); nothing else in asyncssh changes, and an entry it replaces always
calls the original.

A peer over a connection-level limit is disconnected (``SSH_MSG_DISCONNECT`` with
``DISC_PROTOCOL_ERROR``, or ``DISC_NO_MORE_AUTH_METHODS_AVAILABLE`` for too many
authentication attempts, and a reason that names the limit: see :func:`disconnect_code`);
the log line comes from :func:`~streams._core.limits.log_limit_exceeded`. Limits on one
stream (concurrent channels, header frames) refuse that channel only. See ``docs/ssh.md``, "Limits".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import asyncssh
from asyncssh.constants import (
    DEFAULT_LANG,
    MSG_CHANNEL_DATA,
    MSG_CHANNEL_EXTENDED_DATA,
    MSG_CHANNEL_OPEN,
    MSG_CHANNEL_REQUEST,
    MSG_CHANNEL_WINDOW_ADJUST,
    MSG_DEBUG,
    MSG_GLOBAL_REQUEST,
    MSG_KEXINIT,
    MSG_UNIMPLEMENTED,
    MSG_USERAUTH_REQUEST,
)
from asyncssh.packet import UInt32

from ..._core.errors import ErrorCode, LimitExceeded
from ..._core.limits import FloodGuard, log_limit_exceeded
from ..._core.mux import MuxSettings
from ._config import SSHSettings

if TYPE_CHECKING:
    from asyncssh.channel import SSHChannel

    from ._bridge import Bridge
    from ._channel import ChannelSession

__all__ = ["DISCONNECT_GRACE", "ConnectionGuard", "disconnect_code", "guarded_channel_handlers"]

logger = logging.getLogger("streams.ssh")

#: seconds a disconnected peer has to read what was queued for it, the disconnect
#: message last; then the socket is cut. A peer that does not read gets no more
DISCONNECT_GRACE = 2.0
#: the smallest connection buffer overshoot worth a recount of every channel: the
#: running total only grows between recounts, so this bounds how far past
#: ``max_connection_buffer`` a peer gets before it is caught, and how often we count
_RECOUNT_FRACTION = 16

#: the largest window SSH can express (RFC 4254, section 5.2)
MAX_SSH_WINDOW = 0xFFFFFFFF

Handler = Callable[[Any, int, int, Any], Any]

#: SSH message numbers are one byte
_MESSAGE_TYPES = range(256)


def disconnect_code(error: LimitExceeded) -> int:
    """The SSH disconnect reason for a connection closed over *error*.

    SSH has no "enhance your calm". ``DISC_BY_APPLICATION`` would be the literal choice,
    but asyncssh (and so our own client) reports a disconnect with that code as a clean
    close and drops its reason; ``DISC_PROTOCOL_ERROR``, which OpenSSH sends to every
    peer it throws out, reaches the peer as an error carrying the reason that names the
    limit. Too many authentication attempts have a code of their own.
    """
    if error.limit == "max_auth_attempts":
        return asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE
    return asyncssh.DISC_PROTOCOL_ERROR


def _peek_u32(packet: Any, skip: int = 0) -> int | None:
    # the packet's cursor stands after the fields asyncssh already read; peeking leaves
    # it there for the original handler
    data: bytes = packet._packet
    start = packet._idx + skip
    if start + 4 > len(data):
        return None
    return int.from_bytes(data[start : start + 4], "big")


def _wants_reply(packet: Any) -> bool:
    # request name (string), then want_reply (boolean)
    length = _peek_u32(packet)
    if length is None:
        return True
    data: bytes = packet._packet
    index = packet._idx + 4 + length
    return bool(index >= len(data) or data[index] != 0)


class ConnectionGuard:
    """The limits of one SSH connection (either side of it).

    :param conn: the asyncssh connection
    :param settings: the shared rate limits (``streams_per_second`` and the others)
    :param ssh_settings: the SSH limits (``max_connection_buffer``, ...)
    :param bridge: how asyncssh's callbacks reach the provider's loop
    :param peer: who the peer is, for the log
    :param clock: the time source of the rate limits
    """

    def __init__(
        self,
        conn: asyncssh.SSHClientConnection | asyncssh.SSHServerConnection,
        settings: MuxSettings,
        ssh_settings: SSHSettings,
        bridge: Bridge,
        *,
        peer: object,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = conn
        self.settings = settings
        self.ssh_settings = ssh_settings
        self.bridge = bridge
        self.peer = peer
        self._clock = clock
        self._flood = FloodGuard.from_settings(settings, clock())
        #: the limit the peer went over, once it did
        self.tripped: LimitExceeded | None = None
        #: called (on the provider's loop) when the peer went over a limit
        self.on_exceeded: Callable[[LimitExceeded], None] | None = None
        #: channels the peer opened and that are still open (or being decided)
        self.incoming_channels = 0
        self.sessions: set[ChannelSession] = set()
        self._buffered_estimate = 0
        self._last_recount = 0
        self._auth_attempts = 0
        self.output_paused = False
        self._queued_answers = 0
        self._writable: anyio.Event | None = None
        self._closed = False
        self._refusals_logged: set[str] = set()

    # -- installation ----------------------------------------------------------------------

    def install(self) -> None:
        """Count the connection's packets from now on, and watch its send buffer."""
        conn = self.conn
        handlers: dict[int, Handler] = dict(type(conn)._packet_handlers)
        # asyncssh answers a message type missing from its table itself, which the guard
        # could not count: every type it does not know gets the guard's entry (a plain
        # dict, so that the lookup of every packet stays in C)
        for kind in _MESSAGE_TYPES:
            handlers.setdefault(kind, self._unknown_message)
        self._wrap(handlers, MSG_CHANNEL_OPEN, self._on_channel_open)
        self._wrap(handlers, MSG_GLOBAL_REQUEST, self._on_global_request)
        # not MSG_IGNORE: asyncssh sends one before every packet it encrypts, so a flood
        # of them is no more than traffic; debug messages are logged, so they count
        for kind in (MSG_DEBUG, MSG_UNIMPLEMENTED):
            self._wrap(handlers, kind, self._on_empty)
        self._wrap(handlers, MSG_USERAUTH_REQUEST, self._on_auth_request)
        # a key re-exchange is the costliest thing a peer can ask for (a Diffie-Hellman
        # and a host key signature): SSH's nearest thing to a settings change
        self._wrap(handlers, MSG_KEXINIT, self._on_kexinit)
        conn._packet_handlers = handlers
        # asyncssh leaves the transport's flow control unused; the guard takes it, so
        # that a sender waits while a peer does not read, and answers queued for such a
        # peer can be counted
        conn.pause_writing = self._pause_writing  # type: ignore[method-assign]
        conn.resume_writing = self._resume_writing  # type: ignore[method-assign]
        transport = conn._transport
        if transport is not None:
            transport.set_write_buffer_limits(high=self.ssh_settings.write_buffer)

    def watch_channel(self, chan: SSHChannel[bytes], session: ChannelSession) -> None:
        """Count the packets of one channel from now on (its data, requests and window
        adjusts). A channel class can carry the same counting in its own packet table
        instead (:func:`guarded_channel_handlers`)."""
        handlers: dict[int, Handler] = dict(chan._packet_handlers)

        def on_data(kind: int, skip: int) -> Handler:
            original = handlers[kind]

            def handle(channel: Any, pkttype: int, pktid: int, packet: Any) -> Any:
                return self.channel_data(session, skip, original, channel, pkttype, pktid, packet)

            return handle

        original_request = handlers[MSG_CHANNEL_REQUEST]

        def on_request(channel: Any, pkttype: int, pktid: int, packet: Any) -> Any:
            return self.channel_request(original_request, channel, pkttype, pktid, packet)

        original_adjust = handlers[MSG_CHANNEL_WINDOW_ADJUST]

        def on_adjust(channel: Any, pkttype: int, pktid: int, packet: Any) -> Any:
            return self.window_adjust(original_adjust, channel, pkttype, pktid, packet)

        handlers[MSG_CHANNEL_WINDOW_ADJUST] = on_adjust
        handlers[MSG_CHANNEL_DATA] = on_data(MSG_CHANNEL_DATA, 0)
        handlers[MSG_CHANNEL_EXTENDED_DATA] = on_data(MSG_CHANNEL_EXTENDED_DATA, 4)
        handlers[MSG_CHANNEL_REQUEST] = on_request
        chan._packet_handlers = handlers

    def channel_data(
        self,
        session: ChannelSession,
        skip: int,
        original: Handler,
        channel: Any,
        pkttype: int,
        pktid: int,
        packet: Any,
    ) -> Any:
        """A data packet of *session*'s channel (*skip*: bytes before its length)."""
        if self.tripped is not None:
            return None
        length = _peek_u32(packet, skip)
        if length == 0:
            self.count("empty_frames_per_second")
        elif length is not None:
            self.data_arrived(session, length)
        if self.tripped is not None:
            return None
        return original(channel, pkttype, pktid, packet)

    def channel_request(
        self, original: Handler, channel: Any, pkttype: int, pktid: int, packet: Any
    ) -> Any:
        """A channel request (``env``, ``exec``, ...): counted with the settings."""
        if self.tripped is not None:
            return None
        self.count("settings_per_second")
        if _wants_reply(packet):
            self.answer_queued()
        if self.tripped is not None:
            return None
        return original(channel, pkttype, pktid, packet)

    def window_adjust(
        self, original: Handler, channel: Any, pkttype: int, pktid: int, packet: Any
    ) -> Any:
        """A window adjust: one that would overflow the window fails the connection."""
        if self.tripped is not None:
            return None
        increment = _peek_u32(packet)
        window = int(getattr(channel, "_send_window", 0))
        if increment is not None and window + increment > MAX_SSH_WINDOW:
            # RFC 4254 5.2: a window must not grow past 2**32-1
            self.exceeded(
                LimitExceeded(
                    "window_overflow",
                    f"a window adjust of {increment} overflows a window of {window}",
                    ErrorCode.FLOW_CONTROL_ERROR,
                )
            )
            return None
        return original(channel, pkttype, pktid, packet)

    def _wrap(self, handlers: dict[int, Handler], kind: int, check: Callable[[Any], None]) -> None:
        original = handlers[kind]

        def handle(conn: Any, pkttype: int, pktid: int, packet: Any) -> Any:
            if self.tripped is not None:
                return None  # the peer is being disconnected: nothing more of it is heard
            check(packet)
            if self.tripped is not None:
                return None
            return original(conn, pkttype, pktid, packet)

        handlers[kind] = handle

    # -- what the packets count ------------------------------------------------------------

    def _on_channel_open(self, packet: Any) -> None:
        self.count("streams_per_second")
        self.answer_queued()  # a confirmation or a failure

    def _on_global_request(self, packet: Any) -> None:
        self.count("pings_per_second")
        if _wants_reply(packet):
            self.answer_queued()

    def _on_empty(self, packet: Any) -> None:
        self.count("empty_frames_per_second")

    def _on_kexinit(self, packet: Any) -> None:
        self.count("settings_per_second")
        self.answer_queued()

    def _unknown_message(self, conn: Any, pkttype: int, pktid: int, packet: Any) -> None:
        # what asyncssh does for a message type it does not know (answer UNIMPLEMENTED,
        # or fail a strict key exchange), counted: each costs an answer and does nothing
        if self.tripped is not None:
            return
        if conn._strict_kex and not conn._recv_encryption:
            raise asyncssh.ProtocolError(
                f"Strict key exchange violation: unexpected packet type {pkttype} received"
            )
        self.count("empty_frames_per_second")
        self.answer_queued()
        if self.tripped is None:
            conn.send_packet(MSG_UNIMPLEMENTED, UInt32(pktid))

    def _on_auth_request(self, packet: Any) -> None:
        self._auth_attempts += 1
        limit = self.ssh_settings.max_auth_attempts
        if self._auth_attempts > limit:
            self.exceeded(
                LimitExceeded(
                    "max_auth_attempts",
                    f"more than {limit} authentication requests",
                    ErrorCode.PROTOCOL_ERROR,
                )
            )
        else:
            self.answer_queued()

    def count(self, limit: str, cost: float = 1.0) -> None:
        """Count *cost* events of the rate limit *limit*; disconnect the peer if it went
        over."""
        if self.tripped is not None or self._closed:
            return
        try:
            self._flood.check(limit, self._clock(), cost)
        except LimitExceeded as error:
            self.exceeded(error)

    def answer_queued(self) -> None:
        """An answer is about to be queued for the peer: while the peer does not read
        (the send buffer is over its mark), at most ``max_queued_control_frames`` may
        wait."""
        if not self.output_paused or self.tripped is not None:
            return
        self._queued_answers += 1
        limit = self.settings.max_queued_control_frames
        if self._queued_answers > limit:
            self.exceeded(
                LimitExceeded(
                    "max_queued_control_frames",
                    f"more than {limit} answers queued for a peer that does not read",
                )
            )

    def reset_seen(self) -> None:
        """The peer closed a channel before it finished (SSH's nearest thing to a reset)."""
        if self.conn._transport is None:
            return  # the whole connection is going: its channels are not resets
        self.count("resets_per_second")

    # -- the connection buffer ---------------------------------------------------------------

    def data_arrived(self, session: ChannelSession, length: int) -> None:
        """*length* bytes of data arrived on *session*'s channel."""
        session.arrived += length
        self._buffered_estimate += length
        budget = self.ssh_settings.max_connection_buffer
        if self._buffered_estimate <= budget:
            return
        if self._buffered_estimate - self._last_recount < budget // _RECOUNT_FRACTION:
            return
        # the estimate only ever grows: count what the channels really hold
        held = sum(one.inbound_held() for one in self.sessions)
        self._buffered_estimate = self._last_recount = held
        if held > budget:
            self.exceeded(
                LimitExceeded(
                    "max_connection_buffer",
                    f"{held} bytes received and not read, at most {budget}",
                )
            )

    # -- channel admission -------------------------------------------------------------------

    def admit_channel(self) -> None:
        """A channel from the peer asks to open.

        :raises asyncssh.ChannelOpenError: ``OPEN_RESOURCE_SHORTAGE`` if the peer has
            ``max_incoming_streams`` channels open already
        """
        limit = self.settings.max_incoming_streams
        if self.incoming_channels >= limit:
            self.refused("max_incoming_streams", f"{limit} channels open already")
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_RESOURCE_SHORTAGE,
                f"limit max_incoming_streams exceeded: {limit} channels open already",
            )
        self.incoming_channels += 1

    def release_channel(self) -> None:
        """A channel counted by :meth:`admit_channel` closed or was refused."""
        self.incoming_channels -= 1

    def refused(self, limit: str, message: str) -> None:
        """Log, once per connection and limit, that streams are refused over *limit*."""
        if limit in self._refusals_logged:
            return
        self._refusals_logged.add(limit)
        logger.warning(
            "refusing streams from %s: limit %s exceeded (%s)",
            self.peer,
            limit,
            message,
            extra={"limit": limit, "peer": str(self.peer)},
        )

    # -- the peer's reading ------------------------------------------------------------------

    def _pause_writing(self) -> None:
        self.output_paused = True

    def _resume_writing(self) -> None:
        self.output_paused = False
        self._queued_answers = 0
        self._wake_writers()

    def _wake_writers(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None:
            with self.bridge.pin:
                writable.set()

    async def wait_writable(self) -> None:
        """Wait while the connection's send buffer is over its mark (the peer is not
        reading fast enough); return at once if it is not, or once the connection ends.

        A writer woken by the buffer draining writes once before it can be held again,
        even if writers woken before it filled the buffer anew: rechecking would let the
        same few streams take every turn (on trio, which wakes in random order, one of
        100 streams got nothing at all). The overshoot is one write per waiting stream,
        and it happens only when the peer did read.
        """
        if self.output_paused and not self._closed and self.tripped is None:
            if self._writable is None:
                self._writable = anyio.Event()
            await self._writable.wait()

    # -- the end ---------------------------------------------------------------------------------

    def connection_lost(self) -> None:
        """The connection ended: wake whoever waits on it."""
        self._closed = True
        self._wake_writers()

    def exceeded(self, error: LimitExceeded) -> None:
        """The peer went over a connection-level limit: log it, fail the provider and
        disconnect the peer, once."""
        if self.tripped is not None or self._closed:
            return
        self.tripped = error
        log_limit_exceeded(logger, error, self.peer)
        # the disconnect first: the streams that fail next close their channels, and those
        # closes must not reach the peer before it (it would take each for a reset)
        disconnect(self.conn, disconnect_code(error), f"limit {error.limit} exceeded: {error}")
        if self.on_exceeded is not None:
            with self.bridge.pin:
                self.on_exceeded(error)
        self._wake_writers()


class _Drain(asyncio.Protocol):
    """Reads and drops what a disconnected peer still sends, so that closing the socket
    with its bytes unread does not turn into a TCP reset that would destroy the
    disconnect message on the peer's side before it read it."""

    def data_received(self, data: bytes) -> None:
        """Dropped: the connection is over."""

    def eof_received(self) -> None:
        """The peer closed its side too: the transport closes (nothing to linger for)."""


def disconnect(
    conn: asyncssh.SSHClientConnection | asyncssh.SSHServerConnection, code: int, reason: str
) -> None:
    """Send the peer a disconnect message with *code* and *reason*, and close.

    asyncssh's own ``disconnect`` aborts the socket right after queueing the message, so
    a peer whose reading lags behind (the usual case for a flooding peer) would see the
    connection reset instead of the reason. Here the socket is half-closed after what is
    queued, the message last; what the peer still sends is read and dropped; and the
    socket is cut :data:`DISCONNECT_GRACE` seconds later at most. The channels are not
    closed one by one first: the peer's streams fail with the connection's error.
    """
    transport = conn._transport
    if transport is not None:
        abort = transport.abort
        loop = conn._loop

        def linger() -> None:
            transport.set_protocol(_Drain())
            if transport.can_write_eof():
                transport.write_eof()
            loop.call_later(DISCONNECT_GRACE, abort)

        transport.abort = linger  # type: ignore[method-assign]
        # the provider's close cuts a lingering socket itself when its loop may end first
        conn._streams_lingering = (transport, abort)  # type: ignore[union-attr]
    # not conn.disconnect(): it first closes every channel, which the peer would take
    # for a reset of each stream before it learns that the whole connection failed
    conn._send_disconnect(code, reason, DEFAULT_LANG)
    conn._force_close(None)


def guarded_channel_handlers(
    base: dict[int, Handler], session_of: Callable[[Any], ChannelSession]
) -> dict[int, Handler]:
    """A packet table for a whole channel class that counts what
    :meth:`ConnectionGuard.watch_channel` counts for one channel object: each handler
    finds the channel's session (*session_of*) and its guard, so no table or closure is
    made per channel."""
    handlers = dict(base)

    def on_data(kind: int, skip: int) -> Handler:
        original = base[kind]

        def handle(channel: Any, pkttype: int, pktid: int, packet: Any) -> Any:
            session = session_of(channel)
            guard = session.guard
            if guard is None:
                return original(channel, pkttype, pktid, packet)
            return guard.channel_data(session, skip, original, channel, pkttype, pktid, packet)

        return handle

    original_request = base[MSG_CHANNEL_REQUEST]

    def on_request(channel: Any, pkttype: int, pktid: int, packet: Any) -> Any:
        guard = session_of(channel).guard
        if guard is None:
            return original_request(channel, pkttype, pktid, packet)
        return guard.channel_request(original_request, channel, pkttype, pktid, packet)

    original_adjust = base[MSG_CHANNEL_WINDOW_ADJUST]

    def on_adjust(channel: Any, pkttype: int, pktid: int, packet: Any) -> Any:
        guard = session_of(channel).guard
        if guard is None:
            return original_adjust(channel, pkttype, pktid, packet)
        return guard.window_adjust(original_adjust, channel, pkttype, pktid, packet)

    handlers[MSG_CHANNEL_WINDOW_ADJUST] = on_adjust
    handlers[MSG_CHANNEL_DATA] = on_data(MSG_CHANNEL_DATA, 0)
    handlers[MSG_CHANNEL_EXTENDED_DATA] = on_data(MSG_CHANNEL_EXTENDED_DATA, 4)
    handlers[MSG_CHANNEL_REQUEST] = on_request
    return handlers
