"""Dialling and serving HTTP/2: h2c with prior knowledge over TCP or Unix sockets (a
server also accepts HTTP/1.1's ``Upgrade: h2c``), and TLS with ALPN ``h2``."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import anyio.abc
import h2.exceptions
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
from . import _codec_upgrade as _upgrade
from ._codec_upgrade import UpgradeRequest
from .driver import Http2Provider
from .settings import Http2Settings

__all__ = ["Http2Backend", "check_alpn", "negotiate_cleartext", "settings_from_options"]

ALPN = "h2"
#: seconds a cleartext client has to send its preface (or its upgrade request)
HANDSHAKE_TIMEOUT = 10.0


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


async def negotiate_cleartext(
    stream: anyio.abc.ByteStream, settings: Http2Settings
) -> tuple[bytes, UpgradeRequest | None]:
    """Read the start of a cleartext connection: HTTP/2 with prior knowledge, or an
    HTTP/1.1 request with ``Upgrade: h2c``, which is answered with ``101`` here.

    Returns the bytes to feed to HTTP/2 and the upgraded request, if there was one.

    :raises ~streams.ConnectionLost: if the client speaks neither (it is answered with an
        HTTP/1.1 error first), or is too slow
    """
    buffer = b""
    try:
        with anyio.fail_after(HANDSHAKE_TIMEOUT):
            while (kind := _upgrade.classify(buffer)) == "more":
                buffer += await stream.receive(65536)
            if kind == "h2":
                return buffer, None
            head, _, rest = buffer.partition(b"\r\n\r\n")
            request = _upgrade.parse_upgrade(head)
            if request.content_length > settings.receive_window:
                raise _upgrade.UpgradeError(413, "the body is too large to upgrade with")
            while len(rest) < request.content_length:
                rest += await stream.receive(65536)
            body, rest = rest[: request.content_length], rest[request.content_length :]
            await stream.send(_upgrade.SWITCHING_PROTOCOLS)
            return rest, dataclasses.replace(request, body=body)
    except _upgrade.UpgradeError as exc:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await stream.send(_upgrade.refusal(exc.status, str(exc)))
        raise ConnectionLost(f"not an HTTP/2 client: {exc}") from None
    except TimeoutError:
        raise ConnectionLost("the client sent no HTTP/2 preface in time") from None
    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
        raise ConnectionLost(f"the client went away before HTTP/2 started: {exc!r}") from None


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
            initial, upgrade = b"", None
            if tls is None:
                initial, upgrade = await negotiate_cleartext(stream, settings)
            else:
                check_alpn(stream)
            try:
                provider = Http2Provider(
                    stream, client=False, settings=settings, initial_data=initial, upgrade=upgrade
                )
            except h2.exceptions.H2Error as exc:
                # the client's HTTP2-Settings held a value HTTP/2 does not allow
                raise ConnectionLost(f"cannot start HTTP/2 with this client: {exc}") from exc
            async with provider:
                yield provider

        server = ConnectionServer(
            listener, run, handler, address=shown, backlog=settings.accept_backlog
        )
        async with server:
            yield server
