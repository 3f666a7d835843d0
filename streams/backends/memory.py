"""Two connected providers in one process, for tests and demos.

:func:`pair` gives two providers joined by an in-memory link. They share every rule of the
contract with the network backends, flow control included: each stream has a bounded
window, and a sender waits when its peer does not read. Frames pass as method calls, so a
test can reason about ordering without a scheduler in between.

    async with memory.pair() as (client, server):
        listener = server.listen()
        stream = await client.open_stream({"path": "/echo"})
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from .._core.errors import ConnectionLost, ErrorCode, GoingAway, ProtocolError, StreamRejected
from .._core.flow import FlowControlViolation
from .._core.headers import Headers
from .._core.mux import MuxProvider, MuxSettings
from .._core.stream import MuxStream

__all__ = ["MemoryProvider", "pair"]


class MemoryProvider(MuxProvider):
    """One end of an in-memory connection; see :func:`pair`."""

    backend_name = "memory"

    def __init__(self, settings: MuxSettings | None = None, *, initiator: bool) -> None:
        super().__init__(settings)
        self.peer: MemoryProvider | None = None
        self._next_id = 1 if initiator else 2
        self._link_open = True

    async def _start(self, task_group: TaskGroup) -> None:
        await anyio.lowlevel.checkpoint()

    # -- this side writes ----------------------------------------------------------------

    def _peer_stream(self, stream: MuxStream) -> MuxStream | None:
        peer = self.peer
        if peer is None or not self._link_open:
            return None
        return peer.streams.get(stream.stream_id)

    def create_local_stream(self, headers: Headers) -> MuxStream:
        stream_id = self._next_id
        self._next_id += 2
        return self._new_stream(stream_id, headers, local=True)

    def _new_stream(self, stream_id: int, headers: Headers, *, local: bool) -> MuxStream:
        settings = self.settings
        return MuxStream(
            self,
            stream_id,
            headers,
            local=local,
            send_window=settings.receive_window,
            receive_window=settings.receive_window,
            max_receive_window=settings.receive_window,
            max_frame=settings.max_frame_size,
        )

    async def write_open(self, stream: MuxStream) -> None:
        await anyio.lowlevel.checkpoint()
        peer = self.peer
        if peer is None or not self._link_open:
            raise ConnectionLost("the in-memory link is closed")
        remote = peer._new_stream(stream.stream_id, Headers.coerce(stream.headers), local=False)
        peer.incoming(remote)

    def write_accept(self, stream: MuxStream, response_headers: Headers) -> None:
        remote = self._peer_stream(stream)
        if remote is not None:
            remote.on_accepted(Headers.coerce(response_headers))

    def write_reject(self, stream: MuxStream, rejection: StreamRejected) -> None:
        remote = self._peer_stream(stream)
        if remote is not None:
            remote.on_rejected(
                StreamRejected(
                    Headers.coerce(rejection.response_headers),
                    rejection.reason,
                    code=rejection.code,
                    retryable=rejection.retryable,
                )
            )

    async def write_data(self, stream: MuxStream, data: memoryview) -> None:
        remote = self._peer_stream(stream)
        if remote is not None:
            try:
                remote.on_data(bytes(data))
            except FlowControlViolation as exc:
                error = ProtocolError(str(exc), ErrorCode.FLOW_CONTROL_ERROR)
                self._break(error)
                raise error from exc
        await anyio.lowlevel.checkpoint()

    def write_eof(self, stream: MuxStream) -> None:
        remote = self._peer_stream(stream)
        if remote is not None:
            remote.on_eof()

    def write_reset(self, stream: MuxStream, code: int) -> None:
        remote = self._peer_stream(stream)
        if remote is not None:
            remote.on_reset(code)

    def write_window_update(self, stream: MuxStream, increment: int) -> None:
        remote = self._peer_stream(stream)
        if remote is not None:
            remote.on_window_update(increment)

    def write_goaway(self) -> None:
        if self.peer is not None and self._link_open:
            self.peer.on_goaway(GoingAway("the peer is closing"))

    async def ping(self) -> float:
        self.check_can_open()
        await anyio.lowlevel.checkpoint()
        self._rtt = 0.0
        return 0.0

    async def _close_transport(self) -> None:
        peer = self.peer
        if peer is not None and self._link_open:
            self._link_open = False
            peer._link_open = False
            reason = peer._going_away or ConnectionLost("the peer closed the connection")
            peer.fail(reason)
        await anyio.lowlevel.checkpoint()

    def _break(self, error: ConnectionLost) -> None:
        """Fail both ends, as a protocol error on a real link would."""
        peer = self.peer
        self._link_open = False
        if peer is not None:
            peer._link_open = False
            peer.fail(error)
        self.fail(error)


@asynccontextmanager
async def pair(
    settings: MuxSettings | None = None,
    *,
    server_settings: MuxSettings | None = None,
) -> AsyncIterator[tuple[MemoryProvider, MemoryProvider]]:
    """Two connected providers: ``(client, server)``. Both close when the block ends.

    :param settings: settings of both ends (and of the client when *server_settings* is given)
    :param server_settings: settings of the server end, if they differ
    """
    client = MemoryProvider(settings, initiator=True)
    server = MemoryProvider(server_settings or settings, initiator=False)
    client.peer = server
    server.peer = client
    async with client, server:
        yield client, server
