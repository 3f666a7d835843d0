"""Byte-stream transports that network backends run on: addresses, dialling and
listening over TCP, TLS and Unix sockets, and a coalescing writer.

A backend's driver runs its codec on whatever :class:`anyio.abc.ByteStream` it is given;
these helpers make that stream from an address.
"""

from __future__ import annotations

import contextlib
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSListener, TLSStream

from .errors import ConfigError, ConnectionLost
from .loop_io import direct_writer, transport_backlog
from .loopops import current_loop_ops

__all__ = [
    "LOOPBACK_HOSTS",
    "Address",
    "CoalescingBuffer",
    "OutboundBuffer",
    "TLSConfig",
    "connect_byte_stream",
    "listen_byte_streams",
    "pause_reading_until_asked",
]


#: host names that only this machine can reach (what "binds to loopback" allows)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True, slots=True)
class Address:
    """Where to dial or listen: ``host:port``, ``[v6]:port``, ``unix:/path`` or ``memory:name``."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, text: str | Address, *, default_port: int | None = None) -> Address:
        """Parse *text*.

        :raises ~streams.ConfigError: if it is not an address
        """
        if isinstance(text, Address):
            return text
        if text.startswith("unix:"):
            path = text[5:]
            if not path:
                raise ConfigError(f"{text!r}: a unix address needs a path")
            return cls("unix", path=path)
        if text.startswith("memory:"):
            name = text[7:]
            if not name:
                raise ConfigError(f"{text!r}: a memory address needs a name")
            return cls("memory", path=name)
        host, separator, port_text = text.rpartition(":")
        if not separator:
            if default_port is None:
                raise ConfigError(f"{text!r}: expected HOST:PORT, unix:PATH or memory:NAME")
            host, port_text = text, str(default_port)
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host:
            raise ConfigError(f"{text!r}: the host is missing")
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"{text!r}: the port must be a number") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"{text!r}: the port must be between 0 and 65535")
        return cls("tcp", host=host, port=port)

    def __str__(self) -> str:
        if self.scheme == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"{host}:{self.port}"
        return f"{self.scheme}:{self.path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    """TLS settings as an operator writes them; :meth:`client_context` and
    :meth:`server_context` turn them into :class:`ssl.SSLContext` objects.

    Certificates and host names are verified unless ``insecure`` says otherwise.
    """

    #: PEM certificate chain presented by this side
    cert: str | None = None
    #: PEM private key for ``cert``
    key: str | None = None
    #: PEM bundle of the certificate authorities to trust (the system's when ``None``)
    ca: str | None = None
    #: skip certificate and host name verification (an explicit opt-out)
    insecure: bool = False
    #: the name to verify the server's certificate against (the dialled host by default)
    server_name: str | None = None
    #: ALPN protocols to offer or accept, in order of preference
    alpn: tuple[str, ...] = ()

    def client_context(self) -> ssl.SSLContext:
        """A context for dialling, verifying the server unless ``insecure``."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert:
            context.load_cert_chain(self.cert, self.key)
        if self.alpn:
            context.set_alpn_protocols(list(self.alpn))
        return context

    def server_context(self) -> ssl.SSLContext:
        """A context for listening; it requires client certificates when ``ca`` is set."""
        if not self.cert:
            raise ConfigError("a TLS server needs a certificate", path="tls.cert")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        context.verify_mode = ssl.CERT_REQUIRED if self.ca else ssl.CERT_NONE
        if self.alpn:
            context.set_alpn_protocols(list(self.alpn))
        return context


async def connect_byte_stream(
    address: Address | str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    connect_timeout: float | None = 30.0,
) -> anyio.abc.ByteStream:
    """Dial *address* (TCP or Unix), wrapping it in TLS when *ssl_context* is given.

    :raises ~streams.ConnectionLost: if the connection or the TLS handshake fails
    """
    address = Address.parse(address)
    try:
        with anyio.fail_after(connect_timeout if connect_timeout is not None else float("inf")):
            stream: anyio.abc.ByteStream
            if address.scheme == "unix":
                stream = await anyio.connect_unix(address.path)
            elif address.scheme == "tcp":
                stream = await anyio.connect_tcp(address.host, address.port)
                set_no_delay(stream)
            else:
                raise ConfigError(f"cannot dial {address}: not a network address")
            if ssl_context is not None:
                hostname = server_hostname or (address.host if address.scheme == "tcp" else None)
                try:
                    stream = await TLSStream.wrap(
                        stream,
                        hostname=hostname,
                        ssl_context=ssl_context,
                        standard_compatible=False,
                    )
                except BaseException:
                    await anyio.aclose_forcefully(stream)
                    raise
            return stream
    except TimeoutError:
        raise ConnectionLost(
            f"connecting to {address} timed out after {connect_timeout} s"
        ) from None
    except (OSError, ssl.SSLError, anyio.BrokenResourceError) as exc:
        raise ConnectionLost(f"cannot connect to {address}: {exc}") from exc


async def listen_byte_streams(
    address: Address | str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float = 10.0,
) -> anyio.abc.Listener[anyio.abc.ByteStream]:
    """Listen on *address* (TCP or Unix), with TLS when *ssl_context* is given.

    Port 0 picks a free port; ``listener.extra(SocketAttribute.local_address)`` tells it.
    """
    address = Address.parse(address)
    listener: anyio.abc.Listener[Any]
    if address.scheme == "unix":
        listener = await anyio.create_unix_listener(address.path)
    elif address.scheme == "tcp":
        listener = await anyio.create_tcp_listener(
            local_host=address.host, local_port=address.port, reuse_port=False
        )
    else:
        raise ConfigError(f"cannot listen on {address}: not a network address")
    if ssl_context is not None:
        return TLSListener(
            listener,
            ssl_context,
            standard_compatible=False,
            handshake_timeout=handshake_timeout,
        )
    return listener


def pause_reading_until_asked(stream: anyio.abc.ByteStream) -> None:
    """Make an accepted connection read from its socket only while ``receive`` waits.

    anyio's asyncio backend (4.x) pauses the transports it dials but not the ones it
    accepts, and its ``receive`` pauses reading only after it had to resume it: a peer
    that writes from its first moment, faster than the server parses, keeps reading
    switched on, and once the server stops calling ``receive`` (backpressure) the
    socket is still read into an unbounded queue. Pausing at accept restores TCP
    backpressure; ``receive`` resumes reading whenever its queue is empty. Streams of
    other kinds (trio, Unix sockets on trio, memory) are left alone.
    """
    inner: object = stream
    while isinstance(inner, TLSStream):
        inner = inner.transport_stream
    transport = getattr(inner, "_transport", None)
    pause = getattr(transport, "pause_reading", None)
    if callable(pause):
        with contextlib.suppress(RuntimeError, AttributeError):
            pause()


def set_no_delay(stream: anyio.abc.ByteStream) -> None:
    """Turn Nagle's algorithm off: frames are coalesced by :class:`OutboundBuffer` instead."""
    import socket

    try:
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    except anyio.TypedAttributeLookupError:
        return
    with contextlib.suppress(OSError):
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def local_port(listener: anyio.abc.Listener[Any]) -> int | None:
    """The TCP port *listener* is bound to, when it is a TCP listener."""
    try:
        address = listener.extra(anyio.abc.SocketAttribute.local_address)
    except anyio.TypedAttributeLookupError:
        # anyio's TLSListener does not pass its socket listener's attributes on
        inner = getattr(listener, "listener", None)
        return local_port(inner) if isinstance(inner, anyio.abc.Listener) else None
    if isinstance(address, tuple):
        return int(address[1])
    return None


class OutboundBuffer:
    """Frames queued for one connection, written by one writer task in large batches.

    Writers append without waiting (control frames must never block), and data writers
    then call :meth:`drain`, which waits while more than ``high_water`` bytes are queued:
    that is the connection's backpressure. Appending many small frames between two writes
    coalesces them into one ``send``.

    :param stream: the transport
    :param high_water: bytes queued before :meth:`drain` waits
    """

    def __init__(self, stream: anyio.abc.ByteStream, high_water: int = 1024 * 1024) -> None:
        self._stream = stream
        self._high_water = high_water
        self._chunks: list[bytes | bytearray | memoryview] = []
        self.queued = 0
        self._ops = ops = current_loop_ops()
        self._has_data = ops.event()
        self._drained = ops.event()
        self._drained.set()
        self._closing = False
        self.error: BaseException | None = None

    def write(self, *chunks: bytes | bytearray | memoryview) -> None:
        """Queue *chunks*, to be sent in order. Never blocks."""
        if self.error is not None or self._closing:
            return
        for chunk in chunks:
            self._chunks.append(chunk)
            self.queued += len(chunk)
        self._wake_writer()
        if self.queued > self._high_water and self._drained.is_set():
            self._drained = self._ops.event()

    def _wake_writer(self) -> None:
        """Something was queued: make sure the writer task sends it."""
        self._has_data.set()

    async def drain(self) -> None:
        """Wait while the queue is above the high-water mark.

        :raises ~streams.ConnectionLost: if the transport failed
        """
        while self.queued > self._high_water and self.error is None:
            await self._drained.wait()
        if self.error is not None:
            raise ConnectionLost(f"writing failed: {self.error}") from self.error
        await self._ops.checkpoint()

    async def run(self, on_error: Callable[[BaseException], None]) -> None:
        """The writer task: send what is queued until :meth:`close` (then flush) or failure."""
        try:
            while True:
                await self._has_data.wait()
                if not self._chunks:
                    if self._closing:
                        return
                    self._has_data = self._ops.event()
                    continue
                chunks, self._chunks = self._chunks, []
                self.queued = 0
                self._has_data = self._ops.event()
                if self._closing:
                    # close() set the event just replaced: keep its wake-up
                    self._has_data.set()
                data = bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)
                self._drained.set()
                await self._stream.send(data)
        except (
            OSError,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            # anyio's TLS stream raises this from send() once the peer has closed
            anyio.EndOfStream,
        ) as exc:
            self.error = exc
            self._drained.set()
            on_error(exc)

    def close(self) -> None:
        """Stop accepting frames; the writer task sends what is queued, then returns."""
        self._closing = True
        self._has_data.set()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The transport's attributes (addresses, TLS), for streams to expose."""
        return self._stream.extra_attributes


#: how many turns the writer lets a handler take before an acceptance leaves without its reply
_COALESCE_TURNS = 6
#: payloads at least this large are handed to the transport without being joined
_DIRECT_SEND = 64 * 1024


def _call_soon_of(stream: anyio.abc.ByteStream) -> Callable[..., Any] | None:
    if type(stream).__module__ != "anyio._backends._asyncio":
        return None
    import asyncio

    return asyncio.get_running_loop().call_soon


class CoalescingBuffer(OutboundBuffer):
    """An :class:`OutboundBuffer` that the streams flush themselves when they are about
    to wait, and whose writer task sends the rest.

    A stream's operations that need not wait do not yield to the event loop, so what one
    task queues in one go (an open, its data and its end of stream; an answer, its echo
    and its end) is queued together; when that task is about to wait (for data, for an
    acceptance) or closes the stream, :meth:`flush` writes the queue straight to the
    socket if the socket takes it at once. Whatever is left (the socket was full, the
    stream is TLS, nobody flushed) the writer task sends at its next turn, joined with what
    other tasks queued meanwhile.

    Writers past the high-water mark wait their turn in arrival order (:meth:`drain`), so
    many streams sending at once share the connection evenly.

    :param turn_bytes: about how much one writer queues per turn (a data frame), so that
        each time the queue is taken, enough writers are let in to refill it
    :param direct_to: the stream :meth:`flush` may write to directly, when *stream* is a
        wrapper around it that sees only the writer task's sends
    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        high_water: int,
        *,
        turn_bytes: int,
        direct_to: anyio.abc.ByteStream | None = None,
    ) -> None:
        super().__init__(stream, high_water)
        self._turns: deque[anyio.Event] = deque()
        self._batch = max(1, high_water // turn_bytes)
        # what the queue waits for: conditions of frames that may wait for company
        # (write_deferrable), and whether anything else is queued
        self._holds: list[Callable[[], bool]] = []
        self._urgent = False
        # a wrapper that only watches the writer's sends may name the socket stream under
        # it: writes that never wait need no watching
        self._direct = direct_writer(direct_to if direct_to is not None else stream)
        self._backlog = (
            transport_backlog(direct_to if direct_to is not None else stream)
            if self._direct is not None
            else None
        )
        #: ``True`` while the writer task holds chunks it took but has not sent yet
        self._sending = False
        # where the loop can run a plain callback at its next turn (asyncio), the writer
        # task is woken from there, and only if nobody flushed the queue meanwhile: most
        # of the time somebody did, and waking a task for nothing costs more than a callback
        self._call_soon = (
            _call_soon_of(direct_to if direct_to is not None else stream)
            if self._direct is not None
            else None
        )
        self._kick_pending = False
        # the first queued chunk is the rest of a frame a flush wrote in part
        self._partial_head = False
        #: set by a caller that calls :meth:`flush` before it next yields (a reader handling
        #: its input, an open that waits for its answer): what it queues until then needs
        #: no wake-up of the writer, which would find the queue flushed
        self.flush_follows = False

    def write(self, *chunks: bytes | bytearray | memoryview) -> None:
        self._urgent = True
        super().write(*chunks)

    def write_deferrable(
        self, hold: Callable[[], bool], *chunks: bytes | bytearray | memoryview
    ) -> None:
        """Queue *chunks* that may wait a few turns for more frames as long as *hold()*
        is true and nothing else is queued: an acceptance that a peer who did not wait for
        it does not need alone, when the handler's answer is about to follow."""
        self._holds.append(hold)
        super().write(*chunks)

    def _wake_writer(self) -> None:
        if self.flush_follows:
            return
        call_soon = self._call_soon
        if call_soon is None:
            self._has_data.set()
        elif not self._kick_pending:
            self._kick_pending = True
            call_soon(self._kick)

    def _kick(self, turns: int = 0) -> None:
        if self._chunks and turns < _COALESCE_TURNS and self._holding():
            # an acceptance waiting for the handler's reply: look again at the next turn
            assert self._call_soon is not None
            self._call_soon(self._kick, turns + 1)
            return
        self._kick_pending = False
        if self._chunks:
            self._has_data.set()

    def _holding(self) -> bool:
        if self._urgent:
            return False
        for hold in self._holds:  # noqa: SIM110 (a loop, not all(genexpr): on every flush)
            if not hold():
                return False
        return True

    def flush(self) -> None:
        """Write what is queued now if the socket takes it without waiting; leave it to the
        writer task otherwise. Never blocks."""
        self.flush_follows = False
        chunks = self._chunks
        if not chunks or self.error is not None:
            return
        if self._direct is None or self._sending or self._holding():
            # the writer task sends it (writes may have left that to this flush)
            self._wake_writer()
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        sent = self._direct(data)
        if not sent:  # the transport has a backlog (or failed): the writer task sends it
            self._wake_writer()
            return
        self._taken()
        if sent < len(data):
            rest = memoryview(data)[sent:]
            self._chunks = [rest]
            self.queued = len(rest)
            self._urgent = True
            self._partial_head = True
            self._has_data.set()

    def _taken(self) -> None:
        self._chunks = []
        self._partial_head = False
        self.queued = 0
        self._holds.clear()
        self._urgent = False
        self._drained.set()
        self._wake(self._batch)

    def discard_queued(self) -> None:
        """Drop what the writer has not taken yet, except the rest of a frame already
        begun on the wire: for a peer being cut off, whose Go Away should not wait behind
        data it will never use."""
        keep = self._chunks[:1] if self._partial_head else []
        self._chunks = keep
        self.queued = len(keep[0]) if keep else 0
        self._holds.clear()
        self._drained.set()
        self._wake(len(self._turns))

    @property
    def must_wait(self) -> bool:
        """``True`` if a writer should :meth:`drain` now."""
        return self.queued > self._high_water or bool(self._turns)

    async def drain(self) -> None:
        """Wait for this writer's turn while the queue is full or others wait already.

        A plain event would wake every waiting writer at once, in whatever order the loop
        picks (trio's is random), and the first few would take the whole queue each time.

        :raises ~streams.ConnectionLost: if the transport failed
        """
        if self.flush_follows:
            self.flush()
        if self.error is None and not self._closing and self.must_wait:
            turn = self._ops.event()
            self._turns.append(turn)
            try:
                await turn.wait()
            finally:
                if not turn.is_set():
                    self._turns.remove(turn)
            if self.queued <= self._high_water:
                # there is room: keep the line moving even if this writer has no more
                self._wake(1)
            if self.error is not None:
                raise ConnectionLost(f"writing failed: {self.error}") from self.error
            return
        await super().drain()

    def _wake(self, count: int) -> None:
        while self._turns and count > 0:
            self._turns.popleft().set()
            count -= 1

    def close(self) -> None:
        super().close()
        self._wake(len(self._turns))

    async def run(self, on_error: Callable[[BaseException], None]) -> None:
        checkpoint = self._ops.checkpoint
        try:
            while True:
                await self._has_data.wait()
                # an acceptance that may leave with the handler's reply waits a few turns
                for _ in range(_COALESCE_TURNS):
                    if not self._chunks or self._closing or not self._holding():
                        break
                    await checkpoint()
                if not self._chunks:
                    if self._closing:
                        return
                    self._has_data = self._ops.event()
                    continue
                if self._backlog is not None and self._backlog():
                    # a flush left the transport a backlog: what is queued waits here
                    # rather than pile up behind it. An empty send returns once the
                    # backlog is gone, and whoever watches the writer's sends (the
                    # backends' guards against a peer that does not read) sees it wait.
                    await self._stream.send(b"")
                    if not self._chunks:  # a flush wrote them meanwhile
                        continue
                chunks = self._chunks
                self._has_data = self._ops.event()
                if self._closing:
                    self._has_data.set()
                self._taken()
                self._sending = True
                try:
                    await self._send(chunks)
                finally:
                    self._sending = False
        except (
            OSError,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.EndOfStream,
        ) as exc:
            self.error = exc
            self._drained.set()
            self._wake(len(self._turns))
            on_error(exc)

    async def _send(self, chunks: list[bytes | bytearray | memoryview]) -> None:
        # small frames are joined into one send; a large payload is sent as it is, which
        # costs a send but saves copying it
        pending: list[bytes | bytearray | memoryview] = []
        for chunk in chunks:
            if len(chunk) < _DIRECT_SEND:
                pending.append(chunk)
                continue
            if pending:
                await self._stream.send(b"".join(pending))
                pending = []
            await self._stream.send(chunk)  # type: ignore[arg-type]
        if pending:
            await self._stream.send(b"".join(pending))
