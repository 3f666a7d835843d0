"""A reader slower than its sender holds at most the channel's window: asyncssh's own
window grants ignored the data it queued while reading was paused."""

from __future__ import annotations

import hashlib

import anyio
import anyio.lowlevel
import pytest

from streams.testing import read_all

from .helpers import Keys, ssh_pair

pytestmark = pytest.mark.anyio


async def test_a_long_transfer_to_a_slow_reader_stays_within_the_buffer(ssh_keys: Keys) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB
    blocks = 96
    with anyio.fail_after(60):
        # 96 MiB through a connection allowed to hold 4 MiB unread: only a window that
        # accounts for what asyncssh queues keeps it under that
        async with ssh_pair(ssh_keys, max_connection_buffer=4 << 20) as pair:
            listener = pair.server.listen()
            async with anyio.create_task_group() as group:
                sent = hashlib.sha256()

                async def send() -> None:
                    async with await pair.client.open_stream({"x-test": "bulk"}) as stream:
                        for _ in range(blocks):
                            await stream.send(block)
                            sent.update(block)
                        await stream.send_eof()
                        await read_all(stream)

                group.start_soon(send)
                accepted = await listener.accept()
                received = hashlib.sha256()
                total = 0
                while True:
                    try:
                        data = await accepted.receive(64 * 1024)
                    except anyio.EndOfStream:
                        break
                    received.update(data)
                    total += len(data)
                    await anyio.lowlevel.checkpoint()  # yields between small reads
                await accepted.send_eof()
                await accepted.aclose()
    assert total == blocks * len(block)
    assert received.digest() == sent.digest()
