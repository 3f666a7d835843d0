"""The conformance suite through the pool around the framer over TCP on loopback.

Skipped until ``streams.backends.framer`` is present (it is written on its own branch)."""

import contextlib
import socket
import struct

import anyio
import anyio.abc
import pytest

from streams import StreamProvider
from streams.testing import ConformanceOptions, ProviderConformance
from tests.pool.pairs import pool_pair

framer = pytest.importorskip("streams.backends.framer")


async def break_framer_link(provider: StreamProvider) -> None:
    """Reset the server-side connection's socket, as a dead network would."""
    transport: anyio.abc.ByteStream = provider._transport  # type: ignore[attr-defined]
    with contextlib.suppress(anyio.TypedAttributeLookupError, OSError):
        raw = transport.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await anyio.aclose_forcefully(transport)


class TestPoolOverFramerTCP(ProviderConformance):
    # a stalled stream holds its window plus what the sockets buffer on the way
    options = ConformanceOptions(max_buffered_per_stream=4 * 1024 * 1024)

    def provider_pair(self):  # type: ignore[no-untyped-def]
        return pool_pair(framer.BACKEND, "127.0.0.1:0", break_link=break_framer_link)
