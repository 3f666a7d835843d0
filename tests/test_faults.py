"""The fault-injection proxy does what the failover tests rely on."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from tests.faults import fault_proxy

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    async def echo(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                while True:
                    await stream.send(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, echo, group)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        group.cancel_scope.cancel()


async def exchange(port: int, data: bytes) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(data)
        received = b""
        while len(received) < len(data):
            received += await stream.receive()
        return received


async def test_passes_traffic_and_counts_connections() -> None:
    with anyio.fail_after(10):
        async with echo_server() as port, fault_proxy("127.0.0.1", port) as proxy:
            assert await exchange(proxy.port, b"hello") == b"hello"
            assert await exchange(proxy.port, b"again") == b"again"
            assert proxy.accepted == 2


async def test_refuse_and_accept_again() -> None:
    with anyio.fail_after(10):
        async with echo_server() as port, fault_proxy("127.0.0.1", port) as proxy:
            await proxy.refuse()
            with pytest.raises(OSError):
                await anyio.connect_tcp("127.0.0.1", proxy.port)
            await proxy.accept_again()
            assert await exchange(proxy.port, b"back") == b"back"


async def test_black_hole_never_answers() -> None:
    with anyio.fail_after(10):
        async with echo_server() as port, fault_proxy("127.0.0.1", port) as proxy:
            proxy.black_hole = True
            async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
                await stream.send(b"anyone?")
                with anyio.move_on_after(0.3) as scope:
                    await stream.receive()
                assert scope.cancelled_caught


async def test_reset_all_breaks_open_connections() -> None:
    with anyio.fail_after(10):
        async with (
            echo_server() as port,
            fault_proxy("127.0.0.1", port) as proxy,
            await anyio.connect_tcp("127.0.0.1", proxy.port) as stream,
        ):
            await stream.send(b"x")
            assert await stream.receive() == b"x"
            await proxy.reset_all()
            with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream, OSError)):
                for _ in range(100):
                    await stream.send(b"y")
                    await stream.receive()


async def test_cut_after_bytes_and_delay() -> None:
    with anyio.fail_after(10):
        async with echo_server() as port, fault_proxy("127.0.0.1", port) as proxy:
            proxy.cut_after = 3
            proxy.delay = 0.05
            async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
                started = anyio.current_time()
                await stream.send(b"abcdef")
                received = b""
                with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream, OSError)):
                    while True:
                        received += await stream.receive()
                assert received == b"abc"
                assert anyio.current_time() - started >= 0.05
