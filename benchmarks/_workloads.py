"""Workloads over any pair of providers, so that a wrapper or a backend is measured with
exactly the loop its baseline runs."""

from __future__ import annotations

import contextlib
import socket

import anyio
import anyio.abc

from streams import Listener, StreamProvider

from ._common import Stopwatch

MESSAGE = b"m" * 64


async def _echo(stream: anyio.abc.ByteStream) -> None:
    async with stream:
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                await stream.send(await stream.receive())
        await stream.send_eof()


async def open_echo_close(
    client: StreamProvider, listener: Listener, rounds: int, *, wait_accept: bool = True
) -> float:
    """Streams per second: open, echo 64 bytes, close, one after another; *listener* is
    where the opened streams arrive."""
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, _echo)
        with Stopwatch() as watch:
            for _ in range(rounds):
                stream = await client.open_stream(wait_accept=wait_accept)
                await stream.send(MESSAGE)
                await stream.send_eof()
                received = b""
                with contextlib.suppress(anyio.EndOfStream):
                    while True:
                        received += await stream.receive()
                assert received == MESSAGE
                await stream.aclose()
        group.cancel_scope.cancel()
    return rounds / watch.seconds


async def bulk(
    client: StreamProvider, listener: Listener, total: int, chunk: int = 1024 * 1024
) -> float:
    """MB/s through one stream, *total* bytes in *chunk*-sized sends."""
    block = b"b" * chunk
    received = 0
    with Stopwatch() as watch:
        stream = await client.open_stream()
        accepted = await listener.accept()

        async def send() -> None:
            for _ in range(total // chunk):
                await stream.send(block)
            await stream.send_eof()

        async with anyio.create_task_group() as group:
            group.start_soon(send)
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    received += len(await accepted.receive(chunk))
    assert received == total // chunk * chunk
    await stream.aclose()
    await accepted.aclose()
    return received / watch.seconds / 1e6


async def tcp_pair() -> tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]:
    """Two ends of a loopback TCP connection with Nagle off, as the backends have it."""
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    listener = multi.listeners[0]
    async with listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client = await anyio.connect_tcp("127.0.0.1", port)
        server = await listener.accept()  # type: ignore[attr-defined]
    for end in (client, server):
        end.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
    return client, server


async def raw_bulk(read_size: int, total: int, chunk: int = 1024 * 1024) -> float:
    """MB/s of raw anyio TCP: *total* bytes in *chunk* sends, read *read_size* at a time."""
    client, server = await tcp_pair()
    block = b"b" * chunk

    async def send() -> None:
        for _ in range(total // chunk):
            await client.send(block)
        await client.send_eof()

    received = 0
    with Stopwatch() as watch:
        async with anyio.create_task_group() as group:
            group.start_soon(send)
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    received += len(await server.receive(read_size))
    assert received == total // chunk * chunk
    await client.aclose()
    await server.aclose()
    return received / watch.seconds / 1e6


async def raw_ping_pong(rounds: int) -> float:
    """Round trips per second of 64 bytes over raw anyio TCP."""
    client, server = await tcp_pair()

    async def echo() -> None:
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                await server.send(await server.receive())

    async with anyio.create_task_group() as group:
        group.start_soon(echo)
        with Stopwatch() as watch:
            for _ in range(rounds):
                await client.send(MESSAGE)
                received = b""
                while len(received) < len(MESSAGE):
                    received += await client.receive()
        await client.send_eof()
    await client.aclose()
    await server.aclose()
    return rounds / watch.seconds
