"""Interop with the real hashicorp/yamux (Debian's golang-github-hashicorp-yamux-dev),
in raw mode: Go programs under ``go/`` against ``streams echo``/``streams probe`` and
against the framer in this process."""

from __future__ import annotations

import hashlib
import random
import subprocess
import time
from pathlib import Path

import anyio
import pytest

from streams import StreamRejected
from streams._core.backend import BackendOptions
from streams.backends.framer import BACKEND
from streams.testing import read_all
from tests.peers import build_go, listening_address, running, streams_command

pytestmark = pytest.mark.interop

GO = Path(__file__).resolve().parent / "go"
YAMUX = "github.com/hashicorp/yamux"
RAW = BackendOptions(raw=True, settings={"close_grace": 1.0})


@pytest.fixture(scope="module")
def go_server() -> Path:
    return build_go(GO / "yamuxserver", YAMUX)


@pytest.fixture(scope="module")
def go_client() -> Path:
    return build_go(GO / "yamuxclient", YAMUX)


def wait_exit(process: subprocess.Popen[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.returncode is None:
        raise AssertionError(f"{process.args} did not finish within {timeout} s")
    return process.returncode


async def async_wait_exit(process: subprocess.Popen[str]) -> int:
    while process.poll() is None:
        await anyio.sleep(0.05)
    return process.returncode


def output(process: subprocess.Popen[str]) -> str:
    return "".join(process.output) + "".join(process.errors)  # type: ignore[attr-defined]


# -- the real commands -----------------------------------------------------------------


def test_go_client_against_streams_echo_raw(go_client: Path) -> None:
    echo = streams_command("echo", "--backend", "framer", "--raw", "--listen", "127.0.0.1:0")
    with running(echo, ready_line="echo: listening on") as server:
        address = listening_address(server)
        for streams, size in ((128, 65536), (1, 64 * 1024 * 1024)):
            with running(
                [str(go_client), "-connect", address, "-streams", str(streams), "-bytes", str(size)]
            ) as client:
                code = wait_exit(client, 120)
                assert code == 0, output(client) + output(server)
                assert f"done {streams} ok 0 failed" in output(client)


def test_streams_probe_raw_against_go_server(go_server: Path) -> None:
    with running([str(go_server)], ready_line="listening on") as server:
        address = server.ready.split("listening on ", 1)[1]  # type: ignore[attr-defined]
        for streams, size in ((128, 65536), (1, 64 * 1024 * 1024)):
            probe = streams_command(
                "probe",
                "--backend",
                "framer",
                "--raw",
                "--connect",
                address,
                "--streams",
                str(streams),
                "--bytes",
                str(size),
            )
            result = subprocess.run(probe, capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stdout + result.stderr
            assert f"{streams}/{streams} streams verified" in result.stdout


# -- the framer in this process against the Go programs ---------------------------------


@pytest.mark.anyio
async def test_go_server_opens_streams_to_us(go_server: Path) -> None:
    command = [str(go_server), "-open", "120", "-bytes", "100000", "-accept=false"]
    with running(command, ready_line="listening on") as server:
        address = server.ready.split("listening on ", 1)[1]  # type: ignore[attr-defined]

        async def echo(stream):  # type: ignore[no-untyped-def]
            async with stream:
                while True:
                    try:
                        data = await stream.receive()
                    except anyio.EndOfStream:
                        break
                    await stream.send(data)
                await stream.send_eof()

        with anyio.fail_after(60):
            async with BACKEND.connect(address, RAW) as provider:
                listener = provider.listen()
                async with anyio.create_task_group() as group:
                    for _ in range(120):
                        stream = await listener.accept()
                        assert not stream.headers
                        group.start_soon(echo, stream)
                while not any(line.startswith("opened-done") for line in server.output):  # type: ignore[attr-defined]
                    await anyio.sleep(0.05)
        assert "opened-done 120 ok 0 failed" in output(server)


@pytest.mark.anyio
async def test_bulk_half_close_and_reset_against_go_server(go_server: Path) -> None:
    with running([str(go_server)], ready_line="listening on") as server:
        address = server.ready.split("listening on ", 1)[1]  # type: ignore[attr-defined]
        with anyio.fail_after(90):
            async with BACKEND.connect(address, RAW) as provider:
                assert await provider.ping() >= 0
                assert provider.rtt is not None
                # 64 MiB through one stream, half-closed, echo verified by hash
                stream = await provider.open_stream()
                block = random.Random(1).randbytes(1 << 20)
                sent = hashlib.sha256()
                received = hashlib.sha256()

                async def send() -> None:
                    for index in range(64):
                        chunk = block[index:] + block[:index]
                        sent.update(chunk)
                        await stream.send(chunk)
                    await stream.send_eof()

                total = 0
                async with anyio.create_task_group() as group:
                    group.start_soon(send)
                    while True:
                        try:
                            data = await stream.receive(1 << 20)
                        except anyio.EndOfStream:
                            break
                        received.update(data)
                        total += len(data)
                assert total == 64 << 20
                assert sent.digest() == received.digest()
                await stream.aclose()

                # a reset from our side reaches the Go stream's Read as an error
                doomed = await provider.open_stream()
                await doomed.send(b"x" * 1000)
                echoed = b""
                while len(echoed) < 1000:
                    echoed += await doomed.receive()
                assert echoed == b"x" * 1000
                await doomed.reset()
                for _ in range(200):
                    if "reset" in output(server):
                        break
                    await anyio.sleep(0.02)
                assert f"stream {doomed.stream_id}: error connection reset" in output(server)

                # a half-close by us still lets the Go side answer
                small = await provider.open_stream()
                await small.send(b"question")
                await small.send_eof()
                assert await read_all(small) == b"question"
                await small.aclose()


@pytest.mark.anyio
async def test_go_refusal_is_a_retryable_rejection(go_server: Path) -> None:
    command = [str(go_server), "-backlog", "1", "-accept=false"]
    with running(command, ready_line="listening on") as server:
        address = server.ready.split("listening on ", 1)[1]  # type: ignore[attr-defined]
        with anyio.fail_after(30):
            async with BACKEND.connect(address, RAW) as provider:
                queued = await provider.open_stream(wait_accept=False)
                with pytest.raises(StreamRejected) as caught:
                    await provider.open_stream()
                assert caught.value.retryable
                await queued.reset()


@pytest.mark.anyio
async def test_go_client_against_our_server_both_directions(go_client: Path) -> None:
    with anyio.fail_after(60):
        async with BACKEND.serve("127.0.0.1:0", RAW) as server:
            command = [
                str(go_client),
                "-connect",
                server.address,
                "-streams",
                "100",
                "-bytes",
                "50000",
                "-linger",
                "3s",
            ]
            with running(command) as client:

                async def serve_echo() -> None:
                    async def echo(stream):  # type: ignore[no-untyped-def]
                        async with stream:
                            while True:
                                try:
                                    data = await stream.receive()
                                except anyio.EndOfStream:
                                    break
                                await stream.send(data)
                            await stream.send_eof()

                    await server.listener.serve(echo)

                async with anyio.create_task_group() as group:
                    group.start_soon(serve_echo)
                    while not server.connections:
                        await anyio.sleep(0.01)
                    provider = server.connections[0]
                    results: list[bool] = []

                    async def ours(index: int) -> None:
                        payload = random.Random(index).randbytes(30000)
                        stream = await provider.open_stream()
                        async with stream:
                            await stream.send(payload)
                            echoed = b""
                            while len(echoed) < len(payload):
                                echoed += await stream.receive()
                            results.append(echoed == payload)

                    async with anyio.create_task_group() as inner:
                        for index in range(100):
                            inner.start_soon(ours, index)
                    assert results == [True] * 100
                    assert await async_wait_exit(client) == 0, output(client)
                    group.cancel_scope.cancel()
                assert "done 100 ok 0 failed" in output(client)
