"""Workloads over any pair of providers, so that a wrapper or a backend is measured with
exactly the loop its baseline runs."""

from __future__ import annotations

import contextlib

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
