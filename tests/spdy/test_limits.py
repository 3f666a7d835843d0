"""The SPDY limits' pure pieces (header counts, streamed data frames, the rate checks, the
answer queue) and the driver's use of them, without a server process (the attacks
themselves are in ``tests/hardening/abuse/test_spdy.py``)."""

from __future__ import annotations

import logging
import struct

import anyio
import pytest

from streams._core.errors import ConfigError, ErrorCode, LimitExceeded
from streams.backends.spdy import SpdySettings
from streams.backends.spdy import _guard as guard_module
from streams.backends.spdy import codec as spdy
from streams.backends.spdy._guard import AnswerQueue, SessionGuard
from streams.backends.spdy.codec import RstStatus, SpdyCodec
from streams.backends.spdy.codec_headers import (
    TooManyHeaders,
    decode_header_block,
    encode_header_block,
)
from streams.backends.spdy.upgrade import MAX_HEAD, HeadTooLarge, upgrade_server
from tests.spdy.helpers import socket_pair
from tests.spdy.test_driver import QUIET, raw_peer

# -- header counts --------------------------------------------------------------------------


def test_header_count_counts_values_not_names() -> None:
    names = encode_header_block([(f"h{index}", "v") for index in range(10)])
    assert len(decode_header_block(names, 10)) == 10
    with pytest.raises(TooManyHeaders):
        decode_header_block(names, 9)
    # ten values of one name travel joined with NUL, and count ten
    joined = encode_header_block([("h", f"v{index}") for index in range(10)])
    assert len(decode_header_block(joined, 10)) == 10
    with pytest.raises(TooManyHeaders):
        decode_header_block(joined, 9)
    assert len(decode_header_block(joined)) == 10


def test_too_many_headers_fail_the_stream_and_the_session_goes_on() -> None:
    client = SpdyCodec(client=True)
    server = SpdyCodec(client=False, max_headers=4)
    many = client.syn_stream(client.next_stream_id(), [(f"h{index}", "v") for index in range(5)])
    [failed] = server.receive_data(many)
    assert failed == spdy.StreamFailed(
        stream_id=1,
        status=RstStatus.FRAME_TOO_LARGE,
        reason="header block of 5 names, more than 4",
        limit="max_headers",
    )
    # the compression context is intact: the next block decodes
    [opened] = server.receive_data(client.syn_stream(client.next_stream_id(), [("a", "b")]))
    assert opened == spdy.StreamOpened(stream_id=3, headers=(("a", "b"),), fin=False)


# -- data frames stream out of the codec ----------------------------------------------------


def test_a_large_data_frame_is_never_held_whole() -> None:
    client = SpdyCodec(client=True)
    server = SpdyCodec(client=False)
    server.receive_data(client.syn_stream(client.next_stream_id(), [("a", "b")]))
    payload = bytes(range(256)) * 4096  # 1 MiB
    wire = client.data_header(1, len(payload), fin=True) + payload
    pieces: list[spdy.Event] = []
    for start in range(0, len(wire), 4096):
        pieces += server.receive_data(wire[start : start + 4096])
        assert len(server._buffer) < 4096
    assert all(isinstance(piece, spdy.DataReceived) for piece in pieces)
    data = [piece for piece in pieces if isinstance(piece, spdy.DataReceived)]
    assert b"".join(piece.data for piece in data) == payload
    assert [piece.fin for piece in data] == [False] * (len(data) - 1) + [True]


def test_a_failed_data_frame_fails_once_then_is_discarded_piece_by_piece() -> None:
    client = SpdyCodec(client=True)
    server = SpdyCodec(client=False)
    wire = struct.pack(">II", 7, 3000) + b"x" * 3000
    first = server.receive_data(wire[:1008])
    rest = server.receive_data(wire[1008:])
    assert first == [
        spdy.StreamFailed(
            stream_id=7,
            status=RstStatus.INVALID_STREAM,
            reason="data for a stream that was never opened",
            discarded=1000,
        )
    ]
    assert rest == [spdy.DataReceived(stream_id=7, data=b"x" * 2000, fin=False, open=False)]
    # and the session goes on
    [opened] = server.receive_data(client.syn_stream(client.next_stream_id(), [("a", "b")]))
    assert isinstance(opened, spdy.StreamOpened)


# -- rate checks ----------------------------------------------------------------------------


def test_the_guard_counts_what_costs_work_and_names_the_limit() -> None:
    guard = SessionGuard(SpdySettings(pings_per_second=1, flood_burst_seconds=3), "peer", 0.0)
    ping = spdy.PingReceived(ping_id=1)
    for _ in range(3):
        guard.check_event(ping, 0.0, answered_ping=True)
    # answers to our own pings cost nothing and are not counted
    guard.check_event(ping, 0.0, answered_ping=False)
    with pytest.raises(LimitExceeded) as exceeded:
        guard.check_event(ping, 0.0, answered_ping=True)
    assert exceeded.value.limit == "pings_per_second"
    assert exceeded.value.code == ErrorCode.ENHANCE_YOUR_CALM
    # a second later there is room for one more
    guard.check_event(ping, 1.0, answered_ping=True)


@pytest.mark.parametrize(
    ("event", "limit"),
    [
        (spdy.DataReceived(stream_id=1, data=b"", fin=False), "empty_frames_per_second"),
        (spdy.HeadersReceived(stream_id=1, headers=(), fin=False), "empty_frames_per_second"),
        (spdy.StreamOpened(stream_id=1, headers=(), fin=False), "streams_per_second"),
        (spdy.ResetReceived(stream_id=1, status=5), "resets_per_second"),
        (spdy.StreamFailed(stream_id=1, status=RstStatus.CANCEL, reason=""), "resets_per_second"),
        (spdy.SettingsReceived(settings=(), clear=False), "settings_per_second"),
    ],
)
def test_each_costly_frame_has_its_limit(event: spdy.Event, limit: str) -> None:
    settings = SpdySettings(
        flood_burst_seconds=1,
        streams_per_second=1,
        resets_per_second=1,
        settings_per_second=1,
        empty_frames_per_second=1,
    )
    guard = SessionGuard(settings, "peer", 0.0)
    guard.check_event(event, 0.0, answered_ping=False)
    with pytest.raises(LimitExceeded) as exceeded:
        guard.check_event(event, 0.0, answered_ping=False)
    assert exceeded.value.limit == limit
    # frames with payload are not limited by rate
    for data, fin in [(b"x", False), (b"", True)] * 10:
        payload = spdy.DataReceived(stream_id=1, data=data, fin=fin)
        guard.check_event(payload, 0.0, answered_ping=False)


def test_stream_limits_log_once_per_session_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    guard = SessionGuard(SpdySettings(), "127.0.0.1:9", 0.0)
    log = logging.getLogger("streams.spdy")
    with caplog.at_level(logging.DEBUG, "streams.spdy"):
        for stream_id in (1, 3, 5):
            guard.stream_limit("max_incoming_streams", stream_id, "full", "refused", log)
    levels = [record.levelno for record in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert caplog.records[0].limit == "max_incoming_streams"  # type: ignore[attr-defined]
    assert caplog.records[0].peer == "127.0.0.1:9"  # type: ignore[attr-defined]


# -- answers for a peer that does not read --------------------------------------------------


class FakeWire:
    def __init__(self) -> None:
        self.sends = 0

    async def wait_send(self) -> None:
        await anyio.sleep_forever()


@pytest.mark.anyio
async def test_answers_are_counted_until_the_writer_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard_module, "ANSWER_GRACE", 0.05)
    wire = FakeWire()
    queue = AnswerQueue(wire, max_frames=3, max_bytes=100)  # type: ignore[arg-type]
    for _ in range(3):
        queue.add(12)
    assert queue.over() is None
    queue.add(12)
    assert queue.over() == "max_queued_control_frames"
    # the writer took the queue: only answers queued since count
    wire.sends += 1
    assert queue.over() is None
    await queue.wait_for_writer()
    queue.add(101)
    assert queue.over() == "max_queued_control_bytes"
    with anyio.fail_after(5), pytest.raises(LimitExceeded) as exceeded:
        await queue.wait_for_writer()
    assert exceeded.value.limit == "max_queued_control_bytes"


# -- the driver -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_data_for_unknown_streams_counts_against_the_session_window() -> None:
    # it was credited back without being charged, so a peer could grow the window at will
    settings = SpdySettings(
        keepalive_interval=None, confirm_replies=False, session_window=65536, resets_per_second=0
    )
    async with raw_peer(settings, provider_is_client=False) as (provider, peer):
        frame = struct.pack(">II", 0x7FFFFFF1, 1024) + b"x" * 1024
        for _ in range(256):
            await peer.send(frame)
        await peer.expect(lambda e: isinstance(e, spdy.WindowUpdateReceived))
        with anyio.fail_after(5):
            while len([e for e in peer.events if isinstance(e, spdy.ResetReceived)]) < 200:
                peer.events += peer.codec.receive_data(await peer.stream.receive())
        assert provider._session_recv.available <= 65536
        assert provider.failure is None


@pytest.mark.anyio
async def test_a_session_window_overflow_is_a_limit_with_flow_control_error() -> None:
    async with raw_peer(QUIET) as (provider, peer):
        await peer.send(peer.codec.window_update(0, 0x7FFFFFFF))
        await peer.closed()
        assert isinstance(provider.failure, LimitExceeded)
        assert provider.failure.limit == "window_overflow"
        assert provider.failure.code == ErrorCode.FLOW_CONTROL_ERROR
        goaway = [e for e in peer.events if isinstance(e, spdy.GoAwayReceived)]
        assert [e.status for e in goaway] == [spdy.GoAwayStatus.PROTOCOL_ERROR]


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"max_connection_headers": 1024}, "max_connection_headers"),
        ({"max_queued_control_bytes": 1024}, "max_queued_control_bytes"),
    ],
)
def test_new_settings_name_the_bad_field(overrides: dict[str, int], path: str) -> None:
    with pytest.raises(ConfigError) as error:
        SpdySettings(**overrides)  # type: ignore[arg-type]
    assert error.value.path == path


# -- the HTTP/1.1 upgrade -------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_upgrade_head_past_the_limit_is_answered_431_and_named() -> None:
    ours, theirs = await socket_pair()
    async with ours, theirs:
        head = b"POST / HTTP/1.1\r\n" + b"x-pad: " + b"a" * MAX_HEAD
        async with anyio.create_task_group() as group:
            group.start_soon(theirs.send, head)
            with anyio.fail_after(5), pytest.raises(HeadTooLarge) as refused:
                await upgrade_server(ours)
        assert refused.value.limit == "max_upgrade_head"
        assert refused.value.status == 431
        with anyio.fail_after(5):
            assert (await theirs.receive()).startswith(b"HTTP/1.1 431 ")
