"""A framer server (``BACKEND.serve``): the streams of every connection reach the server's
one listener in order, straight from the connection that accepted them, and beyond the
server's backlog they are refused, not lost."""

import anyio
import pytest

from streams import StreamReset
from streams._core.backend import BackendOptions
from streams.backends.framer import BACKEND
from streams.testing import read_all

pytestmark = pytest.mark.anyio


async def test_streams_reach_the_server_listener_in_order_and_overflow_is_refused() -> None:
    options = BackendOptions(settings={"accept_backlog": 2, "close_grace": 0.2})
    with anyio.fail_after(10):
        async with (
            BACKEND.serve("127.0.0.1:0", options) as server,
            BACKEND.connect(server.address, options) as client,
        ):
            opened = [await client.open_stream({"n": str(n)}) for n in range(3)]
            # two wait in the server's backlog; the third was accepted by its connection
            # and then refused by the full server
            for stream in opened[:2]:
                await stream.send(b"x")
            with pytest.raises(StreamReset):  # on the send or the read, as it arrives
                await opened[2].send(b"x")
                await read_all(opened[2])
            accepted = [await server.listener.accept() for _ in range(2)]
            assert [s.headers["n"] for s in accepted] == ["0", "1"]
            for stream in accepted:
                await stream.send(b"answer")
                await stream.aclose()
            for stream in opened[:2]:
                await stream.send_eof()
                assert await read_all(stream) == b"answer"
                await stream.aclose()
            await opened[2].aclose()
