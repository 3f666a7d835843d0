"""What the hot path's shortcuts must keep: open timeouts through the provider's single
watcher, a bounded queue of pending opens, and cancellation that loses nothing where
receive() and accept() no longer yield twice. On the memory backend."""

import anyio
import pytest

from streams import Headers, OpenTimeout
from streams._core.mux import MuxSettings
from streams.backends import memory
from streams.testing import read_all

pytestmark = pytest.mark.anyio


async def test_open_timeouts_one_after_another_and_answered_opens_in_between() -> None:
    hold = anyio.Event()

    async def decide(headers: Headers) -> tuple[None, bool]:
        if "x-hold" in headers:
            await hold.wait()
        return None, True

    settings = MuxSettings(open_timeout=0.2, close_grace=0.1)
    with anyio.fail_after(5):
        async with memory.pair(settings) as (client, server):
            server.listen(decide)
            for _ in range(2):
                started = anyio.current_time()
                with pytest.raises(OpenTimeout):
                    await client.open_stream({"x-hold": "1"})
                assert 0.15 < anyio.current_time() - started < 2
                answered = await client.open_stream()
                await answered.aclose()
            assert not client.is_closing
            hold.set()


async def test_pending_opens_do_not_keep_answered_streams() -> None:
    hold = anyio.Event()

    async def decide(headers: Headers) -> tuple[None, bool]:
        if "x-hold" in headers:
            await hold.wait()
        return None, True

    with anyio.fail_after(10):
        async with memory.pair(MuxSettings(close_grace=0.1)) as (client, server):
            listener = server.listen(decide)
            async with anyio.create_task_group() as group:
                # one open the peer does not answer, then many it answers at once
                group.start_soon(client.open_stream, {"x-hold": "1"})
                await anyio.sleep(0.01)
                for _ in range(500):
                    stream = await client.open_stream()
                    await stream.aclose()
                    await (await listener.accept()).aclose()
                # the queue keeps the pending open, not the 500 answered behind it
                assert len(client._opening) <= 64
                hold.set()


async def test_cancelled_receive_with_data_waiting_loses_nothing() -> None:
    with anyio.fail_after(5):
        async with memory.pair(MuxSettings(close_grace=0.1)) as (client, server):
            listener = server.listen()
            opened = await client.open_stream()
            accepted = await listener.accept()
            await opened.send(b"kept")
            await anyio.sleep(0.01)  # the data waits in the buffer: receive need not block
            with anyio.CancelScope() as scope:
                scope.cancel()
                await accepted.receive()
            assert scope.cancelled_caught
            await opened.send_eof()
            assert await read_all(accepted) == b"kept"
            await opened.aclose()
            await accepted.aclose()


async def test_cancelled_accept_with_a_stream_waiting_loses_nothing() -> None:
    with anyio.fail_after(5):
        async with memory.pair(MuxSettings(close_grace=0.1)) as (client, server):
            listener = server.listen()
            opened = await client.open_stream()
            with anyio.CancelScope() as scope:
                scope.cancel()
                await listener.accept()
            assert scope.cancelled_caught
            accepted = await listener.accept()
            assert accepted.stream_id == opened.stream_id
            await opened.aclose()
            await accepted.aclose()


async def test_cancelled_send_and_send_eof_in_a_cancelled_scope_do_nothing() -> None:
    """A non-blocking send or send_eof is still a cancel point: in a cancelled scope it
    raises before queueing anything, and the stream stays usable."""
    with anyio.fail_after(5):
        async with memory.pair(MuxSettings(close_grace=0.1)) as (client, server):
            listener = server.listen()
            opened = await client.open_stream()
            accepted = await listener.accept()
            with anyio.CancelScope() as scope:
                scope.cancel()
                await opened.send(b"lost")
            assert scope.cancelled_caught
            with anyio.CancelScope() as scope:
                scope.cancel()
                await opened.send_eof()
            assert scope.cancelled_caught
            await opened.send(b"kept")
            await opened.send_eof()
            assert await read_all(accepted) == b"kept"
            await opened.aclose()
            await accepted.aclose()


async def test_a_sending_loop_lets_other_tasks_run() -> None:
    """send() does not yield while it can queue at once, but the connection's bounded
    output makes a loop of sends wait, so a task that never awaits anything else still
    lets the others run."""
    with anyio.fail_after(10):
        async with memory.pair(MuxSettings(close_grace=0.1)) as (client, server):
            listener = server.listen()
            opened = await client.open_stream()
            accepted = await listener.accept()
            ticks = 0

            async def count_turns() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await anyio.lowlevel.checkpoint()

            async def drain() -> None:
                while await accepted.receive(1 << 20):
                    pass

            async with anyio.create_task_group() as group:
                group.start_soon(count_turns)
                group.start_soon(drain)
                for _ in range(2000):
                    await opened.send(b"x" * 16384)
                group.cancel_scope.cancel()
            assert ticks > 10
            await opened.aclose()
            await accepted.aclose()


async def test_a_shielded_send_inside_a_cancelled_scope_goes_through() -> None:
    with anyio.fail_after(5):
        async with memory.pair(MuxSettings(close_grace=0.1)) as (client, server):
            listener = server.listen()
            opened = await client.open_stream()
            accepted = await listener.accept()
            with anyio.CancelScope() as outer:
                outer.cancel()
                with anyio.CancelScope(shield=True):
                    await opened.send(b"shielded")
                    await opened.send_eof()
            assert await read_all(accepted) == b"shielded"
            await opened.aclose()
            await accepted.aclose()
