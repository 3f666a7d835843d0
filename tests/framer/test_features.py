"""Keepalive, timeouts, limits and protocol errors of the framer, over real sockets."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import pytest

from streams import (
    ConfigError,
    ConnectionLost,
    ErrorCode,
    GoingAway,
    LimitExceeded,
    OpenTimeout,
    ProtocolError,
    StreamRejected,
    StreamReset,
)
from streams._core.abc import Stream
from streams._core.backend import BackendOptions
from streams._core.headers import Headers
from streams.backends.framer import BACKEND, FramerProvider, FramerSettings
from streams.backends.framer.codec import (
    BlockKind,
    Flag,
    HeaderBlock,
    encode_data_header,
    encode_frame_header,
    encode_go_away,
    encode_header_block,
    encode_ping,
    encode_window_update,
)
from streams.testing import read_all, stream_pair

from .pairs import framer_pair, socket_pair

pytestmark = pytest.mark.anyio


def quick(**values: object) -> FramerSettings:
    return FramerSettings(close_grace=0.2, **values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def against_raw_peer(
    settings: FramerSettings | None = None, *, client: bool = True, raw: bool = False
) -> AsyncIterator[tuple[FramerProvider, anyio.abc.ByteStream]]:
    """Our provider on one end of a socket, the test's bytes on the other."""
    ours, theirs = await socket_pair()
    provider = FramerProvider(ours, client=client, raw=raw, settings=settings or quick())
    async with theirs, provider:
        yield provider, theirs


async def read_until_closed(stream: anyio.abc.ByteStream) -> bytes:
    data = b""
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
        while True:
            data += await stream.receive()
    return data


# -- keepalive and round-trip time -------------------------------------------------------


async def test_keepalive_measures_rtt() -> None:
    with anyio.fail_after(5):
        async with framer_pair(quick(keepalive_interval=0.05)) as pair:
            while pair.client.rtt is None or pair.server.rtt is None:
                await anyio.sleep(0.01)
            rtt = await pair.client.ping()
            assert 0 <= rtt < 1
            assert pair.client.rtt == rtt


async def test_black_holed_peer_is_detected_by_ping_timeout() -> None:
    settings = quick(keepalive_interval=0.1, ping_timeout=0.3)
    with anyio.fail_after(5):
        async with against_raw_peer(settings) as (provider, peer):
            stream = await provider.open_stream(wait_accept=False)
            started = anyio.current_time()
            # the peer reads (so nothing blocks) but never answers
            async with anyio.create_task_group() as group:
                group.start_soon(read_until_closed, peer)
                with pytest.raises(ConnectionLost, match="ping"):
                    await stream.receive()
                group.cancel_scope.cancel()
            assert anyio.current_time() - started < 2
            assert isinstance(provider.failure, ConnectionLost)
            assert provider.is_closed


async def test_ping_on_a_dead_connection_raises() -> None:
    with anyio.fail_after(5):
        async with framer_pair(quick(keepalive_interval=None)) as pair:
            assert pair.break_connection is not None
            await pair.break_connection()
            await pair.client.wait_closed()
            with pytest.raises(ConnectionLost):
                await pair.client.ping()


# -- idle timeout --------------------------------------------------------------------------


async def test_idle_timeout_is_not_reset_by_keepalive() -> None:
    settings = quick(keepalive_interval=0.02, idle_timeout=0.3)
    with anyio.fail_after(5):
        async with framer_pair(settings, server_settings=quick()) as pair:
            listener = pair.server.listen()
            opened, accepted = await stream_pair(pair.client, listener)
            await anyio.sleep(0.5)
            assert not pair.client.is_closing, "closed while a stream was open"
            await opened.aclose()
            await accepted.aclose()
            started = anyio.current_time()
            await pair.client.wait_closed()
            assert anyio.current_time() - started < 1.5
            with pytest.raises(anyio.ClosedResourceError):
                await pair.client.open_stream()
            with pytest.raises(GoingAway):
                await pair.server.open_stream()


# -- opening: timeout, backlog, stream limit, Go Away --------------------------------------


async def test_open_timeout_fails_the_stream_not_the_connection() -> None:
    release = anyio.Event()

    async def handler(headers: Headers) -> tuple[None, bool]:
        if "x-hang" in headers:
            await release.wait()
        return None, True

    with anyio.fail_after(5):
        async with framer_pair(quick(open_timeout=0.2)) as pair:
            listener = pair.server.listen(handler)
            with pytest.raises(OpenTimeout):
                await pair.client.open_stream({"x-hang": "1"})
            opened, accepted = await stream_pair(pair.client, listener)
            await opened.send(b"still fine")
            assert await accepted.receive() == b"still fine"
            release.set()
            await opened.aclose()
            await accepted.aclose()


async def test_accept_backlog_and_stream_limit_refuse_retryably() -> None:
    server_settings = quick(accept_backlog=2, max_incoming_streams=3)
    with anyio.fail_after(5):
        async with framer_pair(quick(), server_settings=server_settings) as pair:
            listener = pair.server.listen()
            first = await pair.client.open_stream()
            second = await pair.client.open_stream()
            with pytest.raises(StreamRejected) as caught:
                await pair.client.open_stream()
            assert caught.value.retryable
            accepted = [await listener.accept(), await listener.accept()]
            third = await pair.client.open_stream()
            accepted.append(await listener.accept())
            with pytest.raises(StreamRejected) as caught:
                await pair.client.open_stream()  # a fourth concurrent stream
            assert caught.value.retryable
            for stream in (first, second, third, *accepted):
                await stream.aclose()


async def test_go_away_lets_open_streams_finish() -> None:
    with anyio.fail_after(5):
        async with framer_pair(quick()) as pair:
            listener = pair.server.listen()
            opened, accepted = await stream_pair(pair.client, listener)
            async with anyio.create_task_group() as group:
                group.start_soon(lambda: pair.server.aclose(grace=3))
                while not pair.client.is_closing:
                    await anyio.sleep(0.01)
                with pytest.raises(GoingAway) as caught:
                    await pair.client.open_stream()
                assert caught.value.retryable
                await opened.send(b"in flight")
                await opened.send_eof()
                assert await read_all(accepted) == b"in flight"
                await accepted.send(b"answer")
                await accepted.aclose()
                assert await read_all(opened) == b"answer"
                await opened.aclose()


# -- write timeout and buffers -------------------------------------------------------------


async def test_write_timeout_resets_a_stuck_stream() -> None:
    with anyio.fail_after(5):
        async with framer_pair(quick(write_timeout=0.3), server_settings=quick()) as pair:
            opened, accepted = await stream_pair(pair.client, pair.server.listen())
            started = anyio.current_time()
            with pytest.raises(StreamReset) as caught:
                await opened.send(b"x" * (4 << 20))  # the peer never reads
            assert not caught.value.remote
            assert caught.value.code == ErrorCode.CANCEL
            assert anyio.current_time() - started < 2
            received = 0
            error: StreamReset | None = None
            while error is None:
                try:
                    received += len(await accepted.receive())
                except StreamReset as exc:
                    error = exc
            assert error.remote
            assert received <= 256 * 1024


async def test_slow_but_steady_sends_do_not_time_out() -> None:
    with anyio.fail_after(10):
        async with framer_pair(quick(write_timeout=0.3), server_settings=quick()) as pair:
            opened, accepted = await stream_pair(pair.client, pair.server.listen())

            async def slow_reader() -> bytes:
                data = b""
                while len(data) < 2 << 20:
                    data += await accepted.receive(256 * 1024)
                    await anyio.sleep(0.05)
                return data

            async with anyio.create_task_group() as group:
                group.start_soon(slow_reader)
                await opened.send(b"y" * (2 << 20))  # takes ~0.4 s, progressing all along


async def test_connection_buffer_bound_pauses_reading() -> None:
    limit = 512 * 1024
    server_settings = quick(max_receive_window=256 * 1024, max_connection_buffer=limit)
    with anyio.fail_after(10):
        async with framer_pair(quick(), server_settings=server_settings) as pair:
            listener = pair.server.listen()
            pairs = [await stream_pair(pair.client, listener) for _ in range(4)]
            async with anyio.create_task_group() as group:
                for opened, _ in pairs:
                    group.start_soon(opened.send, b"z" * (250 * 1024))
                await anyio.sleep(0.3)
                assert isinstance(pair.server, FramerProvider)
                held = sum(stream.buffered for stream in pair.server.streams.values())
                assert held <= limit + pair.server.settings.read_size
                assert held < 4 * 250 * 1024
                # like HTTP/2's connection window, the bound holds back every stream:
                # reading them one after another could wait forever, so read them all
                for _, accepted in pairs:
                    group.start_soon(read_exactly, accepted, 250 * 1024)


async def read_exactly(stream: Stream, size: int) -> None:
    received = 0
    while received < size:
        received += len(await stream.receive())
    assert received == size


async def test_receive_window_grows_with_the_measured_rtt() -> None:
    settings = quick(keepalive_interval=None, max_receive_window=4 << 20)
    with anyio.fail_after(10):
        async with framer_pair(settings) as pair:
            assert isinstance(pair.server, FramerProvider)
            pair.server._rtt = 1.0  # as if the link had a long delay
            opened, accepted = await stream_pair(pair.client, pair.server.listen())
            async with anyio.create_task_group() as group:
                group.start_soon(opened.send, b"w" * (16 << 20))
                received = 0
                while received < 16 << 20:
                    received += len(await accepted.receive(1 << 20))
            assert isinstance(accepted, type(opened))
            window = accepted.receive_window  # type: ignore[attr-defined]
            assert window.size == 4 << 20


async def test_larger_initial_window_is_granted() -> None:
    settings = quick(receive_window=1 << 20, max_receive_window=1 << 20)
    with anyio.fail_after(10):
        async with framer_pair(settings) as pair:
            opened, _ = await stream_pair(pair.client, pair.server.listen())
            with anyio.move_on_after(0.3):
                await opened.send(b"v" * (2 << 20))
            # the whole larger window, less the OPEN header block it also carried
            assert opened.bytes_sent == (1 << 20) - 7  # type: ignore[attr-defined]
            await opened.reset()


# -- protocol errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (b"\x01" + encode_ping(1)[1:], ErrorCode.PROTOCOL_ERROR),
        (encode_frame_header(9, 0, 0, 0), ErrorCode.PROTOCOL_ERROR),
        (encode_window_update(7, 0, 0), ErrorCode.PROTOCOL_ERROR),
        (
            encode_data_header(2, 7, Flag.SYN)
            + encode_header_block(HeaderBlock(kind=BlockKind.OPEN))
            + encode_data_header(2, 300 * 1024)
            + b"x" * (300 * 1024),
            ErrorCode.FLOW_CONTROL_ERROR,
        ),
        (encode_window_update(1, 0x7FFFFFFF), ErrorCode.FLOW_CONTROL_ERROR),
    ],
    # (an OPEN block over the header limit refuses only its stream: tests/framer/test_limits.py)
    ids=["version", "type", "never-opened", "window", "window-overflow"],
)
async def test_malformed_input_fails_the_connection_with_a_protocol_error(
    frames: bytes, code: ErrorCode
) -> None:
    with anyio.fail_after(5):
        async with against_raw_peer() as (provider, peer):
            provider.listen()
            stream = await provider.open_stream(wait_accept=False)  # stream 1
            await peer.send(frames)
            with pytest.raises(ProtocolError) as caught:
                await stream.receive()
            assert caught.value.code == code
            assert isinstance(provider.failure, ProtocolError)
            sent = await read_until_closed(peer)
            assert sent.endswith(encode_go_away(1)), sent[-24:]  # type: ignore[arg-type]


async def test_frames_for_a_finished_stream_are_ignored() -> None:
    with anyio.fail_after(5):
        async with against_raw_peer(raw=True) as (provider, peer):
            stream = await provider.open_stream(wait_accept=False)
            await stream.reset()
            await peer.send(encode_window_update(1, 100, Flag.ACK) + encode_data_header(1, 3))
            await peer.send(b"abc" + encode_ping(5))
            answer = b""
            while encode_ping(5, ack=True) not in answer:
                answer += await peer.receive()
            assert not provider.is_closing


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"bogus": 1}, "bogus"),
        ({"receive_window": 1024}, "receive_window"),
        ({"ping_timeout": 0}, "ping_timeout"),
        ({"idle_timeout": -1}, "idle_timeout"),
        ({"max_header_block": 1 << 20}, "max_header_block"),
        ({"max_connection_buffer": 1024}, "max_connection_buffer"),
    ],
)
def test_bad_settings_name_their_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        FramerSettings.from_mapping(values)
    assert caught.value.path == field


def test_backend_options_reach_the_settings() -> None:
    with pytest.raises(ConfigError):
        BACKEND.connect("127.0.0.1:1", BackendOptions(settings={"keepalive_interval": -1}))


async def test_a_ping_flood_does_not_grow_the_output_without_bound() -> None:
    # pings unlimited in rate: what bounds the answers is max_queued_control_frames
    settings = quick(
        write_buffer=64 * 1024,
        keepalive_interval=None,
        pings_per_second=0,
        max_queued_control_frames=1000,
    )
    with anyio.fail_after(20):
        async with against_raw_peer(settings) as (provider, peer):
            # small socket buffers, so that our answers back up in our queue quickly
            for stream, option in (
                (peer, socket.SO_RCVBUF),
                (provider._transport, socket.SO_SNDBUF),
            ):
                raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
                raw.setsockopt(socket.SOL_SOCKET, option, 16 * 1024)
            flood = encode_ping(1) * 100_000
            most = 0
            # the peer never reads: 9.6 MB of answers are asked for
            with contextlib.suppress(anyio.BrokenResourceError):
                for _ in range(8):
                    await peer.send(flood)
                    most = max(most, provider._out.queued)
                    if provider.is_closing:
                        break
            while not provider.is_closing:
                await anyio.sleep(0.01)
            # answers are counted once the queue is past write_buffer: 1001 more, and the
            # Go Away, end it (what the writer took before is in flight, bounded the same)
            assert most <= 64 * 1024 + (1 + 1001 + 1) * 12
            assert isinstance(provider.failure, LimitExceeded)
            assert provider.failure.limit == "max_queued_control_frames"


async def test_a_bug_in_the_driver_fails_the_connection_not_the_task_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: FramerProvider, event: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(FramerProvider, "_on_control", broken)
    with anyio.fail_after(5):
        async with against_raw_peer() as (provider, peer):
            stream = await provider.open_stream(wait_accept=False)
            await peer.send(encode_ping(3))
            with pytest.raises(ProtocolError) as caught:
                await stream.receive()
            assert caught.value.code == ErrorCode.INTERNAL_ERROR
            assert (await read_until_closed(peer)).endswith(encode_go_away(2))  # type: ignore[arg-type]


async def test_streams_expose_the_connection_attributes() -> None:
    from streams._core.abc import StreamAttribute

    with anyio.fail_after(5):
        async with framer_pair(quick()) as pair:
            opened, accepted = await stream_pair(pair.client, pair.server.listen(), {"a": "b"})
            assert opened.extra(StreamAttribute.backend) == "framer"
            assert accepted.extra(StreamAttribute.headers)["a"] == "b"
            assert accepted.extra(StreamAttribute.stream_id) == opened.stream_id == 1
            assert not accepted.extra(StreamAttribute.local_open)
            local = opened.extra(anyio.abc.SocketAttribute.local_address)
            remote = accepted.extra(anyio.abc.SocketAttribute.remote_address)
            assert local == remote
            await opened.aclose()
            await accepted.aclose()
