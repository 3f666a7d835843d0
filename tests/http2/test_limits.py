"""The HTTP/2 backend's limits against abuse: the sans-IO pieces paired with an h2 peer in
memory, then the driver end to end. The attacks on a real server process are in
``tests/hardening/abuse/test_http2.py``."""

from __future__ import annotations

import logging

import anyio
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    WindowUpdateFrame,
)

from streams import ErrorCode, ProtocolError, StreamRejected
from streams._core.limits import FloodGuard
from streams.backends.http2 import Http2Settings
from streams.backends.http2._codec import GracefulH2Connection, new_connection
from streams.backends.http2._codec_limits import (
    MAX_HEADER_FRAMES,
    AnswerQueue,
    InboundLimits,
    LimitBreach,
)
from streams.testing import read_all
from tests.certificates import Certificates, make_certificates
from tests.http2.helpers import http2_pair, raw_pair

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUEST = [(":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/")]


def server(max_header_block: int = 1 << 16, **rates: float) -> GracefulH2Connection:
    """A server-side codec with *rates* (burst: one second's worth) and its preface
    already taken."""
    limits = InboundLimits(FloodGuard(rates, 1.0, 0.0), max_header_block)
    connection = new_connection(
        client=False,
        receive_window=65535,
        connection_window=65535,
        max_frame_size=16384,
        max_concurrent_streams=100,
        max_header_list_size=1 << 16,
        limits=limits,
    )
    connection.receive_data(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", 0.0)
    connection.data_to_send()
    connection.take_answer_count()
    return connection


def client() -> h2.connection.H2Connection:
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    connection.data_to_send()
    return connection


def goaway_code(connection: GracefulH2Connection) -> int:
    peer = client()
    events = peer.receive_data(connection.data_to_send())
    (goaway,) = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    return int(goaway.error_code or 0)


# -- the codec, in memory ------------------------------------------------------------------


def test_pings_beyond_the_rate_end_the_connection_with_enhance_your_calm() -> None:
    connection = server(pings_per_second=5)
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    connection.receive_data(ping * 5, 0.0)
    assert connection.take_answer_count() == 5
    with pytest.raises(LimitBreach) as caught:
        connection.receive_data(ping, 0.0)
    assert caught.value.exceeded.limit == "pings_per_second"
    assert goaway_code(connection) == ErrorCode.ENHANCE_YOUR_CALM


def test_the_rate_refills_with_time() -> None:
    connection = server(pings_per_second=5)
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    for second in range(10):
        connection.receive_data(ping * 5, float(second))


def test_rapid_reset_counts_resets() -> None:
    connection = server(resets_per_second=3)
    peer = client()
    for stream_id in (1, 3, 5, 7):
        peer.send_headers(stream_id, REQUEST)
        peer.reset_stream(stream_id)
    with pytest.raises(LimitBreach) as caught:
        connection.receive_data(peer.data_to_send(), 0.0)
    assert caught.value.exceeded.limit == "resets_per_second"


def test_cancelling_answered_streams_is_not_rapid_reset() -> None:
    connection = server(resets_per_second=3)
    peer = client()
    for stream_id in range(1, 20, 2):
        peer.send_headers(stream_id, REQUEST)
    connection.receive_data(peer.data_to_send(), 0.0)
    for stream_id in range(1, 20, 2):
        connection.send_headers(stream_id, [(":status", "200")])
        peer.reset_stream(stream_id)
    connection.receive_data(peer.data_to_send(), 0.0)


def test_new_streams_are_counted_but_trailers_are_not() -> None:
    connection = server(streams_per_second=2)
    peer = client()
    peer.send_headers(1, REQUEST)
    peer.send_headers(1, [("x-trailer", "1")], end_stream=True)
    peer.send_headers(3, REQUEST)
    connection.receive_data(peer.data_to_send(), 0.0)
    peer.send_headers(5, REQUEST)
    with pytest.raises(LimitBreach) as caught:
        connection.receive_data(peer.data_to_send(), 0.0)
    assert caught.value.exceeded.limit == "streams_per_second"


def test_empty_data_frames_are_counted_but_an_empty_end_of_stream_is_not() -> None:
    connection = server(empty_frames_per_second=2)
    peer = client()
    peer.send_headers(1, REQUEST)
    connection.receive_data(peer.data_to_send(), 0.0)
    empty = DataFrame(1).serialize()
    connection.receive_data(empty * 2, 0.0)
    with pytest.raises(LimitBreach) as caught:
        connection.receive_data(empty, 0.0)
    assert caught.value.exceeded.limit == "empty_frames_per_second"
    other = server(empty_frames_per_second=1)
    peer = client()
    peer.send_headers(1, REQUEST)
    peer.send_data(1, b"", end_stream=True)
    other.receive_data(peer.data_to_send(), 0.0)


def test_a_header_block_is_cut_by_its_compressed_size_as_it_arrives() -> None:
    connection = server(max_header_block=40_000)
    start = HeadersFrame(1, data=b"\x00" * 16000).serialize()
    connection.receive_data(start, 0.0)
    more = ContinuationFrame(1, data=b"\x00" * 16000).serialize()
    connection.receive_data(more, 0.0)
    with pytest.raises(LimitBreach) as caught:
        # cut here, with 48,000 bytes seen: the fragments are never joined or decoded
        connection.receive_data(more, 0.0)
    assert caught.value.exceeded.limit == "max_header_list_size"
    assert goaway_code(connection) == ErrorCode.ENHANCE_YOUR_CALM


def test_a_header_block_in_too_many_fragments_is_cut() -> None:
    connection = server()
    data = HeadersFrame(1, data=b"\x82").serialize()
    data += ContinuationFrame(1, data=b"\x84").serialize() * MAX_HEADER_FRAMES
    with pytest.raises(LimitBreach) as caught:
        connection.receive_data(data, 0.0)
    assert caught.value.exceeded.limit == "max_header_frames"


def test_empty_header_fragments_are_empty_frames() -> None:
    connection = server(empty_frames_per_second=3)
    data = HeadersFrame(1).serialize() + ContinuationFrame(1).serialize() * 3
    with pytest.raises(LimitBreach) as caught:
        connection.receive_data(data, 0.0)
    assert caught.value.exceeded.limit == "empty_frames_per_second"


def test_window_update_overflow_is_a_flow_control_error() -> None:
    connection = server()
    # our send window starts at 65,535: this takes it to exactly 2**31-1, one more is over
    connection.receive_data(
        WindowUpdateFrame(0, window_increment=0x7FFFFFFF - 65535).serialize(), 0.0
    )
    with pytest.raises(LimitBreach) as caught:
        connection.receive_data(WindowUpdateFrame(0, window_increment=1).serialize(), 0.0)
    assert caught.value.exceeded.limit == "window_overflow"
    assert goaway_code(connection) == ErrorCode.FLOW_CONTROL_ERROR


def test_data_beyond_the_connection_window_names_the_window() -> None:
    connection = server()
    peer = client()
    peer.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    for stream_id in (1, 3, 5, 7, 9):
        peer.send_headers(stream_id, REQUEST)
    connection.receive_data(peer.data_to_send(), 0.0)
    data = b"".join(DataFrame(s, data=b"x" * 16000).serialize() for s in (1, 3, 5, 7, 9))
    with pytest.raises(LimitBreach) as caught:
        connection.receive_data(data, 0.0)
    assert caught.value.exceeded.limit == "connection_window"
    assert caught.value.exceeded.code == ErrorCode.FLOW_CONTROL_ERROR


def test_answer_queue_counts_only_what_the_writer_has_not_taken() -> None:
    queue = AnswerQueue(limit=3)
    queue.queued(17, 1)
    queue.queued(100, 0)
    queue.queued(34, 2)
    queue.check()
    queue.queued(17, 1)
    with pytest.raises(ProtocolError) as caught:
        queue.check()
    assert caught.value.code == ErrorCode.ENHANCE_YOUR_CALM
    # the writer took all but the last 51 bytes: the last three answers still wait
    queue.taken(51)
    assert queue.pending == 3
    queue.taken(0)
    assert queue.pending == 0


# -- the driver ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.mark.anyio
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
async def test_a_flood_closes_the_connection_with_the_limits_code(
    caplog: pytest.LogCaptureFixture, certificates: Certificates, tls: bool
) -> None:
    # over TLS the linger cannot half-close: the GOAWAY must still arrive
    settings = Http2Settings(pings_per_second=2, flood_burst_seconds=1.0)
    with anyio.fail_after(10), caplog.at_level(logging.WARNING, "streams.http2"):
        async with http2_pair(settings, certificates=certificates if tls else None) as pair:
            with pytest.raises(ProtocolError) as caught:
                for _ in range(10):
                    await pair.client.ping()  # type: ignore[attr-defined]
            assert caught.value.code == ErrorCode.ENHANCE_YOUR_CALM
            assert "pings_per_second" in str(caught.value)
    (record,) = [r for r in caplog.records if getattr(r, "limit", None) == "pings_per_second"]
    assert record.levelno == logging.WARNING


@pytest.mark.anyio
async def test_too_many_headers_reject_only_that_stream(caplog: pytest.LogCaptureFixture) -> None:
    settings = Http2Settings(max_headers=16, close_grace=0.2)
    with anyio.fail_after(10), caplog.at_level(logging.WARNING, "streams.http2"):
        async with http2_pair(settings) as pair:
            listener = pair.server.listen()
            with pytest.raises(StreamRejected) as caught:
                await pair.client.open_stream({f"x-{i}": "v" for i in range(20)})
            assert caught.value.response_headers[":status"] == "431"
            stream = await pair.client.open_stream({"x-fine": "yes"})
            accepted = await listener.accept()
            await stream.send(b"still up")
            await stream.send_eof()
            assert await read_all(accepted) == b"still up"
    assert any(getattr(r, "limit", None) == "max_headers" for r in caplog.records)


@pytest.mark.anyio
async def test_tiny_data_frames_are_joined_as_they_arrive() -> None:
    with anyio.fail_after(10):
        async with raw_pair(our_side_is_client=True) as (provider, peer):
            stream = await provider.open_stream(wait_accept=False)
            await peer.until(
                lambda events: any(isinstance(e, h2.events.RequestReceived) for e in events)
            )
            peer.conn.send_headers(1, [(":status", "200")])
            await peer.flush()
            frames = (DataFrame(1, bytes([i % 256])).serialize() for i in range(20_000))
            await peer.send_raw(b"".join(frames))
            peer.conn.end_stream(1)
            await peer.flush()
            while not stream.recv_eof:  # type: ignore[attr-defined]
                await anyio.sleep(0.01)
            # one object per 16 KiB, not one per byte
            assert len(stream._chunks) <= 3  # type: ignore[attr-defined]
            first = await stream.receive(100)
            assert type(first) is bytes
            data = first + await read_all(stream)
            assert data == bytes(i % 256 for i in range(20_000))
