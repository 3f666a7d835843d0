"""The shortcuts past anyio's socket streams: frames queued by a task leave straight from
it when the socket takes them at once, and otherwise through the writer task, in order,
with the connection's backpressure intact; on asyncio, input is delivered from the event
loop, what anyio had read first, with its end and pausing kept."""

import socket

import anyio
import anyio.abc
import pytest
from anyio.streams.stapled import StapledByteStream

from streams._core.loop_io import take_over_reading
from streams._core.transport import CoalescingBuffer, direct_writer

pytestmark = pytest.mark.anyio


async def _tcp_pair() -> tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as multi:
        listener = multi.listeners[0]
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client = await anyio.connect_tcp("127.0.0.1", port)
        server = await listener.accept()  # type: ignore[attr-defined]
    return client, server


async def test_only_plain_sockets_of_anyio_get_a_direct_writer() -> None:
    client, server = await _tcp_pair()
    async with client, server:
        assert direct_writer(client) is not None
        assert direct_writer(server) is not None
        # a wrapper (TLS, a stapled pair, a guard) hides the socket's state: no shortcut
        assert direct_writer(StapledByteStream(client, server)) is None


async def test_flush_writes_in_order_and_stops_at_a_backlog() -> None:
    client, server = await _tcp_pair()
    raw = client.extra(anyio.abc.SocketAttribute.raw_socket)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    out = CoalescingBuffer(client, high_water=1 << 20, turn_bytes=64 * 1024)
    failures: list[BaseException] = []
    block = bytes(range(256)) * 1024  # 256 KiB
    total = 64 * len(block)
    received = bytearray()

    async def read_slowly() -> None:
        await anyio.sleep(0.2)  # let the socket fill first
        while len(received) < total:
            received.extend(await server.receive(1 << 20))

    with anyio.fail_after(20):
        async with client, server, anyio.create_task_group() as group:
            group.start_soon(out.run, failures.append)
            group.start_soon(read_slowly)
            # the socket fills: flush then stops at the backlog and leaves the rest to the
            # writer task, and the queue stays bounded; the bytes arrive in order
            for _ in range(64):
                out.write(block)
                out.flush()
                assert out.queued <= (1 << 20) + len(block)
                if out.must_wait:
                    await out.drain()
            while len(received) < total:
                await anyio.sleep(0.01)
            assert received == block * 64
            out.close()
    assert not failures


class _Collector:
    def __init__(self) -> None:
        self.data = bytearray()
        self.ends: list[BaseException | None] = []
        self.arrived = anyio.Event()

    def input_received(self, data: bytes) -> None:
        self.data += data
        self.arrived.set()

    def input_ended(self, error: BaseException | None) -> None:
        self.ends.append(error)
        self.arrived.set()

    async def wait(self) -> None:
        await self.arrived.wait()
        self.arrived = anyio.Event()


async def test_taken_over_input_keeps_order_pauses_and_ends(anyio_backend: str) -> None:
    client, server = await _tcp_pair()
    sink = _Collector()
    with anyio.fail_after(10):
        async with client, server:
            await client.send(b"early ")
            await anyio.sleep(0.05)  # anyio may have read it already: it comes first
            control = take_over_reading(server, sink)
            if anyio_backend != "asyncio":
                assert control is None  # trio's streams are read with receive()
                return
            assert control is not None
            await client.send(b"late")
            while bytes(sink.data) != b"early late":
                await sink.wait()
            control.pause()
            await client.send(b" held")
            await anyio.sleep(0.05)
            assert bytes(sink.data) == b"early late"
            control.resume()
            while bytes(sink.data) != b"early late held":
                await sink.wait()
            await server.send(b"writing still works")
            assert await client.receive() == b"writing still works"
            await client.send_eof()
            while not sink.ends:
                await sink.wait()
            assert sink.ends == [None]


async def test_socket_receiver_reads_ends_and_lets_others_run(anyio_backend: str) -> None:
    from streams._core.loop_io import socket_receiver

    client, server = await _tcp_pair()
    with anyio.fail_after(10):
        async with client, server:
            receive = socket_receiver(server)
            if anyio_backend != "trio":
                assert receive is None  # asyncio's streams are taken over instead
                return
            assert receive is not None
            ticks = 0

            async def count_turns() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await anyio.lowlevel.checkpoint()

            async with anyio.create_task_group() as group:
                group.start_soon(count_turns)
                group.start_soon(client.send, b"x" * (4 << 20))
                await anyio.sleep(0.05)
                received = 0
                while received < 4 << 20:
                    received += len(await receive(4096))  # data always waiting
                group.cancel_scope.cancel()
            assert ticks >= (4 << 20) // 4096 // 8 // 2
            await client.send_eof()
            with pytest.raises(anyio.EndOfStream):
                await receive(4096)
