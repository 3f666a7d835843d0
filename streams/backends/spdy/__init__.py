"""The SPDY/3.1 backend, interoperable with docker/spdystream as Kubernetes uses it.

``connect``/``serve`` take ``HOST:PORT``, ``unix:PATH``, or ``http://HOST:PORT/PATH``
(``https://`` with TLS) to start SPDY with the HTTP/1.1 upgrade. See ``docs/spdy.md``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import anyio.abc

from ..._core.abc import Handler, StreamProvider
from ..._core.backend import Backend, BackendOptions
from ..._core.errors import ConfigError, LimitExceeded
from ..._core.limits import log_limit_exceeded
from ..._core.server import ConnectionServer, StreamServer
from ..._core.transport import (
    Address,
    connect_byte_stream,
    listen_byte_streams,
    local_port,
)
from ._guard import peer_name
from .driver import SpdyProvider, SpdySettings, SpdyStream
from .upgrade import HeadTooLarge, upgrade_client, upgrade_server

__all__ = ["BACKEND", "SpdyBackend", "SpdyProvider", "SpdySettings", "SpdyStream"]

#: seconds the HTTP/1.1 upgrade may take
UPGRADE_TIMEOUT = 10.0

logger = logging.getLogger("streams.spdy")


@dataclass(frozen=True, slots=True)
class _Target:
    address: Address
    upgrade: bool
    tls: bool
    host: str
    path: str


def _target(text: str) -> _Target:
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        if not parts.hostname:
            raise ConfigError(f"{text!r}: the host is missing")
        secure = parts.scheme == "https"
        try:
            port = parts.port if parts.port is not None else (443 if secure else 80)
        except ValueError:
            raise ConfigError(f"{text!r}: the port must be a number") from None
        address = Address("tcp", host=parts.hostname, port=port)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return _Target(address, True, secure, parts.netloc, path)
    address = Address.parse(text)
    return _Target(address, False, False, str(address), "/")


def settings_from(options: BackendOptions | None) -> SpdySettings:
    """The :class:`SpdySettings` that *options* describe.

    :raises ~streams.ConfigError: for an unknown or invalid setting
    """
    overrides = dict(options.settings) if options is not None else {}
    if options is not None and options.spdy_no_flow_control:
        overrides["no_flow_control"] = True
    try:
        return SpdySettings(**overrides)
    except TypeError as exc:
        raise ConfigError(f"unknown spdy setting: {exc}") from None


class SpdyBackend(Backend):
    """SPDY/3.1 over TCP, TLS and Unix sockets, optionally started by an HTTP/1.1 upgrade."""

    name = "spdy"

    def connect(
        self, address: str, options: BackendOptions | None = None
    ) -> AbstractAsyncContextManager[StreamProvider]:
        options = options or BackendOptions()
        return self._connect(_target(address), options, settings_from(options))

    @asynccontextmanager
    async def _connect(
        self, target: _Target, options: BackendOptions, settings: SpdySettings
    ) -> AsyncIterator[StreamProvider]:
        tls = options.tls
        if target.tls and tls is None:
            from ..._core.transport import TLSConfig

            tls = TLSConfig()
        context = tls.client_context() if tls is not None else None
        transport = await connect_byte_stream(
            target.address,
            ssl_context=context,
            server_hostname=tls.server_name if tls is not None else None,
            connect_timeout=options.connect_timeout,
        )
        try:
            if target.upgrade:
                with anyio.fail_after(options.connect_timeout):
                    transport = await upgrade_client(transport, host=target.host, path=target.path)
        except BaseException:
            await anyio.aclose_forcefully(transport)
            raise
        async with SpdyProvider(transport, client=True, settings=settings) as provider:
            yield provider

    def serve(
        self,
        address: str,
        options: BackendOptions | None = None,
        handler: Handler | None = None,
    ) -> AbstractAsyncContextManager[StreamServer]:
        options = options or BackendOptions()
        return self._serve(_target(address), options, settings_from(options), handler)

    @asynccontextmanager
    async def _serve(
        self,
        target: _Target,
        options: BackendOptions,
        settings: SpdySettings,
        handler: Handler | None,
    ) -> AsyncIterator[StreamServer]:
        tls = options.tls
        if target.tls and tls is None:
            raise ConfigError("an https:// server needs --tls-cert and --tls-key", path="tls")
        context = tls.server_context() if tls is not None else None
        listener = await listen_byte_streams(target.address, ssl_context=context)
        described = str(target.address)
        # anyio's TLSListener does not pass the socket's attributes on: ask the one inside
        port = local_port(listener) or local_port(getattr(listener, "listener", listener))
        if port is not None:
            described = str(Address("tcp", host=target.address.host, port=port))
        if target.upgrade:
            scheme = "https" if target.tls else "http"
            described = f"{scheme}://{described}{target.path}"

        @asynccontextmanager
        async def session(byte_stream: anyio.abc.ByteStream) -> AsyncIterator[StreamProvider]:
            transport = byte_stream
            if target.upgrade:
                try:
                    with anyio.fail_after(UPGRADE_TIMEOUT):
                        transport, _ = await upgrade_server(byte_stream)
                except HeadTooLarge as exc:
                    error = LimitExceeded(exc.limit, str(exc))
                    log_limit_exceeded(logger, error, peer_name(byte_stream))
                    raise
            async with SpdyProvider(transport, client=False, settings=settings) as provider:
                yield provider

        server = ConnectionServer(
            listener, session, handler, address=described, backlog=settings.accept_backlog
        )
        async with server:
            yield server


#: the SPDY/3.1 backend, as :func:`streams.backends.get_backend` finds it
BACKEND = SpdyBackend()
