"""asyncssh's writes to the socket, gathered: the small packets of one turn leave in one
``send``.

asyncssh hands every packet to the transport as it makes it, and puts an IGNORE packet
before every one: an open-echo-close is 16 small packets, 16 ``send`` system calls, and as
many wake-ups and reads on the other end. :class:`CoalescingTransport` stands in front of
the connection's transport and keeps small packets until the turn ends:

- when asyncssh has handled what one read brought (the connection's ``data_received``
  returns): the answers to a whole batch of packets leave together;
- when a stream is about to wait, or is closed (the provider's ``flush``, which
  ``MuxStream`` calls there): an open, data and EOF written in one go leave together;
- otherwise at the loop's next turn (``call_soon``), so nothing is ever held back longer
  than that, whoever wrote it (asyncssh's timers and tasks too).

A large packet (bulk data) is not copied into a batch: what is gathered goes first, then
the packet, as before. Closing, aborting or half-closing the transport writes what is
gathered first, so nothing written is dropped that the transport would have sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["CoalescingTransport", "coalesce_writes"]

#: a packet this large goes to the transport as it is (after what is gathered): joining
#: it would copy it to save one system call
LARGE = 16 * 1024
#: what is gathered is written once it reaches this size, so the transport's own flow
#: control (its high-water mark, which the connection's guard watches) sees it in time
GATHERED_MAX = 64 * 1024


class CoalescingTransport:
    """The connection's transport, with small writes gathered (see the module).

    Everything but writing and closing is the wrapped transport's own (``__getattr__``).

    :param transport: the asyncio transport asyncssh writes to
    :param loop: the loop it runs on
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._call_soon = loop.call_soon
        self._gathered: list[bytes] = []
        self._size = 0
        #: a flush at the loop's next turn is scheduled
        self._scheduled = False
        #: asyncssh is handling a read: the end of it writes what is gathered
        self.receiving = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)

    def write(self, data: bytes) -> None:
        """Gather *data* (or write it now if it is large)."""
        if len(data) >= LARGE:
            if self._gathered:
                self.flush()
            self.transport.write(data)
            return
        self._gathered.append(data)
        self._size += len(data)
        if self._size >= GATHERED_MAX:
            self.flush()
        elif not self._scheduled and not self.receiving:
            self._scheduled = True
            self._call_soon(self._flush_at_turn)

    def flush(self) -> None:
        """Write what is gathered, in one piece."""
        gathered = self._gathered
        if not gathered:
            return
        self._gathered = []
        self._size = 0
        if self.transport.is_closing():
            return  # lost under us: asyncssh learns that from the transport
        data = gathered[0] if len(gathered) == 1 else b"".join(gathered)
        try:
            self.transport.write(data)
        except ConnectionError:
            return  # as asyncssh's own write: the connection's end is reported elsewhere

    def _flush_at_turn(self) -> None:
        self._scheduled = False
        self.flush()

    def get_write_buffer_size(self) -> int:
        """What waits to be written: gathered here, and in the transport."""
        return self._size + self.transport.get_write_buffer_size()

    def write_eof(self) -> None:
        """Half-close after what is gathered."""
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        """Close after what is gathered."""
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        """Abort, after handing the transport what is gathered (as if it had been
        written at once)."""
        self.flush()
        self.transport.abort()


def coalesce_writes(conn: Any) -> CoalescingTransport | None:
    """Put a :class:`CoalescingTransport` in front of *conn*'s transport, and write what it
    gathered whenever *conn* has handled a read. Returns it (``None`` when the connection
    has no transport any more).

    Replaces the transport attribute and ``data_received`` of that one connection object;
    the transport is told its protocol again, since some loops (uvloop) keep the protocol's
    ``data_received`` they were given.
    """
    transport = conn._transport
    if transport is None:
        return None
    if isinstance(transport, CoalescingTransport):
        return transport
    gathering = CoalescingTransport(transport, conn._loop)
    handle: Callable[[bytes], None] = conn.data_received

    def data_received(data: bytes) -> None:
        gathering.receiving = True
        try:
            handle(data)
        finally:
            gathering.receiving = False
            gathering.flush()

    conn.data_received = data_received
    conn._transport = gathering
    transport.set_protocol(conn)
    return gathering
