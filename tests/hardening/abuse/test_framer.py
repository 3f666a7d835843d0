"""Abuse of the framer backend: each test is one attack on a real ``streams echo`` server.

The attacker is a raw socket that writes yamux frames made here by hand (not with the
codec under test) and reads nothing while it attacks. Each test then checks that the
attacking connection was closed with the right Go Away code (or, for the per-stream
limits, that only the offending stream was refused), that the server logged the limit by
name, that the server process stayed under the memory bound, and that a well-behaved
client on the same server moved its data during and after the attack.

The server runs on the test's event loop (``--loop asyncio`` or ``--loop trio``). Run with
``-s`` to see each attack's peak resident memory and the good client's throughput.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
import anyio.to_thread
import pytest

from streams._core.backend import BackendOptions
from streams.backends.framer import BACKEND
from tests.hardening.abuse.harness import (
    EchoServer,
    attacker_socket,
    drain_until_closed,
    echo_server,
    echo_transfer,
)

pytestmark = pytest.mark.anyio

#: bytes the well-behaved client pushes through the server, during and after each attack
GOOD_BYTES = 4 << 20

_HEADER = struct.Struct(">BBHII")
DATA, WINDOW_UPDATE, PING, GO_AWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 1, 2, 4, 8
#: Go Away codes
PROTOCOL_ERROR = 1
#: the REJECT header block's kind, and HTTP/2's REFUSED_STREAM that it carries
REJECT_BLOCK, REFUSED_STREAM = 3, 7


# -- frames, by hand ----------------------------------------------------------------------


def frame(kind: int, flags: int, stream_id: int, length: int, payload: bytes = b"") -> bytes:
    """One yamux frame: a 12-byte header, then *payload* (Data only)."""
    return _HEADER.pack(0, kind, flags, stream_id, length) + payload


def open_block(headers: list[tuple[str, str]] | None = None) -> bytes:
    """An OPEN header block: kind 1, body length, header count, then each name and value."""
    pairs = headers or []
    body = struct.pack(">H", len(pairs))
    for name, value in pairs:
        raw_name, raw_value = name.encode(), value.encode()
        body += struct.pack(">H", len(raw_name)) + raw_name
        body += struct.pack(">I", len(raw_value)) + raw_value
    return b"\x01" + struct.pack(">I", len(body)) + body


def open_stream(stream_id: int, flags: int = 0, *, raw: bool = False) -> bytes:
    """Open *stream_id*: a Data SYN carrying an OPEN block, or in raw mode a Window Update
    SYN."""
    if raw:
        return frame(WINDOW_UPDATE, SYN | flags, stream_id, 0)
    block = open_block()
    return frame(DATA, SYN | flags, stream_id, len(block), block)


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    flags: int
    stream_id: int
    length: int
    payload: bytes


def parse(data: bytes) -> list[Frame]:
    """The server's frames in *data* (a frame cut off at the end is left out)."""
    frames: list[Frame] = []
    position = 0
    while position + _HEADER.size <= len(data):
        _, kind, flags, stream_id, length = _HEADER.unpack_from(data, position)
        size = length if kind == DATA else 0
        end = position + _HEADER.size + size
        if end > len(data):
            break
        frames.append(Frame(kind, flags, stream_id, length, data[position + _HEADER.size : end]))
        position = end
    return frames


def closing_code(data: bytes) -> int:
    """The code of the Go Away that ends *data*: the server's last words."""
    frames = parse(data)
    assert frames, f"the server closed without a frame ({len(data)} bytes)"
    last = frames[-1]
    assert last.kind == GO_AWAY, f"the last frame is {last}, not a Go Away"
    return last.length


def refusals(frames: list[Frame], *, raw: bool = False) -> dict[int, int]:
    """The streams the server refused in *frames*, with the refusal's code (raw mode's
    refusal, a bare RST, has none: 0)."""
    refused: dict[int, int] = {}
    for item in frames:
        if raw and item.kind == WINDOW_UPDATE and item.flags & RST:
            refused[item.stream_id] = 0
        elif item.kind == DATA and item.flags & RST and item.payload[:1] == bytes([REJECT_BLOCK]):
            refused[item.stream_id] = struct.unpack_from(">I", item.payload, 5)[0]
    return refused


def read_for(sock: socket.socket, done: Callable[[bytes], bool], timeout: float = 10.0) -> bytes:
    """Read what the server sends until *done* says enough (bounded in time)."""
    deadline = time.monotonic() + timeout
    received = b""
    while not done(received):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the server's answer did not come ({len(received)} bytes)"
        sock.settimeout(remaining)
        chunk = sock.recv(1 << 20)
        assert chunk, "the server closed the connection"
        received += chunk
    return received


def still_answers(sock: socket.socket) -> None:
    """The connection is alive: a ping gets its answer."""
    sock.sendall(frame(PING, SYN, 0, 0xABCD))
    answer = frame(PING, ACK, 0, 0xABCD)
    read_for(sock, lambda data: answer in data)


# -- the server and the good client ----------------------------------------------------------


@contextmanager
def framer_server(loop: str, *args: str, **settings: object) -> Iterator[EchoServer]:
    """A framer echo server on *loop*, with *settings* (``--setting NAME=VALUE``)."""
    with echo_server("framer", "--loop", loop, *args, settings=settings) as server:
        yield server


async def good_transfer(server: EchoServer, *, raw: bool = False) -> float:
    """A fresh, well-behaved connection pushes :data:`GOOD_BYTES` through the echo."""
    async with BACKEND.connect(server.address, BackendOptions(raw=raw)) as provider:
        return await echo_transfer(provider, GOOD_BYTES)


async def under_attack(
    server: EchoServer, attack: Callable[[], bytes], *, raw: bool = False
) -> bytes:
    """Run the blocking *attack* in a thread while a good client transfers, then check
    the server: a good transfer right after, a new connection accepted, memory within
    bound. What the attack returned (the attacker's last reads)."""
    result: list[bytes] = []

    async def attacking() -> None:
        result.append(await anyio.to_thread.run_sync(attack))

    async with anyio.create_task_group() as group:
        group.start_soon(attacking)
        during = await good_transfer(server, raw=raw)
    after = await good_transfer(server, raw=raw)
    assert server.alive()
    server.assert_within_memory()
    print(
        f"\n  peak RSS {server.peak_rss() / 2**20:.0f} MiB; good client "
        f"{during / 2**20:.0f} MiB/s during, {after / 2**20:.0f} MiB/s after"
    )
    return result[0]


def flood_until(
    sock: socket.socket, server: EchoServer, frame: bytes, count: int, *, batch: int = 256
) -> int:
    """Like the harness's ``flood``, but the attacker stops early once the server has
    logged a limit: it still never reads while it floods, and it starts reading (to find
    the closing frame) while the server still lingers to deliver it."""
    sock.settimeout(1.0)
    chunk = frame * batch
    sent = 0
    try:
        while sent < count and "exceeded" not in server.log():
            sock.sendall(chunk)
            sent += batch
    except (TimeoutError, BrokenPipeError, ConnectionResetError):
        pass
    return sent


def attacker(server: EchoServer) -> socket.socket:
    sock = attacker_socket(server)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# -- the attacks ---------------------------------------------------------------------------


async def test_baseline_throughput(anyio_backend: str) -> None:
    """No attack: the figure the others compare with."""
    with anyio.fail_after(30), framer_server(anyio_backend) as server:
        rate = await good_transfer(server)
        print(f"\n  baseline: good client {rate / 2**20:.0f} MiB/s")
        server.assert_within_memory()


async def test_ping_flood_with_the_defaults(anyio_backend: str) -> None:
    """CVE-2019-9512: pings as fast as the socket takes them (default limits)."""
    with anyio.fail_after(30), framer_server(anyio_backend) as server:

        def attack() -> bytes:
            with attacker(server) as sock:
                flood_until(sock, server, frame(PING, SYN, 0, 7), 5000)
                return drain_until_closed(sock)

        drained = await under_attack(server, attack)
        assert closing_code(drained) == PROTOCOL_ERROR
        await server.wait_for_log("limit pings_per_second exceeded")
        answers = [f for f in parse(drained) if f.kind == PING]
        assert 0 < len(answers) <= 101  # the burst, and not one answer more


async def test_unread_ping_answers_hit_the_queue_bound(anyio_backend: str) -> None:
    """Pings within any rate, but their answers never read (the yamux ~300 MB case):
    once our answers back up past max_queued_control_frames, the connection closes."""
    with anyio.fail_after(40), framer_server(anyio_backend, pings_per_second=0) as server:

        def attack() -> bytes:
            with attacker(server) as sock:
                # enough answers to fill the kernel's buffers on the way, then our queue
                flood_until(sock, server, frame(PING, SYN, 0, 7), 2_000_000, batch=4096)
                return drain_until_closed(sock, timeout=20)

        drained = await under_attack(server, attack)
        assert closing_code(drained) == PROTOCOL_ERROR
        await server.wait_for_log("limit max_queued_control_frames exceeded")


async def test_stream_open_flood(anyio_backend: str) -> None:
    """Streams opened (and ended) as fast as possible: streams_per_second."""
    settings = {"streams_per_second": 100, "flood_burst_seconds": 1}
    with anyio.fail_after(30), framer_server(anyio_backend, **settings) as server:

        def attack() -> bytes:
            with attacker(server) as sock:
                sock.sendall(b"".join(open_stream(1 + 2 * i, FIN) for i in range(1000)))
                return drain_until_closed(sock)

        drained = await under_attack(server, attack)
        assert closing_code(drained) == PROTOCOL_ERROR
        await server.wait_for_log("limit streams_per_second exceeded")


@pytest.mark.parametrize("raw", [False, True], ids=["headers", "raw"])
async def test_concurrent_streams_over_the_limit_are_refused(anyio_backend: str, raw: bool) -> None:
    """More streams open at once than max_incoming_streams: the extra ones are refused
    (REFUSED_STREAM, or raw yamux's RST), the connection carries on."""
    args = ("--raw",) if raw else ()
    with anyio.fail_after(30), framer_server(anyio_backend, *args, max_incoming_streams=16) as s:

        def attack() -> bytes:
            with attacker(s) as sock:
                sock.sendall(b"".join(open_stream(1 + 2 * i, raw=raw) for i in range(40)))
                seen = read_for(sock, lambda data: len(refusals(parse(data), raw=raw)) >= 24)
                still_answers(sock)
                return seen

        seen = await under_attack(s, attack, raw=raw)
        refused = refusals(parse(seen), raw=raw)
        assert sorted(refused) == [1 + 2 * i for i in range(16, 40)]
        assert set(refused.values()) == {0 if raw else REFUSED_STREAM}
        await s.wait_for_log("limit max_incoming_streams exceeded")


@pytest.mark.parametrize("raw", [False, True], ids=["headers", "raw"])
async def test_rapid_reset(anyio_backend: str, raw: bool) -> None:
    """CVE-2023-44487: each stream reset as soon as it is opened."""
    args = ("--raw",) if raw else ()
    settings = {"resets_per_second": 20, "flood_burst_seconds": 1}
    with anyio.fail_after(30), framer_server(anyio_backend, *args, **settings) as server:

        def attack() -> bytes:
            with attacker(server) as sock:
                pairs = (
                    open_stream(1 + 2 * i, raw=raw) + frame(WINDOW_UPDATE, RST, 1 + 2 * i, 8)
                    for i in range(1000)
                )
                sock.sendall(b"".join(pairs))
                return drain_until_closed(sock)

        drained = await under_attack(server, attack, raw=raw)
        assert closing_code(drained) == PROTOCOL_ERROR
        await server.wait_for_log("limit resets_per_second exceeded")


async def test_empty_data_frames_with_the_defaults(anyio_backend: str) -> None:
    """CVE-2019-9518: Data frames with no payload and no flags (default limits)."""
    with anyio.fail_after(30), framer_server(anyio_backend) as server:

        def attack() -> bytes:
            with attacker(server) as sock:
                sock.sendall(open_stream(1))
                flood_until(sock, server, frame(DATA, 0, 1, 0), 5000)
                return drain_until_closed(sock)

        drained = await under_attack(server, attack)
        assert closing_code(drained) == PROTOCOL_ERROR
        await server.wait_for_log("limit empty_frames_per_second exceeded")


async def test_window_update_flood_with_the_defaults(anyio_backend: str) -> None:
    """Window Updates of one byte each: credit dribbled frame by frame (CVE-2019-9517's
    cousin). They do nothing but cost parsing, so they count as empty frames."""
    with anyio.fail_after(30), framer_server(anyio_backend) as server:

        def attack() -> bytes:
            with attacker(server) as sock:
                sock.sendall(open_stream(1))
                flood_until(sock, server, frame(WINDOW_UPDATE, 0, 1, 1), 5000)
                return drain_until_closed(sock)

        drained = await under_attack(server, attack)
        assert closing_code(drained) == PROTOCOL_ERROR
        await server.wait_for_log("limit empty_frames_per_second exceeded")


async def test_window_update_overflow_with_the_defaults(anyio_backend: str) -> None:
    """A Window Update that takes a stream's window past 2**31-1."""
    with anyio.fail_after(30), framer_server(anyio_backend) as server:

        def attack() -> bytes:
            with attacker(server) as sock:
                sock.sendall(open_stream(1) + frame(WINDOW_UPDATE, 0, 1, 0x7FFFFFFF))
                return drain_until_closed(sock)

        drained = await under_attack(server, attack)
        assert closing_code(drained) == PROTOCOL_ERROR
        line = await server.wait_for_log("limit window_overflow exceeded")
        assert "FLOW_CONTROL" in line or "overflows" in line


@pytest.mark.parametrize("limit", ["max_header_block", "max_headers"])
async def test_oversize_header_block_refuses_only_its_stream(
    anyio_backend: str, limit: str
) -> None:
    """An OPEN block announcing 1 MiB (over 64 KiB), or carrying 200 headers (over 128):
    that stream is refused, the connection and its other streams carry on (defaults)."""
    if limit == "max_header_block":
        head = b"\x01" + struct.pack(">I", 1 << 20) + b"\x00\x01"
        bomb = frame(DATA, SYN, 3, len(head) + 4096, head + b"h" * 4096)
    else:
        block = open_block([(f"x-{i}", "v") for i in range(200)])
        bomb = frame(DATA, SYN, 3, len(block), block)
    with anyio.fail_after(30), framer_server(anyio_backend) as server:

        def attack() -> bytes:
            with attacker(server) as sock:
                # stream 1 is fine; stream 3 is the bomb; stream 5 is fine again
                sock.sendall(open_stream(1) + bomb + open_stream(5))
                seen = read_for(sock, lambda data: 3 in refusals(parse(data)))
                still_answers(sock)
                sock.sendall(frame(DATA, 0, 5, 5, b"hello") + frame(WINDOW_UPDATE, FIN, 5, 0))
                return seen + read_for(sock, lambda data: b"hello" in data)

        seen = await under_attack(server, attack)
        assert refusals(parse(seen)) == {3: REFUSED_STREAM}
        await server.wait_for_log(f"limit {limit} exceeded")


async def test_buffered_bytes_per_connection_with_the_defaults(anyio_backend: str) -> None:
    """As many streams as allowed, each filling its window, the echo never read: the
    server stops reading that connection (max_connection_buffer) and its memory stays
    bounded; other connections keep working. This limit is backpressure, not a closure:
    the peer sent nothing it was not allowed to."""
    window = 256 * 1024
    with anyio.fail_after(60), framer_server(anyio_backend) as server:

        def attack() -> bytes:
            sent = 0
            with attacker(server) as sock:
                sock.settimeout(2.0)
                block = open_block()
                chunk = b"z" * (64 * 1024)
                try:
                    for i in range(256):
                        stream_id = 1 + 2 * i
                        sock.sendall(frame(DATA, SYN, stream_id, len(block), block))
                        left = window - len(block)
                        while left:
                            size = min(left, len(chunk))
                            sock.sendall(frame(DATA, 0, stream_id, size, chunk[:size]))
                            left -= size
                            sent += size
                except TimeoutError:
                    pass
                # the server stopped reading well before the 64 MiB the windows allow
                assert sent < 60 << 20, f"{sent} bytes taken"
                return struct.pack(">Q", sent)

        sent = struct.unpack(">Q", await under_attack(server, attack))[0]
        print(f"  the server took {sent / 2**20:.0f} MiB before it stopped reading")


async def test_unfinished_header_blocks_with_the_defaults(anyio_backend: str) -> None:
    """The CONTINUATION floods' pattern (CVE-2024-27316): header blocks begun and never
    finished, each held by the server. Streams whose headers are still arriving count
    against max_incoming_streams (256), so what they hold is bounded."""
    partial = b"\x01" + struct.pack(">I", 60_000) + b"\x00\x01" + b"p" * 59_000
    with anyio.fail_after(60), framer_server(anyio_backend) as server:

        def attack() -> bytes:
            with attacker(server) as sock:
                for i in range(300):
                    sock.sendall(frame(DATA, SYN, 1 + 2 * i, len(partial), partial))
                seen = read_for(sock, lambda data: len(refusals(parse(data))) >= 44)
                still_answers(sock)
                return seen

        seen = await under_attack(server, attack)
        assert sorted(refusals(parse(seen))) == [1 + 2 * i for i in range(256, 300)]
        await server.wait_for_log("limit max_incoming_streams exceeded")


async def test_echo_backlog_of_many_streams_with_the_defaults(anyio_backend: str) -> None:
    """Thousands of streams, each sending one 64 KiB frame whose echo is never read: every
    stream's echo waits for room in the output instead of adding a frame to it, and the
    stream limit bounds what the handlers hold (4000 streams took the server to 320 MB
    before both)."""
    block = open_block()
    payload = b"e" * (64 * 1024)
    with anyio.fail_after(60), framer_server(anyio_backend) as server:

        def attack() -> bytes:
            with attacker(server) as sock:
                sock.settimeout(2.0)
                try:
                    for i in range(4000):
                        body = block + payload
                        sock.sendall(frame(DATA, SYN, 1 + 2 * i, len(body), body))
                except TimeoutError:
                    pass
            return b""

        await under_attack(server, attack)
        await server.wait_for_log("limit max_incoming_streams exceeded")
