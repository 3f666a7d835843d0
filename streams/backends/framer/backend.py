"""The framer as a :class:`~streams._core.backend.Backend`: dialling and serving over TCP,
TLS and Unix sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.abc
from anyio.streams.tls import TLSListener

from ..._core.abc import Handler, StreamProvider
from ..._core.backend import Backend, BackendOptions
from ..._core.server import ConnectionServer, StreamServer
from ..._core.transport import (
    Address,
    connect_byte_stream,
    listen_byte_streams,
    local_port,
)
from .config import FramerSettings
from .driver import FramerProvider

__all__ = ["FramerBackend"]


class FramerBackend(Backend):
    """yamux framing with header blocks (or plain yamux with ``options.raw``)."""

    name = "framer"

    def connect(
        self, address: str, options: BackendOptions | None = None
    ) -> AbstractAsyncContextManager[StreamProvider]:
        """Dial *address* (``HOST:PORT`` or ``unix:PATH``) and run a framer connection.

        :raises ~streams.ConfigError: for a bad address or setting
        :raises ~streams.ConnectionLost: if the connection cannot be made
        """
        options = options or BackendOptions()
        settings = FramerSettings.from_mapping(options.settings)
        return self._connect(Address.parse(address), options, settings)

    @asynccontextmanager
    async def _connect(
        self, address: Address, options: BackendOptions, settings: FramerSettings
    ) -> AsyncIterator[StreamProvider]:
        tls = options.tls
        transport = await connect_byte_stream(
            address,
            ssl_context=tls.client_context() if tls is not None else None,
            server_hostname=tls.server_name if tls is not None else None,
            connect_timeout=options.connect_timeout,
        )
        provider = FramerProvider(transport, client=True, raw=options.raw, settings=settings)
        async with provider:
            yield provider

    def serve(
        self,
        address: str,
        options: BackendOptions | None = None,
        handler: Handler | None = None,
    ) -> AbstractAsyncContextManager[StreamServer]:
        """Listen on *address*; every connection runs a framer provider, and the streams
        their peers open arrive on ``server.listener``."""
        options = options or BackendOptions()
        settings = FramerSettings.from_mapping(options.settings)
        return self._serve(Address.parse(address), options, settings, handler)

    @asynccontextmanager
    async def _serve(
        self,
        address: Address,
        options: BackendOptions,
        settings: FramerSettings,
        handler: Handler | None,
    ) -> AsyncIterator[StreamServer]:
        tls = options.tls
        listener = await listen_byte_streams(
            address, ssl_context=tls.server_context() if tls is not None else None
        )
        # anyio's TLS listener hides the socket's attributes; the port is the inner one's
        port = local_port(listener.listener if isinstance(listener, TLSListener) else listener)
        where = str(Address("tcp", host=address.host, port=port)) if port else str(address)
        raw = options.raw

        def make_provider(stream: anyio.abc.ByteStream) -> FramerProvider:
            return FramerProvider(stream, client=False, raw=raw, settings=settings)

        server = ConnectionServer(
            listener, make_provider, handler, address=where, backlog=settings.accept_backlog
        )
        async with server:
            yield server
