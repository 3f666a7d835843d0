"""Connected HTTP/2 provider pairs over real loopback sockets, and throwaway certificates."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from streams.backends.http2 import Http2Provider, Http2Settings
from streams.backends.http2.backend import check_alpn
from streams.testing import ProviderPair
from tests.certificates import Certificates


async def _socket_pair() -> tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]:
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    listener = multi.listeners[0]
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    accepted: list[anyio.abc.SocketStream] = []
    async with listener:

        async def accept() -> None:
            accepted.append(await listener.accept())

        async with anyio.create_task_group() as group:
            group.start_soon(accept)
            dialled = await anyio.connect_tcp("127.0.0.1", port)
    return dialled, accepted[0]


@asynccontextmanager
async def http2_pair(
    settings: Http2Settings | None = None,
    *,
    certificates: Certificates | None = None,
) -> AsyncIterator[ProviderPair]:
    """Two HTTP/2 providers joined by a loopback TCP connection (TLS with *certificates*)."""
    client_stream: anyio.abc.ByteStream
    server_stream: anyio.abc.ByteStream
    client_stream, server_stream = await _socket_pair()
    if certificates is not None:
        client_context = ssl.create_default_context(cafile=str(certificates.ca))
        client_context.set_alpn_protocols(["h2"])
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(str(certificates.cert), str(certificates.key))
        server_context.set_alpn_protocols(["h2"])
        wrapped: list[anyio.abc.ByteStream] = []

        async def wrap_server() -> None:
            wrapped.append(
                await TLSStream.wrap(
                    server_stream,
                    server_side=True,
                    ssl_context=server_context,
                    standard_compatible=False,
                )
            )

        async with anyio.create_task_group() as group:
            group.start_soon(wrap_server)
            client_stream = await TLSStream.wrap(
                client_stream,
                hostname="127.0.0.1",
                ssl_context=client_context,
                standard_compatible=False,
            )
        server_stream = wrapped[0]
        check_alpn(client_stream)
        check_alpn(server_stream)
    client = Http2Provider(client_stream, client=True, settings=settings)
    server = Http2Provider(server_stream, client=False, settings=settings)
    async with server, client:

        async def break_connection() -> None:
            # both directions die at once, as when the network goes away
            raw = client_stream.extra(anyio.abc.SocketAttribute.raw_socket)
            # uvloop's socket stand-in has no shutdown() and says so with a TypeError
            with contextlib.suppress(OSError, TypeError):
                raw.shutdown(socket.SHUT_RDWR)
            await anyio.aclose_forcefully(client_stream)

        yield ProviderPair(client=client, server=server, break_connection=break_connection)


class RawPeer:
    """The far end of a connection driven by hand: an h2 state machine on a socket, so a
    test can send exactly the frames it wants (including broken ones)."""

    def __init__(self, stream: anyio.abc.ByteStream, connection: Any) -> None:
        self.stream = stream
        self.conn = connection
        self.events: list[Any] = []

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send(data)

    async def send_raw(self, data: bytes) -> None:
        await self.flush()
        await self.stream.send(data)

    async def until(self, predicate: Callable[[list[Any]], bool]) -> None:
        """Read and collect events until *predicate* holds for everything collected."""
        with anyio.fail_after(5):
            while not predicate(self.events):
                data = await self.stream.receive(65536)
                self.events.extend(self.conn.receive_data(data))
                await self.flush()

    def count(self, kind: type) -> int:
        return sum(isinstance(event, kind) for event in self.events)


@asynccontextmanager
async def raw_pair(
    *,
    our_side_is_client: bool,
    settings: Http2Settings | None = None,
    peer_settings: dict[int, int] | None = None,
    send_preface: bool = True,
) -> AsyncIterator[tuple[Http2Provider, RawPeer]]:
    """Our provider on one end of a loopback connection, a :class:`RawPeer` on the other."""
    from h2.config import H2Configuration
    from h2.settings import Settings

    from streams.backends.http2._codec import GracefulH2Connection

    ours, theirs = await _socket_pair()
    config = H2Configuration(client_side=not our_side_is_client, header_encoding="utf-8")
    connection = GracefulH2Connection(config=config)
    if peer_settings:
        connection.local_settings = Settings(
            client=not our_side_is_client, initial_values=peer_settings
        )
    peer = RawPeer(theirs, connection)
    if send_preface:
        connection.initiate_connection()
        await peer.flush()
    # the hand-driven peer rarely finishes its streams: do not wait long for them
    settings = settings if settings is not None else Http2Settings(close_grace=0.2)
    provider = Http2Provider(ours, client=our_side_is_client, settings=settings)
    async with theirs, provider:
        yield provider, peer
