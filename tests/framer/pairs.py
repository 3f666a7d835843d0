"""Connected framer providers over real sockets, for the tests."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from streams.backends.framer import FramerProvider, FramerSettings
from streams.testing import ProviderPair
from tests.certificates import Certificates

#: short grace so that streams a check leaves open do not slow every close; the
#: conformance suite opens 1000 streams at once, over the default limit of 256
TEST_SETTINGS = FramerSettings(close_grace=0.5, max_incoming_streams=1024)


async def abort(transport: anyio.abc.ByteStream) -> None:
    """Close *transport*'s socket with a TCP reset, as a dead network would."""
    with contextlib.suppress(anyio.TypedAttributeLookupError, OSError):
        raw = transport.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await anyio.aclose_forcefully(transport)


async def socket_pair(
    tls: Certificates | None = None, unix_path: Path | None = None
) -> tuple[anyio.abc.ByteStream, anyio.abc.ByteStream]:
    """A connected pair of byte streams: TCP on loopback, optionally TLS, or a Unix socket."""
    listener: anyio.abc.SocketListener
    if unix_path is not None:
        listener = await anyio.create_unix_listener(unix_path)
    else:
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        listener = multi.listeners[0]
    async with listener:
        accepted: list[anyio.abc.ByteStream] = []

        async def accept() -> None:
            stream: anyio.abc.ByteStream = await listener.accept()
            if tls is not None:
                stream = await TLSStream.wrap(
                    stream,
                    server_side=True,
                    ssl_context=tls.server_context(),
                    standard_compatible=False,
                )
            accepted.append(stream)

        async with anyio.create_task_group() as group:
            group.start_soon(accept)
            client: anyio.abc.ByteStream
            if unix_path is not None:
                client = await anyio.connect_unix(unix_path)
            else:
                port = listener.extra(anyio.abc.SocketAttribute.local_port)
                client = await anyio.connect_tcp("127.0.0.1", port)
                raw = client.extra(anyio.abc.SocketAttribute.raw_socket)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                client = await TLSStream.wrap(
                    client,
                    hostname="localhost",
                    ssl_context=tls.client_context(),
                    standard_compatible=False,
                )
    return client, accepted[0]


@contextlib.asynccontextmanager
async def framer_pair(
    settings: FramerSettings = TEST_SETTINGS,
    *,
    server_settings: FramerSettings | None = None,
    raw: bool = False,
    tls: Certificates | None = None,
    unix_path: Path | None = None,
) -> AsyncIterator[ProviderPair]:
    """Two framer providers on either end of a real socket."""
    client_stream, server_stream = await socket_pair(tls, unix_path)
    client = FramerProvider(client_stream, client=True, raw=raw, settings=settings)
    server = FramerProvider(
        server_stream, client=False, raw=raw, settings=server_settings or settings
    )

    async def break_connection() -> None:
        await abort(client_stream)

    async with client, server:
        yield ProviderPair(client=client, server=server, break_connection=break_connection)


class MemoryByteStream(anyio.abc.ByteStream):
    """One end of an in-memory byte stream pair built on anyio's memory object streams,
    with a small buffer so that a writer waits for its reader (real backpressure)."""

    def __init__(
        self,
        send: anyio.abc.ObjectSendStream[bytes],
        receive: anyio.abc.ObjectReceiveStream[bytes],
    ) -> None:
        self._send = send
        self._receive = receive
        self._leftover = b""

    async def send(self, item: bytes) -> None:
        try:
            await self._send.send(bytes(item))
        except anyio.BrokenResourceError:
            raise anyio.BrokenResourceError from None

    async def send_eof(self) -> None:
        await self._send.aclose()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._leftover:
            self._leftover = await self._receive.receive()
        data, self._leftover = self._leftover[:max_bytes], self._leftover[max_bytes:]
        return data

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


def memory_byte_streams() -> tuple[MemoryByteStream, MemoryByteStream]:
    """Two connected in-memory byte streams."""
    a_send, b_receive = anyio.create_memory_object_stream[bytes](4)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](4)
    return MemoryByteStream(a_send, a_receive), MemoryByteStream(b_send, b_receive)


@contextlib.asynccontextmanager
async def framer_memory_pair(
    settings: FramerSettings = TEST_SETTINGS,
) -> AsyncIterator[ProviderPair]:
    """Two framer providers joined by an in-memory byte stream, no socket at all."""
    client_stream, server_stream = memory_byte_streams()
    client = FramerProvider(client_stream, client=True, settings=settings)
    server = FramerProvider(server_stream, client=False, settings=settings)

    async def break_connection() -> None:
        await client_stream.aclose()
        await server_stream.aclose()

    async with client, server:
        yield ProviderPair(client=client, server=server, break_connection=break_connection)
