"""What servers and tunnels of a topology do with their streams and connections: echo,
forward to an allowlisted TCP target, and carry a local TCP connection over a stream.

Copying keeps half-close in both directions, and turns an abrupt end on one side into an
abrupt end on the other (a stream reset, or a TCP reset), never into a clean close.
"""

from __future__ import annotations

import logging
import socket
import struct

import anyio
import anyio.abc

from .._core.abc import Stream, StreamProvider
from .._core.errors import ErrorCode
from .._core.headers import Headers
from .._core.transport import Address
from .model import ServerSpec

__all__ = ["serve_stream", "tunnel_connection"]

logger = logging.getLogger("streams.serving")

CHUNK = 64 * 1024


def abort_tcp(connection: anyio.abc.SocketStream) -> None:
    """Make the coming close a TCP reset, so the peer sees an error, not an end of file."""
    try:
        raw = connection.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (anyio.TypedAttributeLookupError, OSError):
        pass


async def _stream_to_tcp(stream: Stream, connection: anyio.abc.SocketStream) -> None:
    while True:
        try:
            data = await stream.receive(CHUNK)
        except anyio.EndOfStream:
            await connection.send_eof()
            return
        await connection.send(data)


async def _tcp_to_stream(connection: anyio.abc.SocketStream, stream: Stream) -> None:
    while True:
        try:
            data = await connection.receive(CHUNK)
        except anyio.EndOfStream:
            await stream.send_eof()
            return
        await stream.send(data)


async def splice(stream: Stream, connection: anyio.abc.SocketStream) -> None:
    """Copy both ways until both directions ended; an error on either side aborts both."""
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_stream_to_tcp, stream, connection)
            group.start_soon(_tcp_to_stream, connection, stream)
    except* (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as failure:
        logger.info("splice ended abruptly: %r", failure.exceptions[0])
        abort_tcp(connection)
        with anyio.CancelScope(shield=True):
            await stream.reset(ErrorCode.CONNECT_ERROR)
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
            await connection.aclose()


async def serve_stream(spec: ServerSpec, stream: Stream) -> None:
    """Serve one accepted stream as *spec* says (echo, or forward to its target)."""
    if spec.action == "echo":
        from ..cli.echo import echo_stream

        await echo_stream(stream)
        return
    target = spec.forward_targets[stream.headers[spec.forward_header]]
    address = Address.parse(target)
    try:
        connection = await anyio.connect_tcp(address.host, address.port)
    except OSError as exc:
        logger.warning("server %s: cannot reach %s: %s", spec.name, target, exc)
        await stream.reset(ErrorCode.CONNECT_ERROR)
        await stream.aclose()
        return
    await splice(stream, connection)


async def tunnel_connection(
    connection: anyio.abc.SocketStream, upstream: StreamProvider, headers: Headers
) -> None:
    """Carry one local TCP connection over a new stream of *upstream*."""
    try:
        stream = await upstream.open_stream(headers)
    except Exception as exc:
        logger.warning("tunnel: opening a stream failed: %s", exc)
        abort_tcp(connection)
        await connection.aclose()
        return
    await splice(stream, connection)
