"""The HTTP/2 driver's own behaviour: the mapping, Go Away, limits, keepalive, broken
peers, TLS without h2. A hand-driven h2 peer sends exactly the frames each test needs."""

from __future__ import annotations

import base64
import contextlib
import random
import ssl

import anyio
import h2.events
import pytest
from anyio.streams.tls import TLSStream
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame

from streams import (
    ConnectionLost,
    ErrorCode,
    GoingAway,
    ProtocolError,
    StreamClosed,
    StreamError,
    StreamRejected,
)
from streams._core.backend import BackendOptions
from streams._core.headers import Headers
from streams._core.transport import TLSConfig
from streams.backends.http2 import BACKEND, Http2Settings, Http2Stream
from streams.testing import read_all
from streams.testing._pairs import stream_pair
from tests.certificates import Certificates, make_certificates
from tests.http2.helpers import http2_pair, raw_pair

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def is_goaway(event: object) -> bool:
    return isinstance(event, h2.events.ConnectionTerminated)


def requests(events: list[object]) -> list[h2.events.RequestReceived]:
    return [e for e in events if isinstance(e, h2.events.RequestReceived)]


# -- the mapping, end to end ---------------------------------------------------------------


async def test_request_headers_get_defaults_and_overrides() -> None:
    with anyio.fail_after(10):
        async with http2_pair() as pair:
            listener = pair.server.listen()
            opened, accepted = await stream_pair(pair.client, listener, {"X-Trace": "a"})
            assert accepted.headers[":method"] == "POST"
            assert accepted.headers[":path"] == "/"
            assert accepted.headers[":scheme"] == "http"
            assert accepted.headers["x-trace"] == "a"
            await opened.aclose()
            await accepted.aclose()
            headers = {":path": "/api?q=1", ":authority": "example.com", ":method": "PUT"}
            opened, accepted = await stream_pair(pair.client, listener, headers)
            assert accepted.headers[":path"] == "/api?q=1"
            assert accepted.headers[":authority"] == "example.com"
            assert accepted.headers[":method"] == "PUT"
            await opened.aclose()
            await accepted.aclose()


async def test_connection_specific_header_is_refused_before_sending() -> None:
    with anyio.fail_after(10):
        async with http2_pair() as pair:
            listener = pair.server.listen()
            with pytest.raises(ValueError, match="connection-specific"):
                await pair.client.open_stream({"connection": "close"})
            with pytest.raises(ValueError, match="pseudo-header"):
                await pair.client.open_stream({":status": "200"})
            opened, accepted = await stream_pair(pair.client, listener)
            await opened.send(b"still fine")
            assert await accepted.receive() == b"still fine"
            await opened.aclose()
            await accepted.aclose()


async def test_get_ends_the_request_with_its_headers() -> None:
    with anyio.fail_after(10):
        async with http2_pair() as pair:
            listener = pair.server.listen()
            opened, accepted = await stream_pair(pair.client, listener, {":method": "GET"})
            assert await read_all(accepted) == b""
            with pytest.raises(StreamClosed):
                await opened.send(b"a GET has no body")
            await accepted.send(b"the body")
            await accepted.send_eof()
            assert await read_all(opened) == b"the body"
            assert opened.response_headers is not None
            assert opened.response_headers[":status"] == "200"


async def test_rejection_carries_the_handlers_status() -> None:
    def handler(headers: Headers) -> tuple[dict[str, str], bool]:
        if "x-boom" in headers:
            raise RuntimeError("boom")
        return {":status": "404", "x-why": "no such thing"}, False

    with anyio.fail_after(10):
        async with http2_pair() as pair:
            listener = pair.server.listen(handler)
            with pytest.raises(StreamRejected) as caught:
                await pair.client.open_stream()
            assert caught.value.response_headers[":status"] == "404"
            assert caught.value.response_headers["x-why"] == "no such thing"
            assert not caught.value.retryable
            with pytest.raises(StreamRejected) as caught:
                await pair.client.open_stream({"x-boom": "1"})
            assert caught.value.response_headers[":status"] == "500"
            assert caught.value.code == ErrorCode.INTERNAL_ERROR
            with pytest.raises(RuntimeError):
                await listener.accept()


async def test_refusal_without_looking_is_retryable() -> None:
    with anyio.fail_after(10):
        async with http2_pair() as pair:
            await pair.server.listen().aclose()
            with pytest.raises(StreamRejected) as caught:
                await pair.client.open_stream()
            assert caught.value.retryable
            assert caught.value.code == ErrorCode.REFUSED_STREAM


async def test_server_cannot_open_streams() -> None:
    with anyio.fail_after(10):
        async with http2_pair() as pair:
            with pytest.raises(StreamError, match="server cannot open"):
                await pair.server.open_stream()


async def test_trailers_are_kept() -> None:
    with anyio.fail_after(10):
        async with raw_pair(our_side_is_client=True) as (provider, peer):
            stream = await provider.open_stream(wait_accept=False)
            await stream.send_eof()
            await peer.until(lambda events: len(requests(events)) == 1)
            peer.conn.send_headers(1, [(":status", "200")])
            peer.conn.send_data(1, b"body")
            peer.conn.send_headers(1, [("grpc-status", "0")], end_stream=True)
            await peer.flush()
            assert await read_all(stream) == b"body"
            assert isinstance(stream, Http2Stream)
            assert stream.trailers == Headers({"grpc-status": "0"})


# -- Go Away, limits, keepalive ----------------------------------------------------------------


async def test_goaway_fails_streams_above_last_id_as_retryable() -> None:
    with anyio.fail_after(10):
        async with raw_pair(our_side_is_client=True) as (provider, peer):
            streams = [await provider.open_stream(wait_accept=False) for _ in range(3)]
            assert [s.stream_id for s in streams] == [1, 3, 5]
            await peer.until(lambda events: len(requests(events)) == 3)
            peer.conn.send_headers(1, [(":status", "200")])
            peer.conn.send_graceful_goaway(1)
            peer.conn.send_data(1, b"finished after go away", end_stream=True)
            await peer.flush()
            for stream in streams[1:]:
                with pytest.raises(GoingAway) as caught:
                    await stream.accepted()
                assert caught.value.retryable
                assert caught.value.last_stream_id == 1
            await streams[0].accepted()
            assert await read_all(streams[0]) == b"finished after go away"
            with pytest.raises(GoingAway):
                await provider.open_stream()


async def test_graceful_close_sends_goaway_and_lets_streams_finish() -> None:
    with anyio.fail_after(10):
        async with raw_pair(our_side_is_client=False) as (provider, peer):
            listener = provider.listen()
            peer.conn.send_headers(1, [(":method", "POST"), (":scheme", "http"),
                                       (":authority", "x"), (":path", "/")])  # fmt: skip
            await peer.flush()
            stream = await listener.accept()
            async with anyio.create_task_group() as group:
                group.start_soon(provider.aclose)
                await peer.until(
                    lambda events: any(
                        isinstance(e, h2.events.ConnectionTerminated) for e in events
                    )
                )
                goaway = next(
                    e for e in peer.events if isinstance(e, h2.events.ConnectionTerminated)
                )
                assert goaway.error_code == 0
                assert goaway.last_stream_id == 1
                peer.conn.send_data(1, b"late but allowed", end_stream=True)
                await peer.flush()
                assert await read_all(stream) == b"late but allowed"
                await stream.send(b"reply")
                await stream.aclose()
                await peer.until(
                    lambda events: any(isinstance(e, h2.events.StreamEnded) for e in events)
                )
            data = b"".join(e.data for e in peer.events if isinstance(e, h2.events.DataReceived))
            assert data == b"reply"


async def test_client_waits_for_the_peers_stream_limit() -> None:
    limit = {SettingCodes.MAX_CONCURRENT_STREAMS: 2}
    with anyio.fail_after(10):
        async with raw_pair(our_side_is_client=True, peer_settings=limit) as (provider, peer):
            await peer.until(
                lambda events: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events)
            )
            while provider._conn.remote_settings.max_concurrent_streams != 2:
                await anyio.sleep(0.01)
            first = [await provider.open_stream(wait_accept=False) for _ in range(2)]
            third: list[object] = []

            async def open_third() -> None:
                third.append(await provider.open_stream(wait_accept=False))

            async with anyio.create_task_group() as group:
                group.start_soon(open_third)
                await peer.until(lambda events: len(requests(events)) == 2)
                await anyio.sleep(0.2)
                assert not third, "a third stream was opened beyond the peer's limit"
                peer.conn.reset_stream(first[0].stream_id, ErrorCode.CANCEL)
                await peer.flush()
                await peer.until(lambda events: len(requests(events)) == 3)
            assert len(third) == 1


async def test_server_refuses_streams_beyond_its_limit() -> None:
    settings = Http2Settings(max_incoming_streams=2, close_grace=0.2)
    with anyio.fail_after(10):
        async with raw_pair(our_side_is_client=False, settings=settings) as (provider, peer):
            provider.listen()
            request = [
                (":method", "POST"),
                (":scheme", "http"),
                (":authority", "x"),
                (":path", "/"),
            ]
            for stream_id in (1, 3, 5):
                peer.conn.send_headers(stream_id, request)
            await peer.flush()
            await peer.until(
                lambda events: (
                    any(isinstance(e, h2.events.StreamReset) for e in events)
                    and sum(isinstance(e, h2.events.ResponseReceived) for e in events) == 2
                )
            )
            reset = next(e for e in peer.events if isinstance(e, h2.events.StreamReset))
            assert reset.stream_id == 5
            assert reset.error_code == ErrorCode.REFUSED_STREAM
            assert not provider.is_closing, "one stream too many closed the connection"


async def test_ping_measures_the_round_trip() -> None:
    with anyio.fail_after(10):
        async with http2_pair() as pair:
            rtt = await pair.client.ping()  # type: ignore[attr-defined]
            assert 0 <= rtt < 5
            assert pair.client.rtt is not None


async def test_unanswered_keepalive_fails_the_connection() -> None:
    settings = Http2Settings(keepalive_interval=0.1, ping_timeout=0.3, close_grace=0.2)
    with anyio.fail_after(10):
        async with raw_pair(our_side_is_client=True, settings=settings) as (provider, _peer):
            # the peer never reads, so no PING is ever answered
            while provider.failure is None:
                await anyio.sleep(0.05)
            assert "PING" in str(provider.failure)
            with pytest.raises(ConnectionLost):
                await provider.open_stream()


# -- broken peers --------------------------------------------------------------------------


async def test_malformed_frame_is_a_protocol_error() -> None:
    with anyio.fail_after(10):
        async with raw_pair(our_side_is_client=True) as (provider, peer):
            stream = await provider.open_stream(wait_accept=False)
            await peer.until(lambda events: len(requests(events)) == 1)
            # DATA on stream 0 is a connection error of type PROTOCOL_ERROR
            await peer.send_raw(b"\x00\x00\x04\x00\x00\x00\x00\x00\x00abcd")
            with pytest.raises(ProtocolError) as caught:
                await stream.receive()
            assert caught.value.code == ErrorCode.PROTOCOL_ERROR
            await peer.until(
                lambda events: any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
            )
            goaway = next(e for e in peer.events if isinstance(e, h2.events.ConnectionTerminated))
            assert goaway.error_code == ErrorCode.PROTOCOL_ERROR


async def test_data_beyond_the_window_is_a_flow_control_error() -> None:
    settings = Http2Settings(receive_window=65535, max_receive_window=65535, close_grace=0.2)
    with anyio.fail_after(10):
        async with raw_pair(our_side_is_client=True, settings=settings) as (provider, peer):
            stream = await provider.open_stream(wait_accept=False)
            await peer.until(lambda events: len(requests(events)) == 1)
            peer.conn.send_headers(1, [(":status", "200")])
            await peer.flush()
            frames = b"".join(DataFrame(1, b"x" * 16384).serialize() for _ in range(5))
            await peer.send_raw(frames)
            # nothing is read meanwhile, so no credit can be granted
            while provider.failure is None:
                await anyio.sleep(0.01)
            with pytest.raises(ProtocolError) as caught:
                await read_all(stream)
            assert caught.value.code == ErrorCode.FLOW_CONTROL_ERROR


async def test_tls_peer_without_h2_is_a_clear_error(certificates: Certificates) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificates.cert), str(certificates.key))
    context.set_alpn_protocols(["http/1.1"])
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    listener = multi.listeners[0]
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve_one() -> None:
        raw = await listener.accept()
        async with raw:
            with anyio.move_on_after(5), contextlib.suppress(anyio.BrokenResourceError):
                wrapped = await TLSStream.wrap(raw, server_side=True, ssl_context=context)
                await wrapped.receive()

    options = BackendOptions(tls=TLSConfig(ca=str(certificates.ca)))
    with anyio.fail_after(10):
        async with listener, anyio.create_task_group() as group:
            group.start_soon(serve_one)
            with pytest.raises(ConnectionLost, match="did not negotiate HTTP/2"):
                async with BACKEND.connect(f"127.0.0.1:{port}", options):
                    pass
            group.cancel_scope.cancel()


@pytest.mark.parametrize("seed", range(8))
async def test_garbage_never_escapes_as_an_h2_error(seed: int) -> None:
    """Random bytes after a valid preface end the connection with one of our errors; no
    h2, hpack or hyperframe exception reaches the caller or the task group."""
    rng = random.Random(seed)
    settings = Http2Settings(close_grace=0.2)
    with anyio.fail_after(10):
        async with raw_pair(our_side_is_client=False, settings=settings) as (provider, peer):
            listener = provider.listen()
            # a valid request first, so that stream state exists when the garbage comes
            peer.conn.send_headers(1, [(":method", "POST"), (":scheme", "http"),
                                       (":authority", "x"), (":path", "/")])  # fmt: skip
            await peer.flush()
            stream = await listener.accept()
            frame_type = rng.choice([0, 1, 3, 4, 6, 7, 8, 9, rng.randrange(256)])
            length = rng.randrange(0, 64)
            header = length.to_bytes(3, "big") + bytes([frame_type, rng.randrange(256)])
            header += rng.randrange(0, 8).to_bytes(4, "big")
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                await peer.send_raw(header + rng.randbytes(length) + rng.randbytes(64))
            with anyio.move_on_after(1):
                while provider.failure is None:
                    await anyio.sleep(0.01)
            if provider.failure is not None:
                assert isinstance(provider.failure, ConnectionLost)
                with pytest.raises((ConnectionLost, StreamError)):
                    await stream.receive()


async def test_exhausted_stream_ids_mean_going_away() -> None:
    with anyio.fail_after(10):
        async with http2_pair() as pair:
            pair.client._conn.highest_outbound_stream_id = 2**31 - 1  # type: ignore[attr-defined]
            with pytest.raises(GoingAway) as caught:
                await pair.client.open_stream()
            assert caught.value.retryable


async def test_server_close_stops_new_streams_and_lets_open_ones_finish() -> None:
    with anyio.fail_after(10):
        async with http2_pair() as pair:
            opened, accepted = await stream_pair(pair.client, pair.server.listen())
            async with anyio.create_task_group() as group:
                group.start_soon(lambda: pair.server.aclose(grace=5))
                while not pair.client.is_closing:
                    await anyio.sleep(0.01)
                with pytest.raises(GoingAway) as caught:
                    await pair.client.open_stream()
                assert caught.value.retryable
                await opened.send(b"question")
                await opened.send_eof()
                assert await read_all(accepted) == b"question"
                await accepted.send(b"answer")
                await accepted.aclose()
                assert await read_all(opened) == b"answer"
                await opened.aclose()


async def test_upgrade_with_invalid_settings_is_refused_before_switching() -> None:
    # INITIAL_WINDOW_SIZE of 2**31 is not allowed (RFC 9113, section 6.5.2)
    bad = base64.urlsafe_b64encode(b"\x00\x04\x80\x00\x00\x00").decode().rstrip("=")
    request = (
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        f"Upgrade: h2c\r\nHTTP2-Settings: {bad}\r\n\r\n"
    ).encode()
    with anyio.fail_after(10):
        async with BACKEND.serve("127.0.0.1:0") as server:
            host, port = server.address.rsplit(":", 1)
            async with await anyio.connect_tcp(host, int(port)) as client:
                await client.send(request)
                received = b""
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                    while True:
                        received += await client.receive()
            # refused while an HTTP/1.1 answer is still possible, and nothing stays open
            assert received.startswith(b"HTTP/1.1 400 "), received[:60]
            assert not server.connections
