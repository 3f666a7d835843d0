"""Shared helpers of the SPDY tests: connected provider pairs over TCP and TLS, and
throwaway certificates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from streams._core.transport import set_no_delay
from streams.backends.spdy import SpdyProvider, SpdySettings
from streams.testing import ProviderPair
from tests.certificates import Certificates


async def socket_pair(
    certificates: Certificates | None = None,
) -> tuple[anyio.abc.ByteStream, anyio.abc.ByteStream]:
    """Two ends of a loopback TCP connection, wrapped in TLS when *certificates* are given."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client_raw = await anyio.connect_tcp("127.0.0.1", port)
        server_raw = await listener.listeners[0].accept()
    set_no_delay(client_raw)
    set_no_delay(server_raw)
    if certificates is None:
        return client_raw, server_raw
    results: dict[str, anyio.abc.ByteStream] = {}

    async def wrap_server() -> None:
        results["server"] = await TLSStream.wrap(
            server_raw,
            server_side=True,
            ssl_context=certificates.server_context(),
            standard_compatible=False,
        )

    async with anyio.create_task_group() as group:
        group.start_soon(wrap_server)
        results["client"] = await TLSStream.wrap(
            client_raw,
            hostname="localhost",
            ssl_context=certificates.client_context(),
            standard_compatible=False,
        )
    return results["client"], results["server"]


@asynccontextmanager
async def spdy_pair(
    certificates: Certificates | None = None,
    settings: SpdySettings | None = None,
    server_settings: SpdySettings | None = None,
) -> AsyncIterator[ProviderPair]:
    """Two SPDY providers on a loopback connection."""
    client_stream, server_stream = await socket_pair(certificates)
    client = SpdyProvider(client_stream, client=True, settings=settings)
    server = SpdyProvider(server_stream, client=False, settings=server_settings or settings)

    async def break_connection() -> None:
        await anyio.aclose_forcefully(client_stream)

    async with client, server:
        yield ProviderPair(client=client, server=server, break_connection=break_connection)
