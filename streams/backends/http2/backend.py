"""Dialling and serving HTTP/2: h2c with prior knowledge over TCP or Unix sockets, and
TLS with ALPN ``h2``."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute

from ..._core.abc import Handler, StreamProvider
from ..._core.backend import Backend, BackendOptions
from ..._core.errors import ConfigError, ConnectionLost
from ..._core.server import ConnectionServer, StreamServer
from ..._core.transport import (
    Address,
    TLSConfig,
    connect_byte_stream,
    listen_byte_streams,
    local_port,
)
from .driver import Http2Provider
from .settings import Http2Settings

__all__ = ["Http2Backend", "check_alpn", "settings_from_options"]

ALPN = "h2"


def settings_from_options(options: BackendOptions | None) -> Http2Settings:
    """The :class:`Http2Settings` named in ``options.settings``.

    :raises ~streams.ConfigError: for an unknown or invalid setting
    """
    overrides = dict(options.settings) if options is not None else {}
    try:
        return Http2Settings(**overrides)
    except TypeError as exc:
        raise ConfigError(f"unknown http2 backend setting: {exc}") from None


def _with_alpn(tls: TLSConfig) -> TLSConfig:
    return tls if tls.alpn else dataclasses.replace(tls, alpn=(ALPN,))


def check_alpn(stream: anyio.abc.ByteStream) -> None:
    """Make sure a TLS connection negotiated ``h2``.

    :raises ~streams.ConnectionLost: if the peer did not agree to HTTP/2
    """
    try:
        protocol = stream.extra(TLSAttribute.alpn_protocol)
    except anyio.TypedAttributeLookupError:
        return
    if protocol != ALPN:
        raise ConnectionLost(
            f"the TLS peer did not negotiate HTTP/2 with ALPN (it chose {protocol!r}, not 'h2')"
        )


class Http2Backend(Backend):
    """HTTP/2 on h2: ``connect("host:port")`` dials h2c with prior knowledge, or TLS with
    ALPN ``h2`` when ``options.tls`` is set; ``serve`` accepts either likewise."""

    name = "http2"

    def connect(
        self, address: str, options: BackendOptions | None = None
    ) -> AbstractAsyncContextManager[StreamProvider]:
        return self._connect(address, options or BackendOptions())

    @asynccontextmanager
    async def _connect(
        self, address: str, options: BackendOptions
    ) -> AsyncIterator[StreamProvider]:
        settings = settings_from_options(options)
        parsed = Address.parse(address)
        tls = _with_alpn(options.tls) if options.tls is not None else None
        context = tls.client_context() if tls is not None else None
        server_name = tls.server_name if tls is not None else None
        stream = await connect_byte_stream(
            parsed,
            ssl_context=context,
            server_hostname=server_name,
            connect_timeout=options.connect_timeout,
        )
        try:
            check_alpn(stream)
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
        authority = str(parsed) if parsed.scheme == "tcp" else "localhost"
        if server_name and parsed.scheme == "tcp":
            authority = f"{server_name}:{parsed.port}"
        provider = Http2Provider(
            stream,
            client=True,
            settings=settings,
            scheme="https" if tls is not None else "http",
            authority=authority,
        )
        async with provider:
            yield provider

    def serve(
        self,
        address: str,
        options: BackendOptions | None = None,
        handler: Handler | None = None,
    ) -> AbstractAsyncContextManager[StreamServer]:
        return self._serve(address, options or BackendOptions(), handler)

    @asynccontextmanager
    async def _serve(
        self, address: str, options: BackendOptions, handler: Handler | None
    ) -> AsyncIterator[StreamServer]:
        settings = settings_from_options(options)
        parsed = Address.parse(address)
        tls = _with_alpn(options.tls) if options.tls is not None else None
        context = tls.server_context() if tls is not None else None
        listener = await listen_byte_streams(parsed, ssl_context=context)
        port = local_port(listener)
        if parsed.scheme == "tcp" and port is not None:
            shown = str(dataclasses.replace(parsed, port=port))
        else:
            shown = str(parsed)

        @asynccontextmanager
        async def run(stream: anyio.abc.ByteStream) -> AsyncIterator[StreamProvider]:
            check_alpn(stream)
            async with Http2Provider(stream, client=False, settings=settings) as provider:
                yield provider

        server = ConnectionServer(
            listener, run, handler, address=shown, backlog=settings.accept_backlog
        )
        async with server:
            yield server
