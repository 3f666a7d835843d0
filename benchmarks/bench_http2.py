"""The HTTP/2 backend against baselines measured in the same run.

* bulk: one stream, 1 MiB sends over h2c, against raw anyio TCP (receiver reading 64 KiB
  and 256 KiB; the ratio is to the better) and, when ``streams.backends.framer`` exists,
  against the framer backend on the same loop;
* open-echo-close: a stream opened, 64 bytes echoed, closed, one after another (with the
  default open and with ``wait_accept=False``), against raw TCP ping-pong round trips of
  64 bytes and against the framer;
* memory per idle open stream (tracemalloc, both ends, 2,000 streams);
* requests per second of ``streams echo --backend http2`` under
  ``h2load -n 20000 -c 4 -m 100``, against ``nghttpd`` serving a small file under the same
  load on the same machine (skipped when h2load or nghttpd is missing).

Timed figures are measured in interleaved rounds (baseline, then HTTP/2) and the best of
each is kept, so that a busy moment on a shared machine does not decide a ratio.

    python -m benchmarks.bench_http2 [--json] [--loop asyncio|uvloop|trio|all]
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio
import anyio.abc

from streams.backends.http2 import Http2Provider, Http2Settings

from . import _workloads as workloads
from ._common import Figure, main

BULK_BYTES = 128 * 1024 * 1024
CHUNK = 1024 * 1024
ROUND_TRIPS = 2000
MESSAGE = b"m" * 64
ROUNDS = 3
IDLE_STREAMS = 2000
H2LOAD_ARGS = ("-n", "20000", "-c", "4", "-m", "100")

SETTINGS = Http2Settings(close_grace=0.5)


async def tcp_pair() -> tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]:
    return await workloads.tcp_pair()


Pair = Callable[[], contextlib.AbstractAsyncContextManager[tuple[Any, Any]]]


@contextlib.asynccontextmanager
async def http2_pair() -> AsyncIterator[tuple[Http2Provider, Http2Provider]]:
    client_stream, server_stream = await tcp_pair()
    client = Http2Provider(client_stream, client=True, settings=SETTINGS)
    server = Http2Provider(server_stream, client=False, settings=SETTINGS)
    async with client, server:
        yield client, server


def framer_pair() -> Pair | None:
    """The framer's pair factory, when that backend is in this checkout."""
    try:
        from streams.backends.framer import (  # type: ignore[attr-defined, unused-ignore]
            FramerProvider,
            FramerSettings,
        )
    except ImportError:
        return None

    @contextlib.asynccontextmanager
    async def pair() -> AsyncIterator[tuple[Any, Any]]:
        client_stream, server_stream = await tcp_pair()
        settings = FramerSettings(close_grace=0.5)
        client = FramerProvider(client_stream, client=True, settings=settings)
        server = FramerProvider(server_stream, client=False, settings=settings)
        async with client, server:
            yield client, server

    return pair


# -- bulk ----------------------------------------------------------------------------------


async def raw_bulk(read_size: int) -> float:
    return await workloads.raw_bulk(read_size, BULK_BYTES, CHUNK)


async def mux_bulk(make_pair: Pair) -> float:
    async with make_pair() as (client, server):
        return await workloads.bulk(client, server.listen(), BULK_BYTES, CHUNK)


# -- open, echo, close ----------------------------------------------------------------------


async def raw_ping_pong() -> float:
    return await workloads.raw_ping_pong(ROUND_TRIPS)


async def mux_open_echo_close(make_pair: Pair, wait_accept: bool) -> float:
    async with make_pair() as (client, server):
        return await workloads.open_echo_close(
            client, server.listen(), ROUND_TRIPS, wait_accept=wait_accept
        )


# -- memory ----------------------------------------------------------------------------------


async def memory_per_idle_stream() -> float:
    """Bytes per idle open stream, both ends of the connection together."""
    settings = Http2Settings(close_grace=0.5, max_incoming_streams=2 * IDLE_STREAMS)
    client_stream, server_stream = await tcp_pair()
    client = Http2Provider(client_stream, client=True, settings=settings)
    server = Http2Provider(server_stream, client=False, settings=settings)
    async with client, server:
        return await workloads.idle_memory(client, server.listen(), IDLE_STREAMS)


# -- h2load --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port}")


@contextlib.contextmanager
def _process(command: Sequence[str], port: int) -> Any:
    process = subprocess.Popen(
        list(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ
    )
    try:
        _wait_for_port(port)
        yield process
    finally:
        # stopped by its own id
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def _h2load(h2load: str, port: int) -> float:
    result = subprocess.run(
        [h2load, *H2LOAD_ARGS, f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    done = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored", result.stdout)
    rate = re.search(r"finished in [^,]+, ([\d.]+) req/s", result.stdout)
    if not done or not rate or done[2] != "0" or done[3] != "0":
        raise RuntimeError(f"h2load failed: {result.stdout[-500:]} {result.stderr[-500:]}")
    return float(rate[1])


def h2load_rates(loop: str) -> tuple[float, float] | None:
    """(our server's req/s, nghttpd's req/s) under the same h2load run, best of rounds."""
    h2load, nghttpd = shutil.which("h2load"), shutil.which("nghttpd") or "/usr/sbin/nghttpd"
    if h2load is None or not os.path.exists(nghttpd):
        return None
    ours = theirs = 0.0
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "index.html"), "wb") as file:
            file.write(b"ok\n")
        for _ in range(2):
            port = _free_port()
            command = [sys.executable, "-m", "streams", "echo", "--backend", "http2"]
            command += ["--listen", f"127.0.0.1:{port}", "--loop", loop]
            with _process(command, port):
                ours = max(ours, _h2load(h2load, port))
            port = _free_port()
            with _process([nghttpd, "-a", "127.0.0.1", "--no-tls", "-d", root, str(port)], port):
                theirs = max(theirs, _h2load(h2load, port))
    return ours, theirs


# -- the run -------------------------------------------------------------------------------


async def measure(loop: str) -> list[Figure]:
    framer = framer_pair()
    raw_64k = raw_256k = bulk = framer_bulk = ping_pong = 0.0
    default_open = fast_open = framer_open = framer_fast = 0.0
    for _ in range(ROUNDS):
        raw_64k = max(raw_64k, await raw_bulk(64 * 1024))
        raw_256k = max(raw_256k, await raw_bulk(256 * 1024))
        bulk = max(bulk, await mux_bulk(http2_pair))
        ping_pong = max(ping_pong, await raw_ping_pong())
        default_open = max(default_open, await mux_open_echo_close(http2_pair, True))
        fast_open = max(fast_open, await mux_open_echo_close(http2_pair, False))
        if framer is not None:
            framer_bulk = max(framer_bulk, await mux_bulk(framer))
            framer_open = max(framer_open, await mux_open_echo_close(framer, True))
            framer_fast = max(framer_fast, await mux_open_echo_close(framer, False))
    raw_best = max(raw_64k, raw_256k)
    raw_name = "raw TCP, 256 KiB reads" if raw_256k >= raw_64k else "raw TCP, 64 KiB reads"
    figures = [
        Figure(name="raw TCP bulk, 64 KiB reads", value=raw_64k, unit="MB/s", loop=loop),
        Figure(name="raw TCP bulk, 256 KiB reads", value=raw_256k, unit="MB/s", loop=loop),
        Figure(
            name="http2 bulk, one stream",
            value=bulk,
            unit="MB/s",
            loop=loop,
            baseline=raw_best,
            baseline_name=raw_name,
        ),
        Figure(name="raw TCP ping-pong", value=ping_pong, unit="round trips/s", loop=loop),
        Figure(
            name="http2 open-echo-close (default open)",
            value=default_open,
            unit="streams/s",
            loop=loop,
            baseline=ping_pong,
            baseline_name="raw ping-pong",
        ),
        Figure(
            name="http2 open-echo-close (wait_accept=False)",
            value=fast_open,
            unit="streams/s",
            loop=loop,
            baseline=ping_pong,
            baseline_name="raw ping-pong",
        ),
    ]
    if framer is not None:
        figures += [
            Figure(
                name="http2 bulk vs framer",
                value=bulk,
                unit="MB/s",
                loop=loop,
                baseline=framer_bulk,
                baseline_name="framer bulk",
            ),
            Figure(
                name="http2 open-echo-close vs framer (default open)",
                value=default_open,
                unit="streams/s",
                loop=loop,
                baseline=framer_open,
                baseline_name="framer",
            ),
            Figure(
                name="http2 open-echo-close vs framer (wait_accept=False)",
                value=fast_open,
                unit="streams/s",
                loop=loop,
                baseline=framer_fast,
                baseline_name="framer",
            ),
        ]
    figures.append(
        Figure(
            name=f"memory per idle open stream (both ends, {IDLE_STREAMS} streams)",
            value=await memory_per_idle_stream(),
            unit="bytes",
            loop=loop,
        )
    )
    rates = await anyio.to_thread.run_sync(h2load_rates, loop)
    if rates is not None:
        figures.append(
            Figure(
                name="h2load -n 20000 -c 4 -m 100, our server",
                value=rates[0],
                unit="req/s",
                loop=loop,
                baseline=rates[1],
                baseline_name="nghttpd",
            )
        )
    return figures


if __name__ == "__main__":
    raise SystemExit(
        main(measure, "http2 vs raw anyio TCP (and the framer, and nghttpd under h2load)")
    )
