"""``Listener.serve`` hands streams to handler tasks that finished their last stream instead
of starting a task per stream; these are the guarantees a task per stream gave, kept."""

import contextvars

import anyio
import anyio.abc
import pytest

from streams import StreamProvider
from streams._core.mux import MuxSettings
from streams.backends import memory
from streams.testing import read_all

pytestmark = pytest.mark.anyio

QUICK = MuxSettings(close_grace=0.1)
request_id: contextvars.ContextVar[int] = contextvars.ContextVar("request_id")


async def _exchange(client: StreamProvider, payload: bytes) -> bytes:
    stream = await client.open_stream()
    async with stream:
        await stream.send(payload)
        await stream.send_eof()
        return await read_all(stream)


async def test_sequential_streams_reuse_handler_tasks() -> None:
    tasks: set[int] = set()

    async def handler(stream: anyio.abc.ByteStream) -> None:
        tasks.add(anyio.get_current_task().id)
        await stream.send(await read_all(stream))  # type: ignore[arg-type]
        await stream.send_eof()  # type: ignore[attr-defined]

    with anyio.fail_after(10):
        async with memory.pair(QUICK) as (client, server):
            async with anyio.create_task_group() as group:
                group.start_soon(server.listen().serve, handler)
                for number in range(20):
                    assert await _exchange(client, b"%d" % number) == b"%d" % number
                group.cancel_scope.cancel()
    assert len(tasks) < 5


async def test_a_handler_never_sees_another_handlers_context() -> None:
    seen: list[int | None] = []

    async def handler(stream: anyio.abc.ByteStream) -> None:
        seen.append(request_id.get(None))
        request_id.set(len(seen))
        await read_all(stream)  # type: ignore[arg-type]
        await stream.send_eof()  # type: ignore[attr-defined]

    with anyio.fail_after(10):
        async with memory.pair(QUICK) as (client, server):
            async with anyio.create_task_group() as group:
                group.start_soon(server.listen().serve, handler)
                for _ in range(5):
                    await _exchange(client, b"x")
                group.cancel_scope.cancel()
    assert seen == [None] * 5


async def test_many_concurrent_streams_each_get_a_handler() -> None:
    async def handler(stream: anyio.abc.ByteStream) -> None:
        await stream.send(await read_all(stream))  # type: ignore[arg-type]
        await stream.send_eof()  # type: ignore[attr-defined]

    results: dict[int, bytes] = {}

    async def one(number: int) -> None:
        results[number] = await _exchange(client, b"%d" % number)

    with anyio.fail_after(10):
        async with memory.pair(QUICK) as (client, server):
            async with anyio.create_task_group() as group:
                group.start_soon(server.listen().serve, handler)
                for _ in range(3):  # later rounds find idle tasks waiting
                    async with anyio.create_task_group() as clients:
                        for number in range(50):
                            clients.start_soon(one, number)
                    assert results == {number: b"%d" % number for number in range(50)}
                    results.clear()
                group.cancel_scope.cancel()


@pytest.mark.parametrize("own_group", [True, False])
async def test_serve_returns_when_the_listener_closes_with_idle_tasks(own_group: bool) -> None:
    async def handler(stream: anyio.abc.ByteStream) -> None:
        await read_all(stream)  # type: ignore[arg-type]
        await stream.send_eof()  # type: ignore[attr-defined]

    with anyio.fail_after(10):
        async with memory.pair(QUICK) as (client, server):
            listener = server.listen()
            async with anyio.create_task_group() as group:
                served = anyio.Event()

                async def serve() -> None:
                    await listener.serve(handler, None if own_group else group)
                    served.set()

                group.start_soon(serve)
                for _ in range(3):
                    await _exchange(client, b"x")
                await listener.aclose()
                await served.wait()
            # the group ends, so no idle task is left waiting in it


async def test_an_error_in_a_reused_handler_task_ends_serve() -> None:
    calls = 0

    async def handler(stream: anyio.abc.ByteStream) -> None:
        nonlocal calls
        calls += 1
        await read_all(stream)  # type: ignore[arg-type]
        await stream.send_eof()  # type: ignore[attr-defined]
        if calls == 3:
            raise LookupError("third")

    with anyio.fail_after(10):
        async with memory.pair(QUICK) as (client, server):
            with pytest.RaisesGroup(LookupError, flatten_subgroups=True):
                async with anyio.create_task_group() as group:
                    group.start_soon(server.listen().serve, handler)
                    for _ in range(3):
                        await _exchange(client, b"x")
                    await anyio.sleep(5)


async def test_a_servers_idle_handler_tasks_end_with_its_last_connection() -> None:
    from streams.backends.framer import BACKEND as FRAMER

    def idle_workers() -> int:
        return sum(1 for task in anyio.get_running_tasks() if task.name.endswith(".work"))

    async def handler(stream: anyio.abc.ByteStream) -> None:
        await stream.send(await read_all(stream))  # type: ignore[arg-type]
        await stream.send_eof()  # type: ignore[attr-defined]

    with anyio.fail_after(10):
        async with FRAMER.serve("127.0.0.1:0") as server, anyio.create_task_group() as group:
            group.start_soon(server.listener.serve, handler)
            async with FRAMER.connect(server.address) as client:
                async with anyio.create_task_group() as clients:
                    for number in range(8):
                        clients.start_soon(_exchange, client, b"%d" % number)
                await anyio.wait_all_tasks_blocked()
                assert idle_workers() > 0  # kept for the next streams of this connection
            while server.connections:
                await anyio.sleep(0.01)
            await anyio.wait_all_tasks_blocked()
            assert idle_workers() == 0
            group.cancel_scope.cancel()
