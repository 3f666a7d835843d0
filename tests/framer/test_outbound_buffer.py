"""A regression test for the shared OutboundBuffer, found by the framer's closes."""

import anyio
import pytest

from streams._core.transport import OutboundBuffer

pytestmark = pytest.mark.anyio


async def test_close_right_after_a_write_still_ends_the_writer() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](10)
    from anyio.streams.stapled import StapledObjectStream

    stream = StapledObjectStream(send, receive)
    buffer = OutboundBuffer(stream)  # type: ignore[arg-type]
    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            buffer.write(b"last frame")
            buffer.close()  # before the writer task ever ran
            group.start_soon(buffer.run, lambda error: None)
    assert receive.receive_nowait() == b"last frame"
    send.close()
    receive.close()
