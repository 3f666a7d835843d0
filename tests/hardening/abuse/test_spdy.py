"""Abuse of the SPDY backend: one test per attack, each against a real ``streams echo``
server process (on the test's event loop), the attacker a raw socket writing hand-made
SPDY/3.1 frames and never reading until its attack is over.

Each test checks that the attacking connection ends with the right frame (``GOAWAY``
``PROTOCOL_ERROR``, SPDY's only status for a peer that misbehaved, or an ``RST_STREAM``
with the right status for the limits that refuse one stream), that the server logged the
limit by name, that its resident memory stayed under the bound, that a well-behaved client
on the same server moved 4 MiB through an echo stream during the attack, and that the
server still accepts new connections. ``-s`` prints the throughput and peak memory.
"""

from __future__ import annotations

import os
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import pytest

from streams._core.backend import BackendOptions
from streams.backends.spdy import BACKEND
from streams.backends.spdy._dictionary import DICTIONARY
from streams.backends.spdy._guard import ANSWER_GRACE
from streams.backends.spdy.codec import GoAwayStatus, RstStatus, SpdyCodec
from streams.backends.spdy.upgrade import MAX_HEAD
from tests.hardening.abuse.harness import (
    EchoServer,
    attacker_socket,
    drain_until_closed,
    echo_server,
    echo_transfer,
    flood,
)
from tests.peers import listening_address, running, streams_command

pytestmark = pytest.mark.anyio

MIB = 1 << 20
#: what the well-behaved client moves through the server during each attack
TRANSFER = 4 * MIB
SYN_STREAM, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 1, 3, 4, 6, 7, 9


# -- frames, by hand ------------------------------------------------------------------------


def control(kind: int, payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">HHI", 0x8003, kind, (flags << 24) | len(payload)) + payload


def ping(ping_id: int) -> bytes:
    return control(PING, struct.pack(">I", ping_id))


def settings(*entries: tuple[int, int]) -> bytes:
    body = b"".join(struct.pack(">II", key, value) for key, value in entries)
    return control(SETTINGS, struct.pack(">I", len(entries)) + body)


def rst_stream(stream_id: int, status: int = RstStatus.CANCEL) -> bytes:
    return control(RST_STREAM, struct.pack(">II", stream_id, status))


def window_update(stream_id: int, delta: int) -> bytes:
    return control(WINDOW_UPDATE, struct.pack(">II", stream_id, delta))


def data(stream_id: int, payload: bytes, fin: bool = False) -> bytes:
    return struct.pack(">II", stream_id, (int(fin) << 24) | len(payload)) + payload


def zlib_bomb(expanded: int) -> bytes:
    """A ``SYN_STREAM`` for stream 1 whose header block inflates to *expanded* bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
    value = expanded - 13
    parts = [compressor.compress(struct.pack(">II", 1, 1) + b"x" + struct.pack(">I", value))]
    chunk = b"a" * MIB
    for _ in range(value // MIB):
        parts.append(compressor.compress(chunk))
    parts.append(compressor.compress(b"a" * (value % MIB)))
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return control(SYN_STREAM, struct.pack(">IIH", 1, 0, 0) + b"".join(parts))


@dataclass(frozen=True)
class Frame:
    kind: int | None  # a control frame's type; None for data
    stream_id: int
    payload: bytes


def frames(received: bytes) -> list[Frame]:
    """The frames the server sent (a cut-off last frame is dropped)."""
    out: list[Frame] = []
    position = 0
    while len(received) - position >= 8:
        first, second = struct.unpack_from(">II", received, position)
        length = second & 0xFFFFFF
        payload = received[position + 8 : position + 8 + length]
        if len(payload) < length:
            break
        position += 8 + length
        if first & 0x80000000:
            stream_id = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF if payload else 0
            out.append(Frame(first & 0xFFFF, stream_id, payload))
        else:
            out.append(Frame(None, first, payload))
    return out


def goaway_status(received: bytes) -> int:
    [goaway] = [frame for frame in frames(received) if frame.kind == GOAWAY]
    return int(struct.unpack(">II", goaway.payload)[1])


def resets(received: bytes) -> dict[int, int]:
    """Stream id to ``RST_STREAM`` status."""
    return {
        frame.stream_id: struct.unpack(">II", frame.payload)[1]
        for frame in frames(received)
        if frame.kind == RST_STREAM
    }


class Attacker:
    """A SPDY client's header compression, for attacks that open streams."""

    def __init__(self) -> None:
        self.codec = SpdyCodec(client=True)

    def syn_stream(self, headers: list[tuple[str, str]], *, fin: bool = False) -> bytes:
        return self.codec.syn_stream(self.codec.next_stream_id(), headers, fin=fin)


# -- the run of one attack ------------------------------------------------------------------


@dataclass
class Outcome:
    received: bytes
    during: float
    after: float


@asynccontextmanager
async def spdy_echo(anyio_backend: str, **limits: object) -> AsyncIterator[EchoServer]:
    with echo_server("spdy", "--loop", anyio_backend, settings=limits) as server:
        yield server


@contextmanager
def upgrade_echo(anyio_backend: str) -> Iterator[EchoServer]:
    """An echo server that starts SPDY with the HTTP/1.1 upgrade."""
    command = streams_command("-v", "echo", "--listen", "http://127.0.0.1:0/", "--backend")
    command += ["spdy", "--loop", anyio_backend]
    with running(command, ready_line="echo: listening on") as process:
        url = urlsplit(listening_address(process))
        assert url.hostname is not None and url.port is not None
        yield EchoServer(process, url.hostname, url.port, "spdy")


async def attack(
    server: EchoServer, run: Callable[[socket.socket], None], *, address: str | None = None
) -> Outcome:
    """Run *run* on an attacker socket in a thread while a good client moves data; then read
    what the server sent the attacker until it closes (or until *run* says it is done)."""
    outcome = Outcome(b"", 0.0, 0.0)
    options = BackendOptions()
    address = address or server.address
    with anyio.fail_after(45):
        async with BACKEND.connect(address, options) as good:

            def attacker() -> None:
                with attacker_socket(server) as sock:
                    run(sock)
                    outcome.received = drain_until_closed(sock)

            async with anyio.create_task_group() as group:
                group.start_soon(anyio.to_thread.run_sync, attacker)
                outcome.during = await echo_transfer(good, TRANSFER)
            outcome.after = await echo_transfer(good, TRANSFER)
        # (e) the server still takes new connections
        async with BACKEND.connect(address, options) as fresh:
            await echo_transfer(fresh, MIB)
    server.assert_within_memory()
    assert server.alive()
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]
    print(
        f"\n{test}: good client "
        f"{outcome.during / MIB:.0f} MiB/s during, {outcome.after / MIB:.0f} MiB/s after; "
        f"peak RSS {server.peak_rss() / MIB:.0f} MiB"
    )
    return outcome


async def attack_stream(
    server: EchoServer, frames_out: bytes, expect: Callable[[dict[int, int]], bool]
) -> dict[int, int]:
    """A per-stream limit: write *frames_out*, then read until *expect* holds for the
    resets received; the connection stays up, and the attacker closes it."""
    found: dict[int, int] = {}

    def run(sock: socket.socket) -> None:
        sock.sendall(frames_out)
        received = b""
        sock.settimeout(10.0)
        while not expect(resets(received)):
            chunk = sock.recv(1 << 16)
            assert chunk, "the server closed the connection: only a stream should fail"
            received += chunk
        found.update(resets(received))
        sock.shutdown(socket.SHUT_WR)

    await attack(server, run)
    return found


# -- connection limits ----------------------------------------------------------------------


async def test_ping_flood_with_the_default_limits(anyio_backend: str) -> None:
    async with spdy_echo(anyio_backend) as server:
        outcome = await attack(server, lambda sock: flood(sock, ping(1), 2000, batch=50))
        assert goaway_status(outcome.received) == GoAwayStatus.PROTOCOL_ERROR
        await server.wait_for_log("limit pings_per_second exceeded")


async def test_settings_flood(anyio_backend: str) -> None:
    async with spdy_echo(anyio_backend) as server:
        frame = settings((7, 65536))
        outcome = await attack(server, lambda sock: flood(sock, frame, 2000, batch=50))
        assert goaway_status(outcome.received) == GoAwayStatus.PROTOCOL_ERROR
        await server.wait_for_log("limit settings_per_second exceeded")


async def test_reset_flood(anyio_backend: str) -> None:
    async with spdy_echo(anyio_backend) as server:
        outcome = await attack(server, lambda sock: flood(sock, rst_stream(1), 5000, batch=250))
        assert goaway_status(outcome.received) == GoAwayStatus.PROTOCOL_ERROR
        await server.wait_for_log("limit resets_per_second exceeded")


async def test_provoked_reset_flood(anyio_backend: str) -> None:
    # data for streams never opened: each costs the server an RST_STREAM (CVE-2019-9514)
    async with spdy_echo(anyio_backend, resets_per_second=20) as server:
        frame = data(0x7FFFFFF1, b"x")
        outcome = await attack(server, lambda sock: flood(sock, frame, 1000, batch=50))
        assert goaway_status(outcome.received) == GoAwayStatus.PROTOCOL_ERROR
        await server.wait_for_log("limit resets_per_second exceeded")


async def test_rapid_reset(anyio_backend: str) -> None:
    async with spdy_echo(anyio_backend, resets_per_second=20) as server:
        attacker = Attacker()
        pairs = b""
        for _ in range(400):
            stream_id = attacker.codec._next_local_id
            pairs += attacker.syn_stream([("x-kind", "rapid")]) + rst_stream(stream_id)

        def run(sock: socket.socket) -> None:
            flood(sock, pairs, 1, batch=1)

        outcome = await attack(server, run)
        assert goaway_status(outcome.received) == GoAwayStatus.PROTOCOL_ERROR
        await server.wait_for_log("limit resets_per_second exceeded")


async def test_empty_data_frame_flood(anyio_backend: str) -> None:
    async with spdy_echo(anyio_backend) as server:
        attacker = Attacker()
        opening = attacker.syn_stream([("x-kind", "empty")])

        def run(sock: socket.socket) -> None:
            sock.sendall(opening)
            flood(sock, data(1, b""), 5000, batch=250)

        outcome = await attack(server, run)
        assert goaway_status(outcome.received) == GoAwayStatus.PROTOCOL_ERROR
        await server.wait_for_log("limit empty_frames_per_second exceeded")


async def test_streams_per_second(anyio_backend: str) -> None:
    async with spdy_echo(anyio_backend, streams_per_second=20) as server:
        attacker = Attacker()
        opens = b"".join(attacker.syn_stream([("x-kind", "many")], fin=True) for _ in range(400))
        outcome = await attack(server, lambda sock: flood(sock, opens, 1, batch=1))
        assert goaway_status(outcome.received) == GoAwayStatus.PROTOCOL_ERROR
        await server.wait_for_log("limit streams_per_second exceeded")


async def test_zlib_bomb_is_never_inflated(anyio_backend: str) -> None:
    bomb = zlib_bomb(512 * MIB)
    assert len(bomb) < 1 * MIB
    async with spdy_echo(anyio_backend) as server:
        outcome = await attack(server, lambda sock: sock.sendall(bomb))
        assert goaway_status(outcome.received) == GoAwayStatus.PROTOCOL_ERROR
        await server.wait_for_log("limit max_header_block exceeded")
        # the bomb expands to 512 MiB; the server never holds more than the limit of it
        assert server.peak_rss() < 100 * MIB


async def test_oversized_control_frame(anyio_backend: str) -> None:
    # a header frame announcing 16 MiB (SPDY's CONTINUATION-flood equivalent): refused on
    # its header, before any of it is buffered
    async with spdy_echo(anyio_backend) as server:
        header = struct.pack(">HHI", 0x8003, SYN_STREAM, 0xFFFFFF)
        outcome = await attack(server, lambda sock: flood(sock, header + b"\0" * 4096, 4096))
        assert goaway_status(outcome.received) == GoAwayStatus.PROTOCOL_ERROR
        await server.wait_for_log("limit max_control_frame exceeded")


async def test_session_window_update_overflow(anyio_backend: str) -> None:
    async with spdy_echo(anyio_backend) as server:
        frame = window_update(0, 0x7FFFFFFF)
        outcome = await attack(server, lambda sock: sock.sendall(frame * 2))
        assert goaway_status(outcome.received) == GoAwayStatus.PROTOCOL_ERROR
        await server.wait_for_log("limit window_overflow exceeded")


async def test_a_peer_that_does_not_read_cannot_make_answers_pile_up(anyio_backend: str) -> None:
    # the total buffered per connection: big windows for the server, 32 streams echoing
    # 256 KiB each into a socket nobody reads (more than the kernel's buffers hold: the
    # rest waits within write_buffer), then pings whose answers can only queue: past
    # max_queued_control_frames, the session ends
    async with spdy_echo(anyio_backend, max_queued_control_frames=50) as server:
        attacker = Attacker()
        out = settings((7, 0x7FFFFFFF)) + window_update(0, 0x7FFFFFFF - 65536)
        for _ in range(32):
            stream_id = attacker.codec._next_local_id
            out += attacker.syn_stream([("x-kind", "unread")])
            out += data(stream_id, b"d" * (256 * 1024))

        def run(sock: socket.socket) -> None:
            sock.settimeout(10.0)
            sock.sendall(out)
            # the pings come once the echo has filled the way back
            time.sleep(0.5)
            flood(sock, ping(1), 80, batch=1)
            # still not reading for longer than the server's grace for a stalled writer
            time.sleep(ANSWER_GRACE + 0.5)

        outcome = await attack(server, run)
        assert goaway_status(outcome.received) == GoAwayStatus.PROTOCOL_ERROR
        await server.wait_for_log("limit max_queued_control_frames exceeded")
        assert server.peak_rss() < 150 * MIB


async def test_a_data_frame_beyond_the_window_is_never_buffered_whole(anyio_backend: str) -> None:
    # one 16 MiB data frame on a 256 KiB window: reset as soon as the window is exceeded
    attacker = Attacker()
    opening = attacker.syn_stream([("x-kind", "huge")])
    huge = data(1, b"h" * 0xFFFFFF)
    async with spdy_echo(anyio_backend) as server:
        found = await attack_stream(server, opening + huge, lambda seen: 1 in seen)
        assert found[1] == RstStatus.FLOW_CONTROL_ERROR
        await server.wait_for_log("limit receive_window exceeded")


# -- stream limits --------------------------------------------------------------------------


async def test_too_many_headers_refuse_only_that_stream(anyio_backend: str) -> None:
    attacker = Attacker()
    many = attacker.syn_stream([(f"x-h{index}", "v") for index in range(200)])
    # one name, 200 values: they travel joined with NUL, and count one each
    joined = attacker.syn_stream([("x-joined", f"v{index}") for index in range(200)])
    async with spdy_echo(anyio_backend) as server:
        found = await attack_stream(server, many + joined, lambda seen: 3 in seen)
        assert found == {1: RstStatus.FRAME_TOO_LARGE, 3: RstStatus.FRAME_TOO_LARGE}
        await server.wait_for_log("limit max_headers exceeded")


async def test_concurrent_streams_past_the_limit_are_refused(anyio_backend: str) -> None:
    attacker = Attacker()
    opens = b"".join(attacker.syn_stream([("x-kind", "held")]) for _ in range(30))
    async with spdy_echo(anyio_backend, max_incoming_streams=20) as server:
        found = await attack_stream(server, opens, lambda seen: len(seen) >= 10)
        assert found == dict.fromkeys(range(41, 61, 2), RstStatus.REFUSED_STREAM)
        await server.wait_for_log("limit max_incoming_streams exceeded")


async def test_stream_window_update_overflow_resets_that_stream(anyio_backend: str) -> None:
    attacker = Attacker()
    opening = attacker.syn_stream([("x-kind", "window")])
    frames_out = opening + window_update(1, 0x7FFFFFFF)
    async with spdy_echo(anyio_backend) as server:
        found = await attack_stream(server, frames_out, lambda seen: 1 in seen)
        assert found == {1: RstStatus.FLOW_CONTROL_ERROR}
        await server.wait_for_log("limit window_overflow exceeded")


async def test_headers_held_by_the_connection_are_bounded(anyio_backend: str) -> None:
    # streams with 200 KiB of (incompressible) headers each: past max_connection_headers,
    # new ones are refused
    attacker = Attacker()
    opens = b"".join(
        attacker.syn_stream([("x-big", os.urandom(100 * 1024).hex())]) for _ in range(12)
    )
    async with spdy_echo(anyio_backend, max_connection_headers=2 * MIB) as server:
        found = await attack_stream(server, opens, lambda seen: len(seen) >= 2)
        assert found == {21: RstStatus.REFUSED_STREAM, 23: RstStatus.REFUSED_STREAM}
        await server.wait_for_log("limit max_connection_headers exceeded")


# -- the HTTP/1.1 upgrade -------------------------------------------------------------------


async def test_an_endless_upgrade_head_is_refused_with_431(anyio_backend: str) -> None:
    start = b"POST / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    line = b"x-pad: " + b"a" * 1000 + b"\r\n"
    head = start + line * (MAX_HEAD // len(line) + 1)
    # exactly one byte past the limit, never ended: the server has read all of it when it
    # answers, so its close is a clean one and the answer arrives
    head = head[: MAX_HEAD + 1]
    with upgrade_echo(anyio_backend) as server:
        address = f"http://{server.address}/"
        outcome = await attack(server, lambda sock: sock.sendall(head), address=address)
        assert outcome.received.startswith(b"HTTP/1.1 431 ")
        await server.wait_for_log("limit max_upgrade_head exceeded")
