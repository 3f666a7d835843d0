"""The framer's coalescing writer: fair turns for writers past the high-water mark."""

from __future__ import annotations

import anyio
import pytest

from streams._core.transport import CoalescingBuffer
from tests.framer.pairs import memory_byte_streams, socket_pair

pytestmark = pytest.mark.anyio

FRAME = 64 * 1024


async def test_writers_past_the_high_water_mark_take_turns() -> None:
    ours, theirs = memory_byte_streams()
    buffer = CoalescingBuffer(ours, high_water=2 * FRAME, turn_bytes=FRAME)
    order: list[int] = []

    async def writer(index: int) -> None:
        frame = bytes([index]) * FRAME
        for _ in range(20):
            buffer.write(frame)
            await buffer.drain()

    async def reader() -> None:
        data = b""
        while len(order) < 10 * 20:
            data += await theirs.receive(FRAME)
            while len(data) >= FRAME:
                order.append(data[0])
                data = data[FRAME:]

    with anyio.fail_after(20):
        async with ours, theirs, anyio.create_task_group() as group:
            group.start_soon(buffer.run, lambda error: None)
            group.start_soon(reader)
            async with anyio.create_task_group() as writers:
                for index in range(10):
                    writers.start_soon(writer, index)
            while len(order) < 200:
                await anyio.sleep(0.01)
            group.cancel_scope.cancel()
    first = order[:100]
    counts = [first.count(index) for index in range(10)]
    assert min(counts) >= 9, counts
    assert max(counts) <= 11, counts


async def test_discarding_keeps_the_rest_of_a_frame_begun_on_the_wire() -> None:
    # a frame larger than the socket buffers: a flush writes part of it (or, on asyncio,
    # hands it all to the transport), then a second frame is queued and discarded
    first = bytes(range(256)) * (16 * 1024)  # 4 MiB
    second = b"\xff" * FRAME
    client, server = await socket_pair()
    with anyio.fail_after(20):
        async with client, server, anyio.create_task_group() as group:
            buffer = CoalescingBuffer(client, high_water=8 * 1024 * 1024, turn_bytes=FRAME)
            buffer.write(first)
            buffer.flush()
            buffer.write(second)
            buffer.discard_queued()
            assert buffer.queued < len(first)
            group.start_soon(buffer.run, lambda error: None)
            received = bytearray()
            while len(received) < len(first):
                received += await server.receive(1024 * 1024)
            buffer.close()
            with anyio.move_on_after(0.2):
                received += await server.receive(1024 * 1024)
            group.cancel_scope.cancel()
    assert bytes(received) == first


async def test_a_flush_that_the_socket_refuses_leaves_the_queue_to_the_writer() -> None:
    # the queued frame was written with flush_follows (no wake-up of its own), and the
    # transport still holds a backlog when the flush comes: the writer must send it
    big = b"b" * (8 * 1024 * 1024)
    small = b"s" * 100
    client, server = await socket_pair()
    with anyio.fail_after(20):
        async with client, server, anyio.create_task_group() as group:
            buffer = CoalescingBuffer(client, high_water=16 * 1024 * 1024, turn_bytes=FRAME)
            group.start_soon(buffer.run, lambda error: None)
            buffer.write(big)
            buffer.flush()
            await anyio.wait_all_tasks_blocked()  # the writer's wake-up for it is spent
            buffer.flush_follows = True
            buffer.write(small)
            buffer.flush()
            received = bytearray()
            while len(received) < len(big) + len(small):
                received += await server.receive(1024 * 1024)
            group.cancel_scope.cancel()
    assert bytes(received) == big + small
