"""Shortcuts past anyio's socket streams, to the event loop's own I/O, for the hot path.

anyio's ``send`` and ``receive`` cost a turn of the event loop and, on asyncio, switching
the socket's reading on and off (two ``epoll_ctl`` calls) per call. A multiplexer that
writes many small frames and reads whatever arrives does better talking to the transport
or the socket directly, where anyio's stream is a plain socket it knows. Everything here
recognises anyio's own stream classes exactly (a TLS stream or any wrapper gets ``None``
and keeps using anyio's API) and relies on a few of their private attributes, which the
tests exercise on every supported loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import anyio.abc
import sniffio

__all__ = [
    "InputSink",
    "ReadingControl",
    "direct_writer",
    "socket_receiver",
    "take_over_reading",
]

_ASYNCIO = "anyio._backends._asyncio"
_TRIO = "anyio._backends._trio"


def direct_writer(stream: anyio.abc.ByteStream) -> Callable[[Any], int] | None:
    """A function that writes to *stream* at once, without waiting, for the socket streams
    of anyio's backends; ``None`` for any other stream (TLS, memory, a wrapper).

    It returns how many bytes the transport took: all of them, a prefix (the socket's
    buffer filled up) or none (the transport has a backlog, or failed: the writer task
    then finds out). Only call it while no ``send`` on *stream* is under way.
    """
    kind = type(stream)
    module, name = kind.__module__, kind.__name__
    if module == _ASYNCIO and name == "SocketStream":
        transport: Any = getattr(stream, "_transport", None)
        protocol: Any = getattr(stream, "_protocol", None)
        if transport is None or getattr(protocol, "write_event", None) is None:
            return None

        def write_through_transport(data: Any) -> int:
            # anyio sets the transport's buffer limits to zero, so its write event is set
            # exactly while nothing waits in the transport's own buffer (pausing replaces
            # the event with a new one: look it up each time)
            if (
                not protocol.write_event.is_set()
                or transport.is_closing()
                or protocol.exception is not None
            ):
                return 0
            transport.write(data)
            return len(data)

        return write_through_transport
    if module in (_ASYNCIO, _TRIO) and name in (
        "SocketStream",
        "UNIXSocketStream",
    ):
        try:
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        except anyio.TypedAttributeLookupError:
            return None
        send = raw.send

        def write_to_socket(data: Any) -> int:
            try:
                return int(send(data))
            except OSError:  # full (BlockingIOError) or broken: the writer task takes over
                return 0

        return write_to_socket
    return None


def transport_backlog(stream: anyio.abc.ByteStream) -> Callable[[], bool] | None:
    """For anyio's asyncio socket streams: a function telling whether the transport holds
    bytes it has not handed to the socket yet; ``None`` for other streams.

    A writer that writes to the transport directly (:func:`direct_writer`) and a writer
    task that sends through anyio would otherwise each leave up to a queue's worth in the
    transport; the task looks at this first, and waits for the backlog (through an empty
    ``send()``, which returns once it is gone) before it sends more.
    """
    kind = type(stream)
    if kind.__module__ != _ASYNCIO or kind.__name__ != "SocketStream":
        return None
    protocol: Any = getattr(stream, "_protocol", None)
    if protocol is None or getattr(protocol, "write_event", None) is None:
        return None

    def has_backlog() -> bool:
        # pausing replaces the event with a new one: look it up each time
        return not protocol.write_event.is_set()

    return has_backlog


class InputSink(Protocol):
    """Where :func:`take_over_reading` delivers a connection's input, from the event loop."""

    def input_received(self, data: bytes) -> None:
        """Bytes arrived."""

    def input_ended(self, error: BaseException | None) -> None:
        """The input ended: the peer's end of file (``None``), a failure, or our own close
        (:class:`anyio.ClosedResourceError`). Called once."""


class ReadingControl:
    """Switches the taken-over transport's reading off and on (backpressure)."""

    __slots__ = ("_transport", "paused")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        #: ``True`` while reading is switched off
        self.paused = False

    def pause(self) -> None:
        """Stop reading from the socket until :meth:`resume`."""
        if not self.paused:
            self.paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        """Read from the socket again."""
        if self.paused:
            self.paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()


class InputHandover:
    """What a driver that reads from the event loop's callbacks (:func:`take_over_reading`)
    passes to its reader task: the callbacks handle the input synchronously and leave to
    the task what needs one (closing for a failure, waiting for room, the end).

    The reader task loops over :meth:`wait` and looks at the fields; the callbacks set
    them and :meth:`wake` it.
    """

    __slots__ = ("_wakeup", "control", "end", "ended", "error", "handled")

    def __init__(self) -> None:
        #: switches the socket's reading, once reading is taken over
        self.control: ReadingControl | None = None
        #: ``True`` while the callbacks hand the input to the driver (not after a
        #: failure, or once the reader task is gone)
        self.handled = True
        #: what handling the input raised, for the reader task to act on
        self.error: Exception | None = None
        #: ``True`` once the input ended, with :attr:`end` the error (``None``: the
        #: peer's end of file)
        self.ended = False
        self.end: BaseException | None = None
        self._wakeup: anyio.Event | None = None

    def failed(self, error: Exception) -> None:
        """Handling the input raised *error*: hand no more to the driver; tell the task."""
        self.handled = False
        self.error = error
        self.wake()

    def input_ended(self, error: BaseException | None) -> None:
        """The input ended (an :class:`InputSink`'s ``input_ended``)."""
        self.ended = True
        self.end = error
        self.wake()

    def wake(self) -> None:
        """Wake the reader task if it waits in :meth:`wait`."""
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.set()

    async def wait(self) -> None:
        """Wait until the callbacks :meth:`wake` the reader task (rarely: not per read)."""
        wakeup = self._wakeup = anyio.Event()
        await wakeup.wait()


class _Forwarder(asyncio.Protocol):
    """Sits between an asyncio transport and anyio's protocol: the input goes to the sink,
    the rest (write backpressure, the connection's loss) to anyio's protocol as before, so
    anyio's ``send`` and ``aclose`` keep working."""

    def __init__(self, inner: Any, sink: InputSink) -> None:
        self._inner = inner
        self._sink = sink
        self._ended = False

    def data_received(self, data: bytes) -> None:
        _as_asyncio(self._sink.input_received, data)

    def eof_received(self) -> bool:
        self._inner.eof_received()
        self._end(None)
        return True  # keep the transport open for our side's writes

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)
        self._end(exc if exc is not None else anyio.ClosedResourceError())

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _end(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        _as_asyncio(self._sink.input_ended, error)


def _as_asyncio(function: Callable[[Any], None], argument: Any) -> None:
    # the loop calls the protocol outside any task: anyio (through sniffio) would not
    # know which library runs
    local = sniffio.thread_local
    previous, local.name = local.name, "asyncio"
    try:
        function(argument)
    finally:
        local.name = previous


def take_over_reading(stream: anyio.abc.ByteStream, sink: InputSink) -> ReadingControl | None:
    """Deliver what arrives on *stream* to *sink* straight from the event loop, instead of
    through ``stream.receive()``; ``None`` where *stream* is not an anyio asyncio TCP
    stream (then keep calling ``receive``).

    What anyio had already read is delivered first. After this, nothing may call
    ``stream.receive()``; ``send``, ``send_eof`` and ``aclose`` work as before. Call it
    from a task of the loop that runs *stream*.
    """
    kind = type(stream)
    if kind.__module__ != _ASYNCIO or kind.__name__ != "SocketStream":
        return None
    transport: Any = getattr(stream, "_transport", None)
    inner: Any = getattr(stream, "_protocol", None)
    queue = getattr(inner, "read_queue", None)
    if transport is None or queue is None or transport.is_closing():
        return None
    if not callable(getattr(transport, "set_protocol", None)):
        return None
    forwarder = _Forwarder(inner, sink)
    pending = list(queue)
    queue.clear()
    at_eof = bool(getattr(inner, "is_at_eof", False))
    transport.set_protocol(forwarder)
    for chunk in pending:
        sink.input_received(chunk)
    if at_eof:
        forwarder._end(None)
    elif not transport.is_reading():
        transport.resume_reading()
    return ReadingControl(transport)


#: reads in a row that found data waiting, after which the reader lets other tasks run
_READS_BEFORE_YIELD = 8


def socket_receiver(stream: anyio.abc.ByteStream) -> Callable[[int], Awaitable[bytes]] | None:
    """A ``receive(max_bytes)`` for anyio's trio socket streams that reads the socket
    directly; ``None`` for any other stream.

    trio's own receive lets other tasks run after every successful read (a whole turn of
    the scheduler per arrival); this one waits only when the socket has nothing, and
    otherwise lets others run every few reads, so a flood cannot starve them. It is a
    cancel point and raises what anyio's ``receive`` raises. Nothing else may read
    *stream* while it is used.
    """
    kind = type(stream)
    if kind.__module__ != _TRIO or kind.__name__ not in ("SocketStream", "UNIXSocketStream"):
        return None
    try:
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    except anyio.TypedAttributeLookupError:
        return None
    import trio
    import trio.lowlevel

    recv = sock.recv
    wait_readable = trio.lowlevel.wait_readable
    checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
    cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint
    reads_in_a_row = 0

    async def receive(max_bytes: int) -> bytes:
        nonlocal reads_in_a_row
        await checkpoint_if_cancelled()
        while True:
            try:
                data: bytes = recv(max_bytes)
            except BlockingIOError:
                try:
                    await wait_readable(sock)
                except trio.ClosedResourceError as exc:
                    raise anyio.ClosedResourceError from exc
                reads_in_a_row = 0
                continue
            if not data:
                raise anyio.EndOfStream
            reads_in_a_row += 1
            if reads_in_a_row >= _READS_BEFORE_YIELD:
                reads_in_a_row = 0
                # not cancellable: the bytes are read and must reach the caller
                await cancel_shielded_checkpoint()
            return data

    return receive
