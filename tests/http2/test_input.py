"""How the HTTP/2 driver reads: from the event loop's callbacks on asyncio TCP, from a
reader task elsewhere (trio, TLS), and what each mode does with a burst, a failure of
its own and the peer's end."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import anyio.abc
import pytest

from streams import ConnectionLost, ErrorCode, ProtocolError
from streams.backends.http2 import Http2Settings
from streams.testing import read_all
from tests.certificates import make_certificates
from tests.http2.helpers import http2_pair

pytestmark = pytest.mark.anyio


async def test_reads_from_callbacks_on_asyncio_tcp_only(anyio_backend: str) -> None:
    with anyio.fail_after(10):
        async with http2_pair() as pair:
            await pair.client.ping()
            for provider in (pair.client, pair.server):
                assert provider.reads_from_callbacks is (anyio_backend == "asyncio")


async def test_tls_is_read_by_a_task(tmp_path: Path) -> None:
    with anyio.fail_after(10):
        async with http2_pair(certificates=make_certificates(tmp_path)) as pair:
            await pair.client.ping()
            assert not pair.client.reads_from_callbacks
            assert not pair.server.reads_from_callbacks


async def test_a_burst_of_opens_is_not_a_flood_of_answers() -> None:
    """Many streams opened at once queue many HEADERS while the writer's first send is
    still under way (anyio's send starts with a checkpoint): that is not a peer that does
    not read, and must not trip ``max_queued_control_frames``."""
    settings = Http2Settings(max_queued_control_frames=20)
    count = 300
    with anyio.fail_after(20):
        async with http2_pair(settings) as pair:
            listener = pair.server.listen()
            echoed: list[bytes] = []

            async def echo() -> None:
                for _ in range(count):
                    stream = await listener.accept()
                    async with stream:
                        await stream.send(await read_all(stream))

            async def client(index: int) -> None:
                async with await pair.client.open_stream({"x-index": str(index)}) as stream:
                    await stream.send(b"%d" % index)
                    await stream.send_eof()
                    echoed.append(await read_all(stream))

            async with anyio.create_task_group() as group:
                group.start_soon(echo)
                for index in range(count):
                    group.start_soon(client, index)
            assert sorted(echoed) == sorted(b"%d" % index for index in range(count))
            assert pair.client.failure is None
            assert pair.server.failure is None


async def test_a_bug_in_handling_input_fails_the_connection_not_the_caller() -> None:
    with anyio.fail_after(10):
        async with http2_pair() as pair:
            listener = pair.server.listen()
            stream = await pair.client.open_stream()
            await listener.accept()

            def broken(event: object) -> None:
                raise RuntimeError("a bug")

            pair.client._handle = broken  # type: ignore[method-assign]
            pair.server._send_ping(b"12345678")
            with pytest.raises(ProtocolError) as caught:
                await stream.receive()
            assert caught.value.code == ErrorCode.INTERNAL_ERROR
            assert isinstance(caught.value.__cause__, RuntimeError)


async def test_the_peers_close_fails_open_streams() -> None:
    with anyio.fail_after(10):
        async with http2_pair() as pair:
            listener = pair.server.listen()
            await pair.client.open_stream()
            accepted = await listener.accept()
            await pair.break_connection()
            # a cut stream is an error, never a clean end of file
            with pytest.raises(ConnectionLost):
                await accepted.receive()


# uvloop is a test dependency everywhere it exists (not on Windows); where it is declared
# and missing, the backend fails to start the loop, which is what a missing dependency
# should do
@pytest.mark.skipif(sys.platform == "win32", reason="uvloop does not run on Windows")
@pytest.mark.parametrize("anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}))])
async def test_uvloop_reads_from_callbacks_too() -> None:
    """uvloop's transports take the same protocol switch: streams, credit for a transfer
    larger than the windows, and the peer's close all work from the callbacks."""
    payload = bytes(range(256)) * 4096  # 1 MiB: four times the stream window
    with anyio.fail_after(20):
        async with http2_pair() as pair:
            listener = pair.server.listen()
            for _ in range(20):
                stream = await pair.client.open_stream()
                accepted = await listener.accept()
                async with anyio.create_task_group() as group:
                    group.start_soon(stream.send, payload)
                    assert len(await read_all_of(accepted, len(payload))) == len(payload)
                await stream.aclose()
                await accepted.aclose()
            assert pair.client.reads_from_callbacks
            assert pair.server.reads_from_callbacks
            await pair.client.open_stream()
            accepted = await listener.accept()
            await pair.break_connection()
            with pytest.raises(ConnectionLost):
                await accepted.receive()


async def read_all_of(stream: anyio.abc.ByteReceiveStream, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        received += await stream.receive()
    return bytes(received)
