"""Interop with the real docker/spdystream (Debian's moby/spdystream 0.2.0, built with
Debian's Go): its server against our client and its client against our server, plain and
over the HTTP/1.1 upgrade. The Go peer is ``tests/spdy/go/spdypeer``."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from streams import Headers, StreamProvider, StreamRejected, StreamReset
from streams._core.backend import BackendOptions
from streams.backends.spdy import BACKEND
from streams.cli.echo import echo_handler, echo_stream
from streams.cli.probe import probe
from streams.testing import read_all
from tests.peers import build_go, free_port, running

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

GO_SOURCE = Path(__file__).resolve().parent / "go" / "spdypeer"
NO_FLOW_CONTROL = BackendOptions(spdy_no_flow_control=True)
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def spdypeer() -> Path:
    return build_go(GO_SOURCE, "github.com/moby/spdystream")


async def wait_for_line(process: subprocess.Popen[str], predicate: Callable[[str], bool]) -> str:
    """The first line of the peer's output that matches, waiting up to 10 s for it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in list(process.output):  # type: ignore[attr-defined]
            if predicate(line):
                return str(line)
        await anyio.sleep(0.02)
    output = "".join(process.output)  # type: ignore[attr-defined]
    raise AssertionError(f"the Go peer never printed the expected line:\n{output[-3000:]}")


@asynccontextmanager
async def our_echo_server(address: str = "127.0.0.1:0") -> AsyncIterator[str]:
    """Our SPDY echo server (the logic of ``streams echo``) in this process."""
    async with (
        BACKEND.serve(address, NO_FLOW_CONTROL, echo_handler) as server,
        anyio.create_task_group() as group,
    ):
        group.start_soon(server.listener.serve, echo_stream, group)
        yield server.address
        group.cancel_scope.cancel()


async def run_go(command: list[str], seconds: float = 90) -> str:
    with anyio.fail_after(seconds):
        result = await anyio.run_process(command, check=False)
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output[-3000:]
    return output


def go_address(address: str) -> str:
    return address.removeprefix("http://").rstrip("/").split("/", 1)[0]


# -- a Go spdystream server, our client ------------------------------------------------------


async def exercise_go_server(provider: StreamProvider, process: subprocess.Popen[str]) -> None:
    # headers and reply headers, multi-valued
    stream = await provider.open_stream([("X-Multi", "one"), ("x-multi", "two"), ("X-Kind", "a")])
    assert stream.response_headers is not None
    assert stream.response_headers.getall("x-echo-x-multi") == ["one", "two"]
    assert stream.response_headers.get("x-echo-x-kind") == "a"
    # half-close from our side: the echo still arrives, then the end of file
    await stream.send(b"half-closed by us")
    await stream.send_eof()
    assert await read_all(stream) == b"half-closed by us"
    await stream.aclose()

    # half-close from the Go side first: we read its end of file, and still send
    stream = await provider.open_stream({"x-go-closes-first": "1"})
    assert await read_all(stream) == b"go closes first"
    await stream.send(b"x" * 1000)
    await stream.send_eof()
    await stream.aclose()
    assert "then read 1000 bytes" in await wait_for_line(
        process, lambda line: line.startswith(f"closed first {stream.stream_id}:")
    )

    # a reset by the Go side: the bytes before it, then StreamReset
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

    # a reset by us: the session goes on
    stream = await provider.open_stream()
    await stream.send(b"abandoned")
    await stream.reset()
    stream = await provider.open_stream()
    await stream.send(b"after the reset")
    await stream.send_eof()
    assert await read_all(stream) == b"after the reset"
    await stream.aclose()

    # refusal
    with pytest.raises(StreamRejected) as refused:
        await provider.open_stream({"x-reject": "1"})
    assert refused.value.retryable

    # ping. spdystream queues each incoming frame for one of five frame workers (stream
    # frames by stream id, pings round-robin), and a worker can sit behind a stream
    # handler still blocked from the steps above, so one ping in dozens goes unanswered
    # (seen on main too); the next ping goes to the next worker. Answered within three
    # tries is what is checked.
    rtt = 0.0
    for _ in range(3):
        with anyio.move_on_after(5):
            rtt = await provider.ping()
            break
    assert 0 < rtt < 5, "three pings went unanswered"
    assert provider.rtt == rtt

    # streams opened by the Go side are accepted and echoed here
    listener = provider.listen()
    async with anyio.create_task_group() as group:
        stream = await provider.open_stream({"x-open-back": "3"})
        for _ in range(3):
            incoming = await listener.accept()
            assert incoming.headers.get("x-from") == "go"
            group.start_soon(echo_stream, incoming)
        await stream.aclose()
    for index in range(3):
        await wait_for_line(process, lambda line, i=index: line.startswith(f"open-back {i} "))
        assert f"open-back {index} ok\n" in process.output  # type: ignore[attr-defined]


@pytest.mark.parametrize("upgrade", [False, True], ids=["tcp", "upgrade"])
async def test_go_server_our_client(spdypeer: Path, upgrade: bool) -> None:
    port = free_port()
    command = [str(spdypeer), "server", f"127.0.0.1:{port}", *(["-upgrade"] if upgrade else [])]
    address = f"http://127.0.0.1:{port}/spdy" if upgrade else f"127.0.0.1:{port}"
    with running(command, ready_line="listening on") as process:
        with anyio.fail_after(30):
            async with BACKEND.connect(address, NO_FLOW_CONTROL) as provider:
                await exercise_go_server(provider, process)


# -- a Go spdystream client, our server ------------------------------------------------------


async def go_client_against_our_server(
    spdypeer: Path, *, upgrade: bool, streams: int, size: int
) -> None:
    listen = "http://127.0.0.1:0/spdy" if upgrade else "127.0.0.1:0"
    async with our_echo_server(listen) as address:
        command = [str(spdypeer), "client", go_address(address)]
        command += ["-streams", str(streams), "-bytes", str(size)]
        command += ["-upgrade"] if upgrade else []
        output = await run_go(command)
    assert f"echo ok: {streams} streams x {size} bytes" in output
    for line in ("refusal ok", "server reset ok", "client reset ok", "ping ok", "DONE"):
        assert line in output, output


@pytest.mark.parametrize("upgrade", [False, True], ids=["tcp", "upgrade"])
async def test_go_client_our_server(spdypeer: Path, upgrade: bool) -> None:
    await go_client_against_our_server(spdypeer, upgrade=upgrade, streams=8, size=MIB)


# Each direction moves 1.6 GB each way through Python: the slowest tests of the backend,
# run on both event loops all the same.
@pytest.mark.parametrize("direction", ["go-client", "go-server"])
async def test_100_streams_of_16_mib_verified_by_hash(spdypeer: Path, direction: str) -> None:
    if direction == "go-client":
        await go_client_against_our_server(spdypeer, upgrade=False, streams=100, size=16 * MIB)
        return
    port = free_port()
    with running([str(spdypeer), "server", f"127.0.0.1:{port}"], ready_line="listening on"):
        with anyio.fail_after(90):
            async with BACKEND.connect(f"127.0.0.1:{port}", NO_FLOW_CONTROL) as provider:
                result = await probe(provider, streams=100, size=16 * MIB)
    assert result.ok, result.summary()


async def test_go_frames_show_reply_headers_statuses_and_pings(spdypeer: Path) -> None:
    """What spdystream's API hides, seen in its frames: the SYN_REPLY headers (lower case,
    several values joined with NUL), REFUSED_STREAM on refusal, a real status (CANCEL,
    never 0) on reset, and the answer to an odd (client) ping."""
    async with our_echo_server() as address:
        output = await run_go([str(spdypeer), "raw", address], seconds=30)
    assert "reply headers: x-echo-x-multi=one,two x-echo-x-single=value" in output
    assert "echo: hello" in output
    assert "refusal status: 3" in output
    assert 'reset after "abc": status 5' in output
    assert "ping answered" in output


async def test_our_client_sees_the_go_peers_headers_as_headers(spdypeer: Path) -> None:
    port = free_port()
    with running([str(spdypeer), "server", f"127.0.0.1:{port}"], ready_line="listening on"):
        with anyio.fail_after(20):
            async with BACKEND.connect(f"127.0.0.1:{port}", NO_FLOW_CONTROL) as provider:
                stream = await provider.open_stream(Headers({"Content-Type": "x/y"}))
                assert stream.response_headers == Headers({"x-echo-content-type": "x/y"})
                await stream.aclose()
