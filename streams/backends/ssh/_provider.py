"""The provider of one SSH connection: streams as channels, in both directions.

Both sides open streams as channels of our own type, :data:`~._codec.STREAM_CHANNEL`
(``_streamchannel``: the headers in the open request, the answer in its confirmation), or
as ``direct-tcpip`` when the headers name a destination; the accepting side opens streams
only once the dialling side said it takes them (a ``streamlocal-forward`` request for
:data:`~._codec.STREAM_PATH`). Streams that a peer of the first version opens in-band
(``direct-streamlocal`` or ``forwarded-streamlocal`` to that path) are still accepted. A
control channel carries Go Away and pings. See ``docs/ssh.md``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import asyncssh
from anyio.abc import TaskGroup

from ..._core.errors import (
    ConnectionLost,
    ErrorCode,
    GoingAway,
    LimitExceeded,
    ProtocolError,
    StreamRejected,
)
from ..._core.flow import MAX_WINDOW
from ..._core.headers import Headers
from ..._core.mux import MuxProvider, MuxSettings
from ..._core.stream import MuxStream
from ._bridge import Bridge
from ._channel import ChannelKind, ChannelSession, translate_error, watch_eof
from ._coalesce import CoalescingTransport, coalesce_writes
from ._codec import (
    CONTROL_PATH,
    GOAWAY,
    PING,
    PONG,
    STREAM_PATH,
    CodecError,
    ControlMessage,
    ReplyFrame,
    encode_control,
    encode_open,
    encode_reply,
    format_host_port,
    parse_host_port,
)
from ._config import (
    CHANNEL_HEADER,
    DESTINATION_HEADER,
    OPEN_FAILURE_HEADER,
    ORIGIN_HEADER,
    USER_HEADER,
    SSHAttribute,
    SSHSettings,
)
from ._control import ControlSession
from ._ignore import skip_ignore_under_aead
from ._keepalive import lazy_keepalive
from ._limits import DISCONNECT_GRACE, ConnectionGuard, disconnect
from ._packetlog import quiet_logging
from ._streamchannel import accept_open, install, send_open

__all__ = ["SSHProvider"]

logger = logging.getLogger("streams.ssh")

AnyConnection = asyncssh.SSHClientConnection | asyncssh.SSHServerConnection


@dataclass(slots=True)
class _Ping:
    sent: float
    done: anyio.Event
    rtt: float | None = None


class SSHProvider(MuxProvider):
    """The streams of one SSH connection, on either side of it.

    Made by :class:`~streams.backends.ssh.SSHBackend`; use ``async with``.

    :param bridge: how to reach asyncssh from the running loop
    :param ssh_settings: SSH channel settings
    :param settings: the settings every multiplexing provider shares
    :param client: ``True`` on the side that dialled
    """

    backend_name = "ssh"
    #: an open is sent without waiting for anything: an open that does not wait for the
    #: answer needs the checkpoint
    write_open_checkpoints = False

    def __init__(
        self,
        bridge: Bridge,
        ssh_settings: SSHSettings,
        settings: MuxSettings | None = None,
        *,
        client: bool,
    ) -> None:
        super().__init__(settings)
        self.bridge = bridge
        self.ssh_settings = ssh_settings
        self.client = client
        self.conn: AnyConnection | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        #: the authenticated user (server side) or the login user (client side)
        self.user: str | None = None
        self.sessions: dict[int, ChannelSession] = {}
        self._next_id = 1
        self._control: ControlSession | None = None
        #: ``True`` once the peer showed it speaks ``streams`` (not a plain SSH server)
        self.streams_peer = False
        self._reverse_ready = anyio.Event()
        self._pings: dict[int, _Ping] = {}
        self._ping_counter = 0
        self._transport_closed = False
        #: the connection's limits (made when the provider is attached)
        self.guard: ConnectionGuard | None = None
        #: ``True`` once the peer opened its control channel (one is allowed)
        self.control_requested = False
        #: the connection's writes, gathered per turn (made when the provider is attached)
        self._writes: CoalescingTransport | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def attach(self, conn: AnyConnection, guard: ConnectionGuard | None = None) -> None:
        """Bind the provider to its SSH connection (before it is entered).

        :param guard: the connection's limits, when they were installed before (a server
            counts authentication attempts before a provider exists); else installed now
        """
        self.conn = conn
        if guard is None:
            guard = ConnectionGuard(
                conn,
                self.settings,
                self.ssh_settings,
                self.bridge,
                peer=conn.get_extra_info("peername"),
            )
            guard.install()
        self.guard = guard
        guard.on_exceeded = self._limit_exceeded
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None  # trio: learnt in _start, through the bridge
        username = conn.get_extra_info("username")
        self.user = str(username) if username is not None else None
        install(conn, lambda data: accept_open(self, data))
        lazy_keepalive(conn)
        self._writes = coalesce_writes(conn)
        if self._writes is not None:
            # what flush() does, without its own call each time a stream waits
            self.flush = self._writes.flush  # type: ignore[method-assign]
        quiet_logging(conn)
        skip_ignore_under_aead(conn)

    async def _start(self, task_group: TaskGroup) -> None:
        self.loop = await self.bridge.run(_running_loop)
        if not self.client:
            await anyio.lowlevel.checkpoint()
            return
        conn = self.conn
        assert isinstance(conn, asyncssh.SSHClientConnection)
        try:
            await self.bridge.run(
                conn.create_unix_connection, lambda: ControlSession(self), CONTROL_PATH
            )
        except asyncssh.ChannelOpenError:
            # a plain SSH server (OpenSSH): only direct-tcpip streams are possible
            logger.debug("the SSH server does not speak streams; direct-tcpip only")
            return
        except (OSError, asyncssh.Error) as exc:
            raise translate_error(exc, "opening the ssh control channel failed") from exc
        try:
            await self.bridge.run(
                conn.create_unix_server,
                self._reverse_session,
                STREAM_PATH,
                window=self.ssh_settings.window,
                max_pktsize=self.ssh_settings.max_packet,
            )
        except asyncssh.ChannelListenError:
            logger.warning("the streams peer takes streams only from this side")
        except (OSError, asyncssh.Error) as exc:
            raise translate_error(exc, "asking the ssh peer for its streams failed") from exc

    def _reverse_session(self) -> ChannelSession:
        # a streams peer that opens its streams as forwarded-streamlocal channels
        with self.bridge.pin:
            return ChannelSession(self, ChannelKind.INBAND, opener=False)

    def control_opened(self, control: ControlSession) -> None:
        """The control channel is open (either side)."""
        self._control = control
        self.streams_peer = True

    def reverse_listener_requested(self) -> None:
        """Server side: the client will take streams this side opens."""
        self._reverse_ready.set()

    async def _close_transport(self) -> None:
        self._transport_closed = True
        conn = self.conn
        if conn is None:
            return
        conn.close()
        await self.bridge.run(conn.wait_closed)
        lingering = getattr(conn, "_streams_lingering", None)
        if lingering is not None:
            # a socket left draining after a disconnect for a limit: give the peer the
            # grace to read the reason and close, then cut it before this provider is
            # gone (a timer on a loop that ends first would leak the socket)
            transport, abort = lingering
            with anyio.move_on_after(DISCONNECT_GRACE):
                while not transport.is_closing():  # noqa: ASYNC110 (an asyncio transport: no anyio event to wait on)
                    await anyio.sleep(0.02)
            if not transport.is_closing():
                abort()

    def protocol_violation(self, message: str) -> None:
        """The peer broke the framing of our channels: fail the whole connection."""
        error = ProtocolError(f"the ssh peer broke the streams protocol: {message}")
        conn = self.conn
        self.fail(error)
        self._transport_closed = True
        if conn is not None:
            # after what is queued, so that the peer can read why
            disconnect(conn, asyncssh.DISC_PROTOCOL_ERROR, message)

    def _limit_exceeded(self, error: LimitExceeded) -> None:
        # the guard disconnects the peer; every stream fails with the limit's error
        self._transport_closed = True
        self.fail(error)
        self._wake_pings()

    def transport_lost(self, exc: BaseException | None) -> None:
        """asyncssh reports that the connection ended."""
        if self.guard is not None:
            self.guard.connection_lost()
        self._wake_pings()
        if self._transport_closed:
            return
        if exc is None:
            self.fail(self._going_away or ConnectionLost("the peer closed the ssh connection"))
        else:
            self.fail(translate_error(exc))

    # -- opening -------------------------------------------------------------------------

    def _new_stream(self, headers: Headers, *, local: bool) -> MuxStream:
        stream_id = self._next_id
        self._next_id += 1
        window = self.settings.receive_window
        return MuxStream(
            self,
            stream_id,
            headers,
            local=local,
            send_window=MAX_WINDOW,
            receive_window=window,
            max_receive_window=window,
            # asyncssh cuts writes into packets itself: a larger unit only saves calls
            max_frame=max(self.settings.max_frame_size, self.ssh_settings.write_buffer),
        )

    def create_local_stream(self, headers: Headers) -> MuxStream:
        stream = self._new_stream(headers, local=True)
        kind = ChannelKind.TCP if DESTINATION_HEADER in headers else ChannelKind.STREAMS
        self.sessions[stream.stream_id] = ChannelSession(self, kind, opener=True, stream=stream)
        return stream

    async def write_open(self, stream: MuxStream) -> None:
        session = self.sessions[stream.stream_id]
        if session.kind is ChannelKind.TCP:
            if not self.client:
                raise StreamRejected(
                    reason="only the dialling side of an SSH connection opens direct-tcpip"
                )
            try:
                parse_host_port(stream.headers[DESTINATION_HEADER])
            except CodecError as exc:
                raise StreamRejected(reason=f"{DESTINATION_HEADER}: {exc}") from None
        else:
            if not self.streams_peer and self.client:
                raise StreamRejected(
                    reason=f"the SSH server does not speak streams; name a destination with "
                    f"{DESTINATION_HEADER}: HOST:PORT"
                )
            try:
                session.open_frame = encode_open(stream.headers.items())
            except CodecError as exc:
                raise ValueError(f"the stream's headers are too large: {exc}") from None
            if self.client or self._reverse_ready.is_set():
                send_open(self, session)
                return
        self.task_group.start_soon(self._open_channel, session)

    def open_failed(self, session: ChannelSession, code: int, reason: str) -> None:
        """The peer refused to open the channel of *session*'s stream."""
        stream = session.stream
        if stream is not None:
            stream.on_rejected(
                StreamRejected(
                    Headers({OPEN_FAILURE_HEADER: str(code)}),
                    reason or "the SSH peer refused the channel",
                    retryable=code == asyncssh.OPEN_RESOURCE_SHORTAGE,
                )
            )

    async def _open_channel(self, session: ChannelSession) -> None:
        stream = session.stream
        assert stream is not None
        conn = self.conn
        assert conn is not None
        settings = self.ssh_settings
        try:
            if session.kind is ChannelKind.TCP:
                assert isinstance(conn, asyncssh.SSHClientConnection)
                host, port = parse_host_port(stream.headers[DESTINATION_HEADER])
                origin = stream.headers.get(ORIGIN_HEADER, "127.0.0.1:0")
                orig_host, orig_port = parse_host_port(origin)
                tcp = conn.create_tcp_channel(
                    window=settings.window, max_pktsize=settings.max_packet
                )
                watch_eof(tcp, session)
                await self.bridge.run(
                    tcp.connect, lambda: session, host, port, orig_host, orig_port
                )
                stream.on_accepted(Headers({CHANNEL_HEADER: ChannelKind.TCP.value}))
                return
            # the server's first streams, before the client said it takes them
            with anyio.fail_after(self.settings.open_timeout or float("inf")):
                await self._reverse_ready.wait()
            if not stream.finished:
                send_open(self, session)
        except asyncssh.ChannelOpenError as exc:
            stream.on_rejected(
                StreamRejected(
                    Headers({OPEN_FAILURE_HEADER: str(exc.code)}),
                    exc.reason or "the SSH peer refused the channel",
                    retryable=exc.code == asyncssh.OPEN_RESOURCE_SHORTAGE,
                )
            )
        except TimeoutError:
            stream.on_rejected(StreamRejected(reason="the client takes no streams from here"))
        except (CodecError, ValueError) as exc:
            stream.on_rejected(StreamRejected(reason=str(exc)))
        except (OSError, asyncssh.Error) as exc:
            stream.on_connection_lost(translate_error(exc, "opening an ssh channel failed"))

    def on_reply(self, stream: MuxStream, frame: ReplyFrame) -> None:
        """The acceptor's decision arrived."""
        headers = Headers(list(frame.headers))
        if frame.accepted:
            stream.on_accepted(headers)
        else:
            stream.on_rejected(
                StreamRejected(
                    headers,
                    frame.reason,
                    code=frame.code or ErrorCode.REFUSED_STREAM,
                    retryable=frame.retryable,
                )
            )

    # -- the peer's streams --------------------------------------------------------------

    def incoming_channel(
        self, session: ChannelSession, pairs: tuple[tuple[str, str], ...]
    ) -> MuxStream | None:
        """A streams channel's headers arrived: the stream goes to the handler."""
        headers = Headers(list(pairs))
        if not self.client:
            self._stamp_user(headers)
        stream = self._new_stream(headers, local=False)
        self.sessions[stream.stream_id] = session
        session.stream = stream
        self.incoming(stream)
        return stream

    def incoming_tcp(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> tuple[asyncssh.SSHTCPChannel[bytes], Any]:
        """Server side: a ``direct-tcpip`` channel (``ssh -W``, ``ssh -L``) asks to open."""
        conn = self.conn
        assert isinstance(conn, asyncssh.SSHServerConnection)
        if self.guard is not None:
            self.guard.admit_channel()
        chan = conn.create_tcp_channel(
            window=self.ssh_settings.window, max_pktsize=self.ssh_settings.max_packet
        )
        headers = Headers(
            [
                (DESTINATION_HEADER, format_host_port(dest_host, dest_port)),
                (ORIGIN_HEADER, format_host_port(orig_host, orig_port)),
                (CHANNEL_HEADER, ChannelKind.TCP.value),
            ]
        )
        self._stamp_user(headers)
        session = ChannelSession(self, ChannelKind.TCP, opener=False)
        session.admitted = self.guard is not None

        async def decide() -> ChannelSession:
            decision = asyncio.get_running_loop().create_future()
            session.decision = decision
            try:
                with self.bridge.pin:
                    if self.is_closing:
                        raise asyncssh.ChannelOpenError(
                            asyncssh.OPEN_RESOURCE_SHORTAGE, "the server is closing"
                        )
                    stream = self._new_stream(headers, local=False)
                    session.stream = stream
                    self.sessions[stream.stream_id] = session
                    self.incoming(stream)
                await decision
            except BaseException:
                # refused: the channel never opens, so it never reports its close
                session.finish()
                raise
            return session

        return chan, decide()

    def _stamp_user(self, headers: Headers) -> None:
        # the opener cannot claim to be someone else: the authenticated name wins
        headers.popall(USER_HEADER, None)
        if self.user is not None:
            headers.add(USER_HEADER, self.user)

    def write_accept(self, stream: MuxStream, response_headers: Headers) -> None:
        session = self.sessions.get(stream.stream_id)
        if session is None:
            return
        if session.kind is ChannelKind.TCP:
            decision = session.decision
            if decision is not None and not decision.done():
                decision.set_result(session)
            return
        try:
            frame = encode_reply(accepted=True, headers=response_headers.items())
        except CodecError:
            frame = encode_reply(accepted=True)
            logger.warning("response headers of stream %s too large; sent none", stream)
        if session.kind is ChannelKind.STREAMS:
            session.answer_with(frame)
        else:
            session.write_raw(frame)

    def write_reject(self, stream: MuxStream, rejection: StreamRejected) -> None:
        session = self.sessions.get(stream.stream_id)
        if session is None:
            return
        if session.kind is ChannelKind.TCP:
            decision, session.decision = session.decision, None
            if decision is not None and not decision.done():
                code = (
                    asyncssh.OPEN_RESOURCE_SHORTAGE
                    if rejection.retryable
                    else asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED
                )
                decision.set_exception(asyncssh.ChannelOpenError(code, rejection.reason))
            return
        try:
            frame = encode_reply(
                accepted=False,
                headers=rejection.response_headers.items(),
                reason=rejection.reason,
                code=int(rejection.code),
                retryable=rejection.retryable,
            )
        except CodecError:
            frame = encode_reply(accepted=False, reason=rejection.reason, code=int(rejection.code))
        if session.kind is ChannelKind.STREAMS:
            session.answer_with(frame)
        else:
            session.write_raw(frame)
        session.finish()

    def write_goaway(self) -> None:
        if self._control is not None:
            self._control.send(encode_control(GOAWAY))

    # -- the stream owner interface --------------------------------------------------------

    def flush(self) -> None:
        """A stream is about to wait or was closed: what it wrote leaves now."""
        writes = self._writes
        if writes is not None:
            writes.flush()

    async def write_data(self, stream: MuxStream, data: memoryview) -> None:
        session = self.sessions.get(stream.stream_id)
        try:
            if session is None:
                raise ConnectionLost("the stream's channel is gone")
            await session.write(stream, data)
        finally:
            # SSH's own window limits the sender; the stream's window is only a formality
            stream.on_window_update(len(data))

    def write_eof(self, stream: MuxStream) -> None:
        session = self.sessions.get(stream.stream_id)
        if session is not None:
            session.write_eof()

    def write_reset(self, stream: MuxStream, code: int) -> None:
        session = self.sessions.get(stream.stream_id)
        if session is not None:
            # SSH has no reset: a close without EOF is the closest; after our EOF a close
            # keeps what is queued so the peer reads everything, then the end of file
            session.reset(graceful=stream.eof_sent)

    def write_window_update(self, stream: MuxStream, increment: int) -> None:
        session = self.sessions.get(stream.stream_id)
        if session is not None:
            session.consumed(stream)

    def stream_finished(self, stream: MuxStream) -> None:
        super().stream_finished(stream)
        session = self.sessions.pop(stream.stream_id, None)
        if session is not None:
            session.finish()

    def stream_extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        attributes: dict[Any, Callable[[], Any]] = {
            SSHAttribute.user: lambda: self.user,
        }
        conn = self.conn
        if conn is not None:
            attributes[SSHAttribute.peer_address] = lambda: conn.get_extra_info("peername")
        return attributes

    # -- control ---------------------------------------------------------------------------

    def on_control(self, message: ControlMessage) -> None:
        """A control message arrived."""
        if message.kind == GOAWAY:
            self.on_goaway(GoingAway("the ssh peer is closing"))
        elif message.kind == PING and self._control is not None:
            if self.guard is not None:
                self.guard.count("pings_per_second")
                self.guard.answer_queued()
                if self.guard.tripped is not None:
                    return
            self._control.send(encode_control(PONG, message.payload))
        elif message.kind == PONG:
            ping = self._pings.pop(message.payload, None)
            if ping is not None:
                ping.rtt = anyio.current_time() - ping.sent
                ping.done.set()

    async def ping(self) -> float:
        """Measure the round trip over the control channel (between ``streams`` peers).

        :raises NotImplementedError: against a plain SSH server
        :raises ~streams.ConnectionLost: if the connection failed
        """
        self.check_can_open()
        if self._control is None:
            raise NotImplementedError("a plain SSH server answers no streams ping")
        self._ping_counter += 1
        ping = self._pings[self._ping_counter] = _Ping(anyio.current_time(), anyio.Event())
        self._control.send(encode_control(PING, self._ping_counter))
        await ping.done.wait()
        if ping.rtt is None:
            raise self.failure or ConnectionLost("the ssh connection closed during a ping")
        self._rtt = ping.rtt
        return ping.rtt

    def _wake_pings(self) -> None:
        for ping in self._pings.values():
            ping.done.set()
        self._pings.clear()


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()
