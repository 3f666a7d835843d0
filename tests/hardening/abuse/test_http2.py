"""Attacks on the HTTP/2 backend: a ``streams echo`` server in its own process, a raw
socket writing hand-made frames and never reading, and a well-behaved client on the same
server whose transfer must keep working.

One test per attack (CVE-2019-9512 to 9518, CVE-2023-44487, CVE-2024-27316, HPACK bomb,
window overflow, stream limits). Each checks that the attacking connection is closed with
a GOAWAY carrying the right code (or, for a per-stream limit, that only the stream is
refused), that the server logged the limit by name, that it stayed under 200 MB
resident, that the good client's echo went through, and that new connections still work.
The server runs on the test's event loop (``--loop``). Run with ``-s`` to see the good
client's throughput during each attack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import anyio
import anyio.to_thread
import hpack
import pytest

from streams import ErrorCode, StreamProvider
from streams.backends.http2 import BACKEND
from streams.backends.http2.settings import Http2Settings
from tests.hardening.abuse.harness import (
    EchoServer,
    attacker_socket,
    drain_until_closed,
    echo_server,
    echo_transfer,
    flood,
)

pytestmark = pytest.mark.anyio

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0,
    0x1,
    0x2,
    0x3,
    0x4,
    0x6,
    0x7,
    0x8,
    0x9,
)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
#: what the good client pushes through its echo stream during each attack
GOOD_TRANSFER = 4 << 20
#: each test's bound, server start and stop included
TEST_BOUND = 45.0


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame, written by hand (RFC 9113, section 4.1)."""
    header = len(payload).to_bytes(3, "big") + bytes([kind, flags])
    return header + stream_id.to_bytes(4, "big") + payload


def request_block() -> bytes:
    """A POST request's header block that references no dynamic table entry, so that it
    can be sent again and again."""
    encoder = hpack.Encoder()
    fields = [(":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
    return bytes(encoder.encode(fields))


REQUEST = request_block()


def opens(stream_id: int, *, end_stream: bool = False) -> bytes:
    """A HEADERS frame opening *stream_id* with a POST."""
    return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), stream_id, REQUEST)


def frames_in(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """The whole frames in *data* as (type, flags, stream id, payload)."""
    found = []
    offset = 0
    while offset + 9 <= len(data):
        length = int.from_bytes(data[offset : offset + 3], "big")
        end = offset + 9 + length
        if end > len(data):
            break
        kind, flags = data[offset + 3], data[offset + 4]
        stream_id = int.from_bytes(data[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
        found.append((kind, flags, stream_id, data[offset + 9 : end]))
        offset = end
    return found


def goaway_of(data: bytes) -> tuple[int, bytes]:
    """The error code and debug data of the last GOAWAY in *data*."""
    goaways = [payload for kind, _, _, payload in frames_in(data) if kind == GOAWAY]
    assert goaways, f"no GOAWAY among the {len(data)} bytes the server sent: {frames_in(data)[-3:]}"
    payload = goaways[-1]
    return int.from_bytes(payload[4:8], "big"), payload[8:]


@dataclass(slots=True)
class Attack:
    """What the attacker writes: *opening* once after the preface, then *repeated*
    *count* times, never reading."""

    repeated: bytes
    count: int
    opening: bytes = b""

    def run(self, server: EchoServer) -> bytes:
        """Attack *server*; everything it sent back, read after the attack."""
        sock = attacker_socket(server)
        try:
            sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + self.opening)
            if self.count == 1:
                # one large write: flood() would repeat it in batches
                with suppress(TimeoutError, BrokenPipeError, ConnectionResetError):
                    sock.settimeout(5.0)
                    sock.sendall(self.repeated)
            else:
                flood(sock, self.repeated, self.count)
            return drain_until_closed(sock)
        finally:
            sock.close()


@asynccontextmanager
async def attacked_server(
    anyio_backend: str, **settings: object
) -> AsyncIterator[tuple[EchoServer, StreamProvider]]:
    """An echo server on the test's loop and a well-behaved client connected to it."""
    with echo_server("http2", "--loop", anyio_backend, settings=settings) as server:
        async with BACKEND.connect(server.address) as good:
            yield server, good


async def during_attack(
    server: EchoServer, good: StreamProvider, attack: Callable[[], bytes], name: str
) -> bytes:
    """Run *attack* in a thread while the good client pushes its transfer; what the
    attacker received."""
    received: list[bytes] = []

    async def attacker() -> None:
        received.append(await anyio.to_thread.run_sync(attack))

    async with anyio.create_task_group() as group:
        group.start_soon(attacker)
        rate = await echo_transfer(good, GOOD_TRANSFER)
    print(
        f"\n{name}: good client {rate / 2**20:.0f} MiB/s during the attack, "
        f"server peak {server.peak_rss() / 2**20:.0f} MiB resident"
    )
    return received[0]


async def still_serves(server: EchoServer, good: StreamProvider, limit: str) -> None:
    """The checks every attack ends with: the limit was logged, memory stayed bounded,
    the good connection and a new one both still echo."""
    line = await server.wait_for_log(f"limit {limit} exceeded")
    assert "WARNING" in line, line
    server.assert_within_memory()
    assert server.alive()
    await echo_transfer(good, 256 << 10)
    async with BACKEND.connect(server.address) as fresh:
        await echo_transfer(fresh, 256 << 10)


async def closes_with(
    anyio_backend: str,
    attack: Attack,
    *,
    limit: str,
    code: ErrorCode,
    **settings: object,
) -> None:
    """Run *attack* against a fresh server: the attacker's connection must end with a
    GOAWAY carrying *code*, the server must log *limit*, and serve on."""
    with anyio.fail_after(TEST_BOUND):
        async with attacked_server(anyio_backend, **settings) as (server, good):
            received = await during_attack(server, good, lambda: attack.run(server), limit)
            error, debug = goaway_of(received)
            assert error == code, f"GOAWAY with {ErrorCode.coerce(error)!r}, not {code!r}"
            assert debug == limit.encode()
            await still_serves(server, good, limit)


# -- floods of cheap frames (CVE-2019-9512 to 9518) --------------------------------------


async def test_baseline_throughput(anyio_backend: str) -> None:
    """No attack: the good client's throughput to compare the others with (``-s``)."""
    with anyio.fail_after(TEST_BOUND):
        async with attacked_server(anyio_backend) as (server, good):
            rate = await echo_transfer(good, GOOD_TRANSFER)
            print(f"\nbaseline: good client {rate / 2**20:.0f} MiB/s, no attack")
            server.assert_within_memory()


async def test_ping_flood_with_default_limits(anyio_backend: str) -> None:
    """CVE-2019-9512: pings whose acks are never read."""
    attack = Attack(frame(PING, 0, 0, b"12345678"), count=100_000)
    await closes_with(
        anyio_backend, attack, limit="pings_per_second", code=ErrorCode.ENHANCE_YOUR_CALM
    )


async def test_settings_flood_with_default_limits(anyio_backend: str) -> None:
    """CVE-2019-9515: SETTINGS frames, each owed an ACK."""
    attack = Attack(frame(SETTINGS, 0, 0, b"\x00\x04\x00\x01\x00\x00"), count=100_000)
    await closes_with(
        anyio_backend, attack, limit="settings_per_second", code=ErrorCode.ENHANCE_YOUR_CALM
    )


async def test_unread_answers_are_bounded(anyio_backend: str) -> None:
    """With the ping rate unlimited, the acks a non-reading peer leaves queued are what
    ends it: Go's maxQueuedControlFrames (yamux grows to 300 MB here)."""
    attack = Attack(frame(PING, 0, 0, b"12345678"), count=2_000_000)
    await closes_with(
        anyio_backend,
        attack,
        limit="max_queued_control_frames",
        code=ErrorCode.ENHANCE_YOUR_CALM,
        pings_per_second=0,
    )


async def test_reset_flood(anyio_backend: str) -> None:
    """CVE-2019-9514: frames on a stream the server reset, each answered with a
    RST_STREAM (and a window update) that the attacker never reads; the resets the
    server is made to send count against the peer's reset rate."""
    attack = Attack(
        frame(DATA, 0, 1, b"x"),
        count=2_000_000,
        opening=opens(1) + frame(RST_STREAM, 0, 1, (ErrorCode.CANCEL).to_bytes(4, "big")),
    )
    await closes_with(
        anyio_backend,
        attack,
        limit="resets_per_second",
        code=ErrorCode.ENHANCE_YOUR_CALM,
    )


async def test_rapid_reset_with_default_limits(anyio_backend: str) -> None:
    """CVE-2023-44487: open a stream and reset it at once, again and again."""
    cancel = ErrorCode.CANCEL.to_bytes(4, "big")
    pairs = b"".join(
        opens(stream_id) + frame(RST_STREAM, 0, stream_id, cancel)
        for stream_id in range(1, 2 * 5000, 2)
    )
    attack = Attack(pairs, count=1)
    await closes_with(
        anyio_backend, attack, limit="resets_per_second", code=ErrorCode.ENHANCE_YOUR_CALM
    )


async def test_empty_data_frames_with_default_limits(anyio_backend: str) -> None:
    """CVE-2019-9518: DATA frames with no payload and no END_STREAM."""
    attack = Attack(frame(DATA, 0, 1), count=100_000, opening=opens(1))
    await closes_with(
        anyio_backend,
        attack,
        limit="empty_frames_per_second",
        code=ErrorCode.ENHANCE_YOUR_CALM,
    )


async def test_empty_header_fragments(anyio_backend: str) -> None:
    """CVE-2019-9516: header blocks of empty HEADERS and CONTINUATION fragments."""
    block = frame(HEADERS, 0, 1) + frame(CONTINUATION, 0, 1) * 20
    attack = Attack(block, count=1)
    await closes_with(
        anyio_backend,
        attack,
        limit="empty_frames_per_second",
        code=ErrorCode.ENHANCE_YOUR_CALM,
        empty_frames_per_second=1,
        flood_burst_seconds=5,
    )


async def test_priority_flood_with_default_limits(anyio_backend: str) -> None:
    """CVE-2019-9513: PRIORITY frames (h2 keeps no tree, but each is still work)."""
    attack = Attack(frame(PRIORITY, 0, 3, b"\x00\x00\x00\x01\x10"), count=100_000)
    await closes_with(
        anyio_backend,
        attack,
        limit="empty_frames_per_second",
        code=ErrorCode.ENHANCE_YOUR_CALM,
    )


# -- header blocks -------------------------------------------------------------------------


async def test_continuation_flood_is_cut_by_size(anyio_backend: str) -> None:
    """CVE-2024-27316: a header block that never ends, in large CONTINUATION frames; it
    must be cut once its compressed size passes the limit, not buffered."""
    attack = Attack(
        frame(CONTINUATION, 0, 1, b"\x00" * 16384),
        count=1000,
        opening=frame(HEADERS, 0, 1, REQUEST),
    )
    await closes_with(
        anyio_backend, attack, limit="max_header_list_size", code=ErrorCode.ENHANCE_YOUR_CALM
    )


async def test_hpack_bomb(anyio_backend: str) -> None:
    """One 4000-byte header put in the dynamic table, then referenced from it thousands
    of times in one block: megabytes once decoded, from a few kilobytes."""
    encoder = hpack.Encoder()
    literal = bytes(encoder.encode([("x-bomb", "b" * 4000)], huffman=False))
    # the newest dynamic entry is index 62 (RFC 7541, section 2.3.3): one byte each
    block = REQUEST + literal + bytes([0x80 | 62]) * 8000
    attack = Attack(frame(HEADERS, END_HEADERS, 1, block), count=1)
    await closes_with(
        anyio_backend, attack, limit="max_header_list_size", code=ErrorCode.ENHANCE_YOUR_CALM
    )


# -- flow control ------------------------------------------------------------------------


async def test_window_update_overflow(anyio_backend: str) -> None:
    """A WINDOW_UPDATE that takes the connection's send window past 2**31-1."""
    increment = (0x7FFFFFFF).to_bytes(4, "big")
    attack = Attack(frame(WINDOW_UPDATE, 0, 0, increment), count=2)
    await closes_with(
        anyio_backend,
        attack,
        limit="window_overflow",
        code=ErrorCode.FLOW_CONTROL_ERROR,
    )


async def test_data_beyond_the_connection_window_with_default_limits(anyio_backend: str) -> None:
    """Many streams each filling its window while nothing is read back: what the server
    buffers is bounded by the connection window (16 MiB by default), and data past it
    ends the connection."""
    chunk = b"d" * 16384
    # each stream fills its 256 KiB window; the echo reads (and so credits back) some of
    # each before its own sends stall, so four times what the connection window holds
    # passes it, without outlasting the linger that lets the GOAWAY reach the attacker
    settings = Http2Settings()
    count = 4 * settings.connection_window // settings.receive_window
    streams = range(1, 2 * count, 2)
    payload = b"".join(opens(i) + frame(DATA, 0, i, chunk) * 16 for i in streams)
    attack = Attack(payload, count=1)
    await closes_with(
        anyio_backend, attack, limit="connection_window", code=ErrorCode.FLOW_CONTROL_ERROR
    )


# -- streams -----------------------------------------------------------------------------


async def test_streams_per_second(anyio_backend: str) -> None:
    """New streams faster than the limit (each a complete request, answered at once)."""
    requests = b"".join(opens(i, end_stream=True) for i in range(1, 2 * 2000, 2))
    attack = Attack(requests, count=1)
    await closes_with(
        anyio_backend,
        attack,
        limit="streams_per_second",
        code=ErrorCode.ENHANCE_YOUR_CALM,
        streams_per_second=100,
        flood_burst_seconds=1,
    )


def refused_streams(server: EchoServer, opened: int) -> tuple[set[int], bytes]:
    """Open *opened* streams that never finish; the ids the server refused with
    REFUSED_STREAM (the connection must stay up), and what else it sent."""
    sock = attacker_socket(server)
    try:
        requests = b"".join(opens(i) for i in range(1, 2 * opened, 2))
        sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + requests)
        received = b""
        refused: set[int] = set()
        sock.settimeout(0.2)
        for _ in range(100):
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                if refused:
                    break
                continue
            if not chunk:
                break
            received += chunk
            refused = {
                stream_id
                for kind, _, stream_id, payload in frames_in(received)
                if kind == RST_STREAM and int.from_bytes(payload, "big") == ErrorCode.REFUSED_STREAM
            }
        # the connection is still usable: a PING is answered
        sock.sendall(frame(PING, 0, 0, b"stillup!"))
        sock.settimeout(5.0)
        answer = b""
        while not any(
            kind == PING and flags & ACK and payload == b"stillup!"
            for kind, flags, _, payload in frames_in(received + answer)
        ):
            chunk = sock.recv(1 << 16)
            assert chunk, "the server closed the connection instead of refusing a stream"
            answer += chunk
        return refused, received + answer
    finally:
        sock.close()


async def test_concurrent_streams_beyond_the_limit_are_refused(anyio_backend: str) -> None:
    """Streams past ``max_incoming_streams`` get REFUSED_STREAM; the connection and its
    other streams carry on."""
    with anyio.fail_after(TEST_BOUND):
        async with attacked_server(anyio_backend, max_incoming_streams=8) as (server, good):
            refused, received = await anyio.to_thread.run_sync(refused_streams, server, 20)
            assert refused == set(range(17, 40, 2)), sorted(refused)
            assert not any(kind == GOAWAY for kind, _, _, _ in frames_in(received))
            await still_serves(server, good, "max_incoming_streams")


async def test_too_many_headers_refuse_the_stream(anyio_backend: str) -> None:
    """A request with more fields than ``max_headers`` is answered 431 and only that
    stream ends."""
    encoder = hpack.Encoder()
    fields = [(":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
    fields += [(f"x-{i}", "v") for i in range(200)]
    block = bytes(encoder.encode(fields))

    def attack() -> bytes:
        sock = attacker_socket(server)
        try:
            sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, block))
            sock.settimeout(5.0)
            received = b""
            while not any(kind == HEADERS for kind, _, _, _ in frames_in(received)):
                chunk = sock.recv(1 << 16)
                assert chunk, "the server closed the connection instead of refusing a stream"
                received += chunk
            return received
        finally:
            sock.close()

    with anyio.fail_after(TEST_BOUND):
        async with attacked_server(anyio_backend) as (server, good):
            received = await anyio.to_thread.run_sync(attack)
            (payload,) = [p for kind, _, sid, p in frames_in(received) if kind == HEADERS]
            assert hpack.Decoder().decode(payload)[0] == (":status", "431")
            assert not any(kind == GOAWAY for kind, _, _, _ in frames_in(received))
            await still_serves(server, good, "max_headers")


def test_frames_are_written_by_hand() -> None:
    """The attacker's frame writer and reader agree with hyperframe."""
    from hyperframe.frame import Frame

    ping = frame(PING, ACK, 0, b"abcdefgh")
    parsed, length = Frame.parse_frame_header(memoryview(ping[:9]))
    parsed.parse_body(memoryview(ping[9 : 9 + length]))
    assert parsed.type == PING and "ACK" in parsed.flags and parsed.opaque_data == b"abcdefgh"
    assert frames_in(ping + ping[:5]) == [(PING, ACK, 0, b"abcdefgh")]
