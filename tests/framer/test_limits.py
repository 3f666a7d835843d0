"""The framer's abuse limits: the codec's pure pieces without a loop, then the driver
against a raw peer on a real socket (the whole server is attacked in
``tests/hardening/abuse/test_framer.py``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import pytest

from streams import ErrorCode, LimitExceeded, StreamRejected, StreamReset
from streams.backends.framer import FramerProvider, FramerSettings
from streams.backends.framer._limits import ConnectionLimits
from streams.backends.framer.codec import (
    BlockKind,
    DataReceived,
    EmptyFrame,
    Flag,
    FrameDecoder,
    HeaderBlock,
    HeaderBlockReader,
    HeaderBlockRefused,
    WindowUpdated,
    encode_data_header,
    encode_go_away,
    encode_header_block,
    encode_ping,
    encode_window_update,
)

from .pairs import socket_pair

# -- the codec, without a loop ---------------------------------------------------------------


def test_an_announced_oversize_block_is_refused_before_it_is_held() -> None:
    reader = HeaderBlockReader((BlockKind.OPEN,), 1024)
    with pytest.raises(HeaderBlockRefused) as caught:
        reader.feed(b"\x01" + (1 << 30).to_bytes(4, "big"))
    assert caught.value.limit == "max_header_block"
    assert reader.pending == 0


def test_too_many_headers_are_refused() -> None:
    block = encode_header_block(
        HeaderBlock(kind=BlockKind.OPEN, headers=tuple((f"h{i}", "v") for i in range(9)))
    )
    with pytest.raises(HeaderBlockRefused) as caught:
        HeaderBlockReader((BlockKind.OPEN,), 64 * 1024, max_headers=8).feed(block)
    assert caught.value.limit == "max_headers"
    done, rest = HeaderBlockReader((BlockKind.OPEN,), 64 * 1024, max_headers=9).feed(block)
    assert done is not None and len(done.headers) == 9 and rest == b""


def test_a_block_dribbled_a_byte_at_a_time_is_gathered() -> None:
    headers = tuple((f"x-{i}", "v" * 200) for i in range(100))
    block = encode_header_block(HeaderBlock(kind=BlockKind.OPEN, headers=headers))
    reader = HeaderBlockReader((BlockKind.OPEN,), 64 * 1024)
    for index in range(len(block) - 1):
        assert reader.feed(block[index : index + 1]) == (None, b"")
    assert reader.pending == len(block) - 1
    done, rest = reader.feed(block[-1:] + b"data")
    assert done is not None and done.headers == headers
    assert rest == b"data"
    assert reader.pending == 0


def test_frames_without_effect_are_their_own_event() -> None:
    decoder = FrameDecoder(client=False)
    events = decoder.receive_data(
        encode_window_update(1, 0, Flag.SYN)
        + encode_data_header(1, 0)
        + encode_window_update(1, 0)
        + encode_window_update(1, 1)
        + encode_data_header(1, 0, Flag.FIN)
    )
    assert events == [
        WindowUpdated(stream_id=1, increment=0, flags=Flag.SYN),
        EmptyFrame(stream_id=1),
        EmptyFrame(stream_id=1),
        WindowUpdated(stream_id=1, increment=1, flags=0),
        DataReceived(stream_id=1, data=b"", flags=Flag.FIN),
    ]


class _Queue:
    """What ConnectionLimits reads of the output queue."""

    def __init__(self) -> None:
        self.queued = 0


def test_answers_count_only_while_the_output_is_backed_up() -> None:
    settings = FramerSettings(write_buffer=4096, max_queued_control_frames=10)
    queue = _Queue()
    limits = ConnectionLimits(settings, queue, 0.0, "peer")  # type: ignore[arg-type]
    for _ in range(1000):  # a peer that keeps up: never counted
        queue.queued = 100
        limits.answered(12)
    queue.queued = 5000
    for _ in range(10):
        limits.answered(12)
    with pytest.raises(LimitExceeded) as caught:
        limits.answered(12)
    assert caught.value.limit == "max_queued_control_frames"
    assert caught.value.code == ErrorCode.ENHANCE_YOUR_CALM
    queue.queued = 0  # the writer took the queue: the count starts again
    limits.answered(12)
    queue.queued = 5000
    with pytest.raises(LimitExceeded):
        limits.answered(10 * 1024)  # a large answer counts one per KiB


def test_rate_limits_use_the_settings() -> None:
    settings = FramerSettings(pings_per_second=2, flood_burst_seconds=1)
    limits = ConnectionLimits(settings, _Queue(), 0.0, "peer")  # type: ignore[arg-type]
    limits.check("pings_per_second", 0.0)
    limits.check("pings_per_second", 0.0)
    with pytest.raises(LimitExceeded) as caught:
        limits.check("pings_per_second", 0.0)
    assert caught.value.limit == "pings_per_second"
    limits.check("pings_per_second", 0.5)  # refilled at 2 per second


def test_framer_defaults_bound_what_one_connection_may_hold() -> None:
    settings = FramerSettings()
    assert settings.max_incoming_streams == 256
    assert settings.max_connection_buffer == 32 << 20
    # every stream's window, at the stream limit, fits well under the 200 MB bound
    assert settings.max_incoming_streams * settings.receive_window <= 64 << 20


# -- the driver, against a raw peer ---------------------------------------------------------


def quick(**values: object) -> FramerSettings:
    return FramerSettings(close_grace=0.2, keepalive_interval=None, **values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def against_raw_peer(
    settings: FramerSettings, *, client: bool = False, raw: bool = False
) -> AsyncIterator[tuple[FramerProvider, anyio.abc.ByteStream]]:
    ours, theirs = await socket_pair()
    provider = FramerProvider(ours, client=client, raw=raw, settings=settings)
    async with theirs, provider:
        yield provider, theirs


async def read_until(peer: anyio.abc.ByteStream, wanted: bytes) -> bytes:
    data = b""
    while wanted not in data:
        data += await peer.receive()
    return data


async def read_until_closed(peer: anyio.abc.ByteStream) -> bytes:
    data = b""
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
        while True:
            data += await peer.receive()
    return data


def opening(stream_id: int, block: bytes | None = None, flags: int = 0) -> bytes:
    if block is None:
        block = encode_header_block(HeaderBlock(kind=BlockKind.OPEN))
    return encode_data_header(stream_id, len(block), Flag.SYN | flags) + block


@pytest.mark.anyio
async def test_an_oversize_open_block_refuses_only_its_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "streams.framer")
    head = b"\x01" + (1 << 20).to_bytes(4, "big")
    with anyio.fail_after(5):
        async with against_raw_peer(quick()) as (provider, peer):
            listener = provider.listen()
            await peer.send(
                opening(1)
                + encode_data_header(3, len(head) + 100, Flag.SYN)
                + head
                + b"x" * 100
                + encode_data_header(3, 50)  # the rest of the block, ignored
                + b"y" * 50
                + opening(5)
            )
            first = await listener.accept()
            fifth = await listener.accept()
            assert (first.stream_id, fifth.stream_id) == (1, 5)
            refusal = encode_header_block(
                HeaderBlock(
                    kind=BlockKind.REJECT,
                    code=ErrorCode.REFUSED_STREAM,
                    reason="a header block of 1048576 bytes exceeds the limit of 65536",
                )
            )
            await read_until(peer, encode_data_header(3, len(refusal), 10) + refusal)
            assert not provider.is_closing
            assert "limit max_header_block exceeded" in caplog.text
            await first.aclose()
            await fifth.aclose()


@pytest.mark.anyio
async def test_an_oversize_answer_resets_our_stream_only() -> None:
    head = b"\x02" + (1 << 20).to_bytes(4, "big")
    with anyio.fail_after(5):
        async with against_raw_peer(quick(), client=True) as (provider, peer):
            stream = await provider.open_stream(wait_accept=False)
            await peer.send(encode_data_header(1, len(head), Flag.ACK) + head)
            with pytest.raises(StreamReset) as caught:
                await stream.accepted()
            assert caught.value.code == ErrorCode.PROTOCOL_ERROR
            assert not caught.value.remote
            await read_until(peer, encode_window_update(1, ErrorCode.PROTOCOL_ERROR, Flag.RST))
            await peer.send(encode_ping(9))
            await read_until(peer, encode_ping(9, ack=True))
            assert not provider.is_closing


@pytest.mark.anyio
async def test_streams_with_unfinished_headers_count_against_the_stream_limit() -> None:
    partial = b"\x01" + (1000).to_bytes(4, "big") + b"\x00"  # never completed
    with anyio.fail_after(5):
        async with against_raw_peer(quick(max_incoming_streams=4)) as (provider, peer):
            provider.listen()
            await peer.send(
                b"".join(opening(1 + 2 * i, partial) for i in range(4)) + opening(9, partial)
            )
            await read_until(peer, encode_data_header(9, 0, 10)[:8])  # ACK|RST on stream 9
            assert len(provider._announced) == 4
            assert not provider.is_closing


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("limit", "settings", "frames"),
    [
        ("pings_per_second", {"pings_per_second": 5}, encode_ping(1) * 20),
        (
            "pings_per_second",
            {"pings_per_second": 5},
            encode_ping(77, ack=True) * 20,  # answers nobody asked for
        ),
        (
            "streams_per_second",
            {"streams_per_second": 5},
            b"".join(opening(i) for i in (1, 3, 5, 7, 9, 11)),
        ),
        (
            "resets_per_second",
            {"resets_per_second": 3},
            b"".join(opening(i) + encode_window_update(i, 8, Flag.RST) for i in (1, 3, 5, 7)),
        ),
        (
            "resets_per_second",
            {"resets_per_second": 3},
            opening(1)
            + encode_window_update(1, 8, Flag.RST)
            + encode_window_update(1, 8, Flag.RST) * 5,  # on a finished stream too
        ),
        (
            "empty_frames_per_second",
            {"empty_frames_per_second": 5},
            opening(1) + encode_data_header(1, 0) * 10,
        ),
        (
            "empty_frames_per_second",
            {"empty_frames_per_second": 5},
            opening(1) + encode_window_update(1, 1) * 10,
        ),
    ],
    ids=[
        "pings",
        "unasked-answers",
        "streams",
        "resets",
        "resets-finished",
        "empty-data",
        "tiny-updates",
    ],
)
async def test_floods_close_the_connection_naming_the_limit(
    limit: str, settings: dict[str, float], frames: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "streams.limits")
    with anyio.fail_after(5):
        async with against_raw_peer(quick(flood_burst_seconds=1, **settings)) as (
            provider,
            peer,
        ):
            provider.listen()
            await peer.send(frames)
            # the Go Away is the last frame: the provider half-closes after it
            sent = await read_until(peer, encode_go_away(1))
            assert sent.endswith(encode_go_away(1)), sent[-24:]  # type: ignore[arg-type]
            assert await read_until_closed(peer) == b""
            assert isinstance(provider.failure, LimitExceeded)
            assert provider.failure.limit == limit
            assert provider.failure.code == ErrorCode.ENHANCE_YOUR_CALM
            assert f"limit {limit} exceeded" in caplog.text
            await peer.aclose()  # the provider waits for the peer's close after its own


@pytest.mark.anyio
async def test_a_refused_stream_raises_for_the_opener() -> None:
    # our own provider as the opener, against one that refuses by header block size
    small = quick(max_header_block=64)
    ours, theirs = await socket_pair()
    client = FramerProvider(ours, client=True, settings=quick())
    server = FramerProvider(theirs, client=False, settings=small)
    with anyio.fail_after(5):
        async with client, server:
            server.listen()
            with pytest.raises(StreamRejected) as caught:
                await client.open_stream({"x-big": "v" * 200})
            assert caught.value.code == ErrorCode.REFUSED_STREAM
            assert not caught.value.retryable
            assert "exceeds the limit of 64" in caught.value.reason
            stream = await client.open_stream({"x-small": "v"})
            await stream.aclose()
