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
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import TaskGroup

from .._core.abc import Handler, Listener, StreamProvider
from .._core.backend import Backend, BackendOptions
from .._core.errors import (
    ConfigError,
    ConnectionLost,
    ErrorCode,
    GoingAway,
    ProtocolError,
    StreamClosed,
    StreamRejected,
)
from .._core.flow import FlowControlViolation
from .._core.headers import Headers
from .._core.mux import MuxProvider, MuxSettings
from .._core.server import MergedListener, StreamServer
from .._core.stream import MuxStream
from .._core.transport import Address

__all__ = ["BACKEND", "MemoryBackend", "MemoryProvider", "MemoryServer", "pair"]


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


class MemoryServer(StreamServer):
    """A server reachable in this process as ``memory:NAME``; see :class:`MemoryBackend`."""

    def __init__(self, name: str, settings: MuxSettings, handler: Handler | None) -> None:
        self.name = name
        self.settings = settings
        self._handler = handler
        self._merged = MergedListener(settings.accept_backlog)
        self._providers: set[MemoryProvider] = set()
        self._task_group: TaskGroup | None = None
        self._closing = False

    @property
    def listener(self) -> Listener:
        return self._merged

    @property
    def address(self) -> str:
        return f"memory:{self.name}"

    @property
    def connections(self) -> list[StreamProvider]:
        return list(self._providers)

    async def adopt(self, provider: MemoryProvider) -> None:
        """Run the server end of a new connection."""
        if self._closing or self._task_group is None:
            raise ConnectionLost(f"nothing listens on memory:{self.name}")
        await self._task_group.start(self._run, provider)

    async def _run(
        self, provider: MemoryProvider, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        async with provider:
            self._providers.add(provider)
            self._merged.connections_open(len(self._providers))
            task_status.started()
            try:
                listener = provider.listen(self._handler)
                while True:
                    try:
                        stream = await listener.accept()
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        break
                    except Exception as exc:
                        self._merged.feed(exc)
                        continue
                    if not self._merged.feed(stream):
                        await stream.reset(ErrorCode.REFUSED_STREAM)
            finally:
                self._providers.discard(provider)
                self._merged.connections_open(len(self._providers))

    async def aclose(self, *, grace: float | None = None) -> None:
        if self._closing:
            return
        self._closing = True
        _SERVERS.pop(self.name, None)
        with anyio.CancelScope(shield=True):
            for provider in list(self._providers):
                await provider.aclose(grace=grace)
            self._merged.end(StreamClosed("server is closed"))


_SERVERS: dict[str, MemoryServer] = {}


class MemoryBackend(Backend):
    """In-process connections: ``serve("memory:NAME")`` makes a server that
    ``connect("memory:NAME")`` reaches from the same process, with no socket in between."""

    name = "memory"

    def _settings(self, options: BackendOptions | None) -> MuxSettings:
        overrides = dict(options.settings) if options is not None else {}
        try:
            return MuxSettings(**overrides)
        except TypeError as exc:
            raise ConfigError(f"unknown memory backend setting: {exc}") from None

    def _name(self, address: str) -> str:
        parsed = Address.parse(address)
        if parsed.scheme != "memory":
            raise ConfigError(f"the memory backend takes memory:NAME addresses, not {address!r}")
        return parsed.path

    def connect(
        self, address: str, options: BackendOptions | None = None
    ) -> AbstractAsyncContextManager[StreamProvider]:
        return self._connect(self._name(address), self._settings(options))

    @asynccontextmanager
    async def _connect(self, name: str, settings: MuxSettings) -> AsyncIterator[StreamProvider]:
        server = _SERVERS.get(name)
        if server is None:
            raise ConnectionLost(f"nothing listens on memory:{name}")
        client = MemoryProvider(settings, initiator=True)
        remote = MemoryProvider(server.settings, initiator=False)
        client.peer, remote.peer = remote, client
        async with client:
            await server.adopt(remote)
            yield client

    def serve(
        self,
        address: str,
        options: BackendOptions | None = None,
        handler: Handler | None = None,
    ) -> AbstractAsyncContextManager[StreamServer]:
        return self._serve(self._name(address), self._settings(options), handler)

    @asynccontextmanager
    async def _serve(
        self, name: str, settings: MuxSettings, handler: Handler | None
    ) -> AsyncIterator[StreamServer]:
        if name in _SERVERS:
            raise ConfigError(f"memory:{name} is already served in this process")
        server = MemoryServer(name, settings, handler)
        _SERVERS[name] = server
        try:
            async with anyio.create_task_group() as group:
                server._task_group = group
                try:
                    yield server
                finally:
                    await server.aclose()
                    group.cancel_scope.cancel()
        finally:
            _SERVERS.pop(name, None)


#: the memory backend, as :func:`streams.backends.get_backend` finds it
BACKEND = MemoryBackend()
