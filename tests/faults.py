"""Fault injection: a loopback TCP proxy that a test controls while traffic runs.

It forwards connections to a target and can, on command: refuse new connections (nothing
listens), reset every connection (TCP RST), black-hole (accept and never answer), delay
and throttle the bytes it forwards, and cut connections after N bytes (in the middle of a
frame). It counts the connections it was asked for, so tests can assert that no retry
storm happened.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import anyio.lowlevel


def abort(stream: anyio.abc.SocketStream) -> None:
    """Close *stream* with a TCP reset rather than a clean FIN."""
    try:
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (anyio.TypedAttributeLookupError, OSError):
        pass


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to *target*, with faults switched on and off by a test.

    Use :func:`fault_proxy` to run one.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        #: accept connections and read them, but never connect or answer
        self.black_hole = False
        #: seconds added before each chunk is forwarded
        self.delay = 0.0
        #: bytes per second in each direction, or ``None`` for no limit
        self.throttle: float | None = None
        #: reset each connection after this many bytes went towards the client
        self.cut_after: int | None = None
        #: stop forwarding on every connection, open ones included (with ``black_hole``
        #: for new ones: a peer that went silent without closing anything)
        self.stalled = False
        #: connections clients made (refused ones are not seen, as on a real network)
        self.accepted = 0
        self._connections: set[anyio.abc.SocketStream] = set()
        self._listener: anyio.abc.SocketListener | None = None
        self._group: anyio.abc.TaskGroup | None = None
        self._serving: anyio.CancelScope | None = None
        self._stopped = anyio.Event()

    async def _listen(self) -> None:
        assert self._group is not None
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self._listener = listener

        stopped = self._stopped = anyio.Event()

        async def serve(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            try:
                with anyio.CancelScope() as scope:
                    self._serving = scope
                    task_status.started()
                    async with listener:
                        # a multi-address listener reports its closing inside a group
                        try:
                            await listener.serve(self._handle, self._group)
                        except* anyio.ClosedResourceError:
                            pass
            finally:
                stopped.set()

        await self._group.start(serve)

    async def refuse(self) -> None:
        """Stop listening: new connections are refused, open ones go on."""
        if self._serving is not None:
            # the serving task closes the listener itself: closing it from here races with
            # its pending accept
            self._serving.cancel()
            self._serving = None
            await self._stopped.wait()
        self._listener = None

    async def accept_again(self) -> None:
        """Listen again on the same port after :meth:`refuse`."""
        if self._listener is None:
            await self._listen()

    async def reset_all(self) -> None:
        """Reset every open connection (both sides see a TCP RST)."""
        for stream in list(self._connections):
            abort(stream)
            await anyio.aclose_forcefully(stream)
        self._connections.clear()

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        self._connections.add(client)
        try:
            if self.black_hole:
                while True:
                    await client.receive()
            try:
                upstream = await anyio.connect_tcp(*self.target)
            except OSError:
                abort(client)
                return
            self._connections.add(upstream)
            async with upstream, anyio.create_task_group() as group:
                group.start_soon(self._pump, client, upstream, False, group.cancel_scope)
                group.start_soon(self._pump, upstream, client, True, group.cancel_scope)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            self._connections.discard(client)
            await anyio.aclose_forcefully(client)

    async def _pump(
        self,
        source: anyio.abc.SocketStream,
        sink: anyio.abc.SocketStream,
        towards_client: bool,
        scope: anyio.CancelScope,
    ) -> None:
        forwarded = 0
        try:
            while True:
                data = await source.receive(65536)
                while self.stalled:
                    await anyio.sleep(0.05)
                if self.delay:
                    await anyio.sleep(self.delay)
                if self.throttle:
                    await anyio.sleep(len(data) / self.throttle)
                if towards_client and self.cut_after is not None:
                    room = self.cut_after - forwarded
                    if room <= len(data):
                        await sink.send(data[: max(room, 0)] or b"")
                        abort(sink)
                        abort(source)
                        scope.cancel()
                        return
                await sink.send(data)
                forwarded += len(data)
        except anyio.EndOfStream:
            # the other side may already be gone (reset): then there is nothing to half-close
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await sink.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            abort(sink)
            scope.cancel()


@asynccontextmanager
async def fault_proxy(target_host: str, target_port: int) -> AsyncIterator[FaultProxy]:
    """Run a :class:`FaultProxy` in front of *target* for the block's duration."""
    proxy = FaultProxy(target_host, target_port)
    async with anyio.create_task_group() as group:
        proxy._group = group
        await proxy._listen()
        try:
            yield proxy
        finally:
            await proxy.refuse()
            await proxy.reset_all()
            group.cancel_scope.cancel()
