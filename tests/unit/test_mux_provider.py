"""Behaviour of the shared provider machinery beyond the conformance suite, on the memory
backend."""

import anyio
import pytest

from streams import ConfigError, OpenTimeout, StreamRejected
from streams._core.mux import MuxSettings
from streams.backends import memory
from streams.testing import read_all

pytestmark = pytest.mark.anyio

# streams left open at the end of a test would hold the close for the default grace
QUICK = MuxSettings(close_grace=0.1)


async def test_streams_opened_before_listen_wait_for_the_listener() -> None:
    with anyio.fail_after(5):
        async with memory.pair(QUICK) as (client, server):
            stream = await client.open_stream({"early": "1"}, wait_accept=False)
            await stream.send(b"hello")
            await stream.send_eof()
            listener = server.listen()
            accepted = await listener.accept()
            assert accepted.headers["early"] == "1"
            assert await read_all(accepted) == b"hello"
            assert (await stream.accepted()) == accepted.response_headers


async def test_backlog_overflow_is_refused_retryably() -> None:
    settings = MuxSettings(accept_backlog=2, close_grace=0.1)
    with anyio.fail_after(5):
        async with memory.pair(settings) as (client, server):
            server.listen()
            await client.open_stream()
            await client.open_stream()
            with pytest.raises(StreamRejected) as caught:
                await client.open_stream()
            assert caught.value.retryable


async def test_too_many_incoming_streams_are_refused() -> None:
    settings = MuxSettings(max_incoming_streams=3, close_grace=0.1)
    with anyio.fail_after(5):
        async with memory.pair(settings) as (client, server):
            listener = server.listen()
            streams = [await client.open_stream() for _ in range(3)]
            with pytest.raises(StreamRejected):
                await client.open_stream()
            first = await listener.accept()
            await streams[0].aclose()
            await first.aclose()
            await client.open_stream()


async def test_open_timeout_fails_the_stream_not_the_connection() -> None:
    never = anyio.Event()

    async def undecided(headers: object) -> tuple[None, bool]:
        await never.wait()
        return None, True

    settings = MuxSettings(open_timeout=0.2, close_grace=0.1)
    with anyio.fail_after(5):
        async with memory.pair(settings) as (client, server):
            server.listen(undecided)
            with pytest.raises(OpenTimeout):
                await client.open_stream()
            assert not client.is_closing
            await client.ping()


async def test_one_listener_at_a_time() -> None:
    async with memory.pair() as (_client, server):
        listener = server.listen()
        with pytest.raises(anyio.BusyResourceError):
            server.listen()
        await listener.aclose()
        server.listen()


async def test_listener_iteration_ends_when_the_provider_closes() -> None:
    with anyio.fail_after(5):
        async with memory.pair() as (client, server):
            listener = server.listen()
            seen = []

            async def consume() -> None:
                async for stream in listener:
                    seen.append(stream.headers["n"])
                    await stream.aclose()

            async with anyio.create_task_group() as group:
                group.start_soon(consume)
                for index in range(3):
                    stream = await client.open_stream({"n": str(index)})
                    await stream.aclose()
                await server.aclose()
            assert seen == ["0", "1", "2"]


async def test_handler_result_of_the_wrong_shape_rejects() -> None:
    with anyio.fail_after(5):
        async with memory.pair() as (client, server):
            listener = server.listen(lambda headers: "yes")  # type: ignore[arg-type,return-value]
            with pytest.raises(StreamRejected):
                await client.open_stream()
            with pytest.raises(TypeError, match="must return"):
                await listener.accept()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("receive_window", 10),
        ("max_receive_window", 1024),
        ("max_frame_size", 1),
        ("accept_backlog", 0),
        ("open_timeout", -1.0),
        ("close_grace", -1.0),
    ],
)
def test_settings_validate_themselves(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        MuxSettings(**{field: value})  # type: ignore[arg-type]
