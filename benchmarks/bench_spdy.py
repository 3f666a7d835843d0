"""SPDY/3.1 benchmark: single-stream echo throughput and the open-echo-close rate, as ratios
against raw anyio TCP measured in the same run (and the framer backend, when present), and
against the real Go spdystream peer on this machine.

    python -m benchmarks.bench_spdy [--json] [--loop asyncio|uvloop|trio] [--bytes N] [--opens N]

Throughput: one stream, N bytes sent and echoed back at once; the figure is MB/s each way.
Rate: streams opened, 32 bytes echoed, and closed, one after another (raw TCP: one new
connection each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import anyio
import anyio.abc

from streams import StreamProvider
from streams._core.backend import Backend, BackendOptions
from streams.backends import get_backend
from streams.cli.echo import echo_handler, echo_stream

ROOT = Path(__file__).resolve().parent.parent
GO_PEER = ROOT / "tests" / "spdy" / "go" / "spdypeer"
BLOCK = 64 * 1024


@dataclass
class Row:
    """One measurement."""

    name: str
    metric: str
    value: float
    unit: str
    baseline: str = ""
    ratio: float | None = None
    note: str = ""


# -- raw TCP --------------------------------------------------------------------------------


async def _tcp_echo(stream: anyio.abc.ByteStream) -> None:
    async with stream:
        with suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while True:
                await stream.send(await stream.receive(BLOCK))
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.send_eof()


@asynccontextmanager
async def tcp_echo_server() -> AsyncIterator[int]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, _tcp_echo)
        yield port
        group.cancel_scope.cancel()


async def echo_through(stream: anyio.abc.ByteStream, size: int) -> None:
    """Send *size* bytes and read them back at the same time."""
    chunk = os.urandom(BLOCK)

    async def send() -> None:
        remaining = size
        while remaining:
            piece = chunk[: min(BLOCK, remaining)]
            await stream.send(piece)
            remaining -= len(piece)
        await stream.send_eof()

    received = 0
    async with anyio.create_task_group() as group:
        group.start_soon(send)
        with suppress(anyio.EndOfStream):
            while True:
                received += len(await stream.receive(BLOCK))
    if received != size:
        raise RuntimeError(f"echoed {received} of {size} bytes")


async def tcp_throughput(size: int) -> float:
    async with tcp_echo_server() as port:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            started = time.perf_counter()
            await echo_through(stream, size)
            return size / (time.perf_counter() - started) / 1e6


async def tcp_rate(count: int) -> float:
    async with tcp_echo_server() as port:
        started = time.perf_counter()
        for _ in range(count):
            stream = await anyio.connect_tcp("127.0.0.1", port)
            async with stream:
                await echo_through(stream, 32)
        return count / (time.perf_counter() - started)


# -- providers ------------------------------------------------------------------------------


@asynccontextmanager
async def our_echo(backend: Backend, options: BackendOptions) -> AsyncIterator[str]:
    async with (
        backend.serve("127.0.0.1:0", options, echo_handler) as server,
        anyio.create_task_group() as group,
    ):
        group.start_soon(server.listener.serve, echo_stream, group)
        yield server.address
        group.cancel_scope.cancel()


async def provider_throughput(provider: StreamProvider, size: int) -> float:
    stream = await provider.open_stream()
    async with stream:
        started = time.perf_counter()
        await echo_through(stream, size)
        return size / (time.perf_counter() - started) / 1e6


async def provider_rate(provider: StreamProvider, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        stream = await provider.open_stream()
        async with stream:
            await echo_through(stream, 32)
    return count / (time.perf_counter() - started)


Connector = Callable[[], AbstractAsyncContextManager[StreamProvider]]


async def measure_provider(connect: Connector, size: int, count: int) -> tuple[float, float]:
    async with connect() as provider:
        await provider_rate(provider, min(count, 50))  # warm up
        throughput = await provider_throughput(provider, size)
        rate = await provider_rate(provider, count)
    return throughput, rate


async def measure_ours(
    name: str, options: BackendOptions, size: int, count: int
) -> tuple[float, float]:
    backend = get_backend(name)
    async with our_echo(backend, options) as address:
        return await measure_provider(lambda: backend.connect(address, options), size, count)


# -- the Go peer ----------------------------------------------------------------------------


def build_go_peer() -> Path | None:
    try:
        from tests.peers import build_go
    except ImportError:
        return None
    try:
        return build_go(GO_PEER, "github.com/moby/spdystream")
    except BaseException as exc:  # a skip (pytest's Skipped) when Go is missing
        print(f"bench_spdy: no Go peer: {exc}", file=sys.stderr)
        return None


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def go_client_throughput(peer: Path, address: str, size: int) -> float:
    """The Go client's own figure (one stream, echo), against *address*."""
    result = subprocess.run(
        [str(peer), "client", address, "-streams", "1", "-bytes", str(size)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    for line in result.stdout.splitlines():
        if line.startswith("echo ok:"):
            return float(line.rsplit("(", 1)[1].split(" ", 1)[0])
    raise RuntimeError(f"the Go client failed: {result.stdout}{result.stderr}")


# -- the run --------------------------------------------------------------------------------


def _add(rows: list[Row], row: Row, baseline: Row | None) -> None:
    if baseline is not None and baseline.value:
        row.baseline = baseline.name
        row.ratio = row.value / baseline.value
    rows.append(row)


async def run_all(size: int, count: int, peer: Path | None, go_server: str | None) -> list[Row]:
    rows: list[Row] = []
    tcp = Row("raw anyio TCP", "echo throughput", await tcp_throughput(size), "MB/s")
    tcp_open = Row(
        "raw anyio TCP (connection each)", "open-echo-close", await tcp_rate(count), "/s"
    )
    rows += [tcp, tcp_open]
    no_fc = BackendOptions(spdy_no_flow_control=True)
    for label, options in (("spdy", BackendOptions()), ("spdy, no flow control", no_fc)):
        throughput, rate = await measure_ours("spdy", options, size, count)
        _add(rows, Row(label, "echo throughput", throughput, "MB/s"), tcp)
        _add(rows, Row(label, "open-echo-close", rate, "/s"), tcp_open)
    try:
        framer = get_backend("framer")
    except Exception:
        framer = None
    if framer is not None:
        throughput, rate = await measure_ours("framer", BackendOptions(), size, count)
        framer_rows = (
            Row("framer", "echo throughput", throughput, "MB/s"),
            Row("framer", "open-echo-close", rate, "/s"),
        )
        _add(rows, framer_rows[0], tcp)
        _add(rows, framer_rows[1], tcp_open)
        spdy_rows = [r for r in rows if r.name == "spdy"]
        for spdy_row, framer_row in zip(spdy_rows, framer_rows, strict=True):
            _add(
                rows,
                Row("spdy vs framer", spdy_row.metric, spdy_row.value, spdy_row.unit),
                framer_row,
            )
    if go_server is not None:
        backend = get_backend("spdy")
        throughput, rate = await measure_provider(
            lambda: backend.connect(go_server, no_fc), size, count
        )
        _add(
            rows,
            Row("our client -> Go spdystream server", "echo throughput", throughput, "MB/s"),
            tcp,
        )
        _add(
            rows, Row("our client -> Go spdystream server", "open-echo-close", rate, "/s"), tcp_open
        )
    if peer is not None:
        async with our_echo(get_backend("spdy"), no_fc) as address:
            figure = await anyio.to_thread.run_sync(go_client_throughput, peer, address, size)
        go_go = None
        if go_server is not None:
            go_figure = await anyio.to_thread.run_sync(go_client_throughput, peer, go_server, size)
            go_go = Row("Go client -> Go server (reference)", "echo throughput", go_figure, "MB/s")
            _add(rows, go_go, tcp)
        ours = Row("Go spdystream client -> our server", "echo throughput", figure, "MB/s")
        _add(rows, ours, go_go or tcp)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_spdy", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--loop", choices=("asyncio", "uvloop", "trio"), default="asyncio")
    parser.add_argument("--bytes", type=int, default=64 * 1024 * 1024, help="bytes echoed")
    parser.add_argument("--opens", type=int, default=1000, help="streams opened for the rate")
    parser.add_argument("--no-go", action="store_true", help="skip the Go spdystream peer")
    args = parser.parse_args(argv)

    peer = None if args.no_go else build_go_peer()
    go_process: subprocess.Popen[bytes] | None = None
    go_server = None
    if peer is not None:
        port = free_port()
        go_process = subprocess.Popen(
            [str(peer), "server", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        go_server = f"127.0.0.1:{port}"
        time.sleep(0.5)

    async def run() -> list[Row]:
        return await run_all(args.bytes, args.opens, peer, go_server)

    try:
        if args.loop == "trio":
            rows = anyio.run(run, backend="trio")
        else:
            options = {"use_uvloop": True} if args.loop == "uvloop" else {}
            rows = anyio.run(run, backend="asyncio", backend_options=options)
    finally:
        if go_process is not None:
            go_process.terminate()
            go_process.wait(timeout=10)

    if args.json:
        print(
            json.dumps(
                {
                    "loop": args.loop,
                    "bytes": args.bytes,
                    "opens": args.opens,
                    "results": [asdict(row) for row in rows],
                },
                indent=2,
            )
        )
        return 0
    print(f"bench_spdy on {args.loop}: {args.bytes} bytes echoed, {args.opens} opens")
    print(f"{'what':38} {'metric':17} {'value':>10} {'unit':5} {'ratio':>7}  baseline")
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
        value = f"{row.value:10.1f}"
        print(f"{row.name:38} {row.metric:17} {value} {row.unit:5} {ratio:>7}  {row.baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
