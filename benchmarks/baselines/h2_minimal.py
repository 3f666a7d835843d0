"""The ceiling the ``h2`` library allows: one HTTP/2 connection driven by the least code that
is still correct. No stream objects, no provider, no per-stream tasks on the serving side:
each end is an ``H2Connection`` and one reader task over an anyio socket, and the server
answers inside that reader (``/echo`` echoes, ``/sink`` counts and answers the count).

It advertises the windows the HTTP/2 backend grows to (16 MiB per stream, 64 MiB for the
connection) and returns credit as soon as data arrives, so flow control never waits on an
application; its frames are the backend's default size (64 KiB). Like the backend it
keeps h2 from hex-encoding every received DATA frame for a log line nobody reads (h2
builds each frame's ``repr`` eagerly; hyperframe's hex-encodes the whole payload).
What is left is h2's own per-frame cost and one socket loop: the figure ``streams``'
HTTP/2 backend is held to.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import anyio
import anyio.abc
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame

from .. import _workloads as workloads
from .._common import Stopwatch
from .._workloads import MESSAGE, Sizes

NAME = "h2 minimal"
LOOPS = ("asyncio", "uvloop", "trio")
STREAM_WINDOW = 16 * 1024 * 1024
CONNECTION_WINDOW = 64 * 1024 * 1024
FRAME_SIZE = 64 * 1024
CHUNK = 1024 * 1024
READ_SIZE = 256 * 1024


def missing() -> str | None:
    """Why this baseline cannot run here, or ``None``."""
    return None


class _CheapData(DataFrame):
    def _body_repr(self) -> str:
        return f"{len(self.data)} bytes"


class _Frames(FrameBuffer):
    def __next__(self) -> Any:
        frame = super().__next__()
        if type(frame) is DataFrame:
            frame.__class__ = _CheapData
        return frame


class _Connection(H2Connection):
    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config=config)
        self.incoming_buffer = _Frames(server=not config.client_side)
        self._frame_dispatch_table[_CheapData] = self._receive_data_frame


class _Exchange:
    """What the client knows of one request: the answer's headers, data and end."""

    __slots__ = ("answered", "data", "ended", "reset")

    def __init__(self) -> None:
        self.answered = anyio.Event()
        self.ended = anyio.Event()
        self.data = bytearray()
        self.reset = False


class _End:
    """One end of the connection: its state machine, its socket and a write lock."""

    def __init__(self, socket: anyio.abc.SocketStream, *, client: bool) -> None:
        self.socket = socket
        self.client = client
        self.h2 = _Connection(H2Configuration(client_side=client, header_encoding="utf-8"))
        self.h2.initiate_connection()
        # a second SETTINGS frame: the first carries h2's defaults
        self.h2.update_settings(
            {
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                SettingCodes.MAX_FRAME_SIZE: FRAME_SIZE,
                SettingCodes.MAX_CONCURRENT_STREAMS: 100_000,
                **({SettingCodes.ENABLE_PUSH: 0} if client else {}),
            }
        )
        # h2 applies a larger frame size only once the peer acknowledges it, but the peer
        # may use it as soon as it has read it
        self.h2.max_inbound_frame_size = FRAME_SIZE
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.write_lock = anyio.Lock()
        self.window_opened = anyio.Event()
        self.exchanges: dict[int, _Exchange] = {}
        self.sunk: dict[int, int] = {}

    async def flush(self) -> None:
        # taken before the lock with no checkpoint in between, and the lock is FIFO: the
        # bytes go out in the order h2 produced them, and nothing waits when none are due
        data = self.h2.data_to_send()
        if data:
            async with self.write_lock:
                await self.socket.send(data)

    async def read(self) -> None:
        with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
            while True:
                events = self.h2.receive_data(await self.socket.receive(READ_SIZE))
                for event in events:
                    self._dispatch(event)
                await self.flush()

    def _dispatch(self, event: Any) -> None:
        h2 = self.h2
        if isinstance(event, RequestReceived):
            path = dict(event.headers).get(":path", "/echo")
            if path == "/sink":
                self.sunk[event.stream_id] = 0
            h2.send_headers(event.stream_id, [(":status", "200")])
        elif isinstance(event, DataReceived):
            h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if self.client:
                self.exchanges[event.stream_id].data += event.data
            elif event.stream_id in self.sunk:
                self.sunk[event.stream_id] += len(event.data)
            else:
                h2.send_data(event.stream_id, event.data)
        elif isinstance(event, StreamEnded):
            if self.client:
                self.exchanges.pop(event.stream_id).ended.set()
            elif event.stream_id in self.sunk:
                count = self.sunk.pop(event.stream_id)
                h2.send_data(event.stream_id, str(count).encode(), end_stream=True)
            else:
                h2.end_stream(event.stream_id)
        elif isinstance(event, ResponseReceived):
            self.exchanges[event.stream_id].answered.set()
        elif isinstance(event, WindowUpdated):
            self.window_opened.set()
            self.window_opened = anyio.Event()
        elif isinstance(event, StreamReset):
            exchange = self.exchanges.pop(event.stream_id, None)
            if exchange is not None:
                exchange.reset = True
                exchange.answered.set()
                exchange.ended.set()
        elif isinstance(event, ConnectionTerminated):
            raise RuntimeError(f"the connection ended: {event.error_code!r}")

    async def request(self, path: str) -> tuple[int, _Exchange]:
        stream_id = self.h2.get_next_available_stream_id()
        exchange = self.exchanges[stream_id] = _Exchange()
        self.h2.send_headers(
            stream_id,
            [(":method", "POST"), (":scheme", "http"), (":authority", "bench"), (":path", path)],
        )
        await self.flush()
        return stream_id, exchange

    async def send(self, stream_id: int, data: bytes, *, end: bool) -> None:
        view = memoryview(data)
        queued = 0
        while view:
            allowed = min(self.h2.local_flow_control_window(stream_id), len(view))
            if allowed == 0:
                # the event is taken before the flush yields: a WINDOW_UPDATE read meanwhile
                # sets it, instead of replacing it unseen (the sender then waited forever)
                opened = self.window_opened
                await self.flush()
                queued = 0
                await opened.wait()
                continue
            frame = min(allowed, self.h2.max_outbound_frame_size)
            self.h2.send_data(stream_id, view[:frame].tobytes())
            view = view[frame:]
            queued += frame
            if queued >= READ_SIZE:
                await self.flush()
                queued = 0
        if end:
            self.h2.end_stream(stream_id)
        await self.flush()


@contextlib.asynccontextmanager
async def _connection() -> Any:
    client_socket, server_socket = await workloads.tcp_pair()
    client = _End(client_socket, client=True)
    server = _End(server_socket, client=False)
    async with anyio.create_task_group() as group:
        group.start_soon(server.read)
        group.start_soon(client.read)
        await client.flush()
        await server.flush()
        yield client
        group.cancel_scope.cancel()
    await client_socket.aclose()
    await server_socket.aclose()


async def _echo(client: _End, latencies: list[float] | None = None) -> None:
    started = time.perf_counter()
    stream_id, exchange = await client.request("/echo")
    await exchange.answered.wait()
    if latencies is not None:
        latencies.append(time.perf_counter() - started)
    await client.send(stream_id, MESSAGE, end=True)
    await exchange.ended.wait()
    if exchange.reset or exchange.data != MESSAGE:
        raise AssertionError("the echo differs")


async def _bulk(client: _End, total: int) -> float:
    with Stopwatch() as watch:
        stream_id, exchange = await client.request("/sink")
        block = b"b" * CHUNK
        for _ in range(total // CHUNK):
            await client.send(stream_id, block, end=False)
        await client.send(stream_id, b"", end=True)
        await exchange.ended.wait()
    if int(exchange.data) != total // CHUNK * CHUNK:
        raise AssertionError(f"the sink counted {bytes(exchange.data)!r}")
    return total / watch.seconds / 1e6


async def measure(sizes: Sizes, memory: bool) -> dict[str, float]:
    """The bulk, sequential and concurrent rates and the open latency on one connection."""
    del memory  # no idle-stream figure: this driver keeps no state for an idle stream
    results: dict[str, float] = {}
    async with _connection() as client:
        results["bulk"] = await _bulk(client, sizes.bulk_bytes)
    async with _connection() as client:
        latencies: list[float] = []
        with Stopwatch() as watch:
            for _ in range(sizes.opens):
                await _echo(client, latencies)
        results["rate"] = sizes.opens / watch.seconds
        results["open_p50"] = workloads.percentile(latencies, 0.5) * 1e6
        results["open_p99"] = workloads.percentile(latencies, 0.99) * 1e6
    async with _connection() as client:
        share = max(sizes.concurrent_opens // workloads.CONCURRENCY, 1)

        async def worker() -> None:
            for _ in range(share):
                await _echo(client)

        with Stopwatch() as watch:
            async with anyio.create_task_group() as group:
                for _ in range(workloads.CONCURRENCY):
                    group.start_soon(worker)
        results["rate_100"] = share * workloads.CONCURRENCY / watch.seconds
    return results
