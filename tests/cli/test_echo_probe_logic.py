"""The echo server's rules and the probe's verification, in process over the memory
backend (the interop tests run the real commands against each network backend)."""

import anyio
import pytest

from streams import Headers, StreamRejected, StreamReset
from streams.backends import get_backend
from streams.cli.echo import echo_handler, echo_stream
from streams.cli.probe import probe
from streams.testing import read_all

pytestmark = pytest.mark.anyio


async def run_echo_and(name: str, body):  # type: ignore[no-untyped-def]
    backend = get_backend("memory")
    async with (
        backend.serve(f"memory:{name}", handler=echo_handler) as server,
        anyio.create_task_group() as group,
    ):
        group.start_soon(server.listener.serve, echo_stream, group)
        async with backend.connect(f"memory:{name}") as provider:
            await body(provider)
        group.cancel_scope.cancel()


async def test_probe_verifies_an_echo_server() -> None:
    async def body(provider):  # type: ignore[no-untyped-def]
        result = await probe(provider, streams=20, size=300_000, headers=Headers({"X-A": "b"}))
        assert result.ok, result.summary()
        assert result.verified == 20
        assert result.summary().startswith("probe: 20/20 streams verified")

    with anyio.fail_after(20):
        await run_echo_and("probe-ok", body)


async def test_echo_rejects_x_reject_and_echoes_headers() -> None:
    async def body(provider):  # type: ignore[no-untyped-def]
        with pytest.raises(StreamRejected):
            await provider.open_stream({"x-reject": "1"})
        stream = await provider.open_stream([("X-Multi", "1"), ("x-multi", "2")])
        assert stream.response_headers.getall("x-echo-x-multi") == ["1", "2"]
        await stream.send(b"abc")
        await stream.send_eof()
        assert await read_all(stream) == b"abc"
        await stream.aclose()

    with anyio.fail_after(10):
        await run_echo_and("echo-rules", body)


async def test_echo_resets_after_the_given_number_of_bytes() -> None:
    async def body(provider):  # type: ignore[no-untyped-def]
        stream = await provider.open_stream({"x-reset-after": "5"})
        await stream.send(b"0123456789")
        received = b""

        async def read_until_reset() -> None:
            nonlocal received
            while True:
                received += await stream.receive()

        with pytest.raises(StreamReset):
            await read_until_reset()
        assert received == b"01234"
        await stream.aclose()

    with anyio.fail_after(10):
        await run_echo_and("echo-reset", body)


async def test_probe_reports_a_broken_echo() -> None:
    backend = get_backend("memory")

    async def bad_echo(stream):  # type: ignore[no-untyped-def]
        async with stream:
            data = await read_all(stream)
            await stream.send(data[:-1] + b"!")

    with anyio.fail_after(10):
        async with (
            backend.serve("memory:bad", handler=echo_handler) as server,
            anyio.create_task_group() as group,
        ):
            group.start_soon(server.listener.serve, bad_echo, group)
            async with backend.connect("memory:bad") as provider:
                result = await probe(provider, streams=2, size=1000)
            group.cancel_scope.cancel()
    assert not result.ok
    assert "differs" in result.summary()
