"""The SPDY driver against a hand-driven peer (a raw socket and a codec of our own):
protocol errors, bombs, windows, no-flow-control mode, GOAWAY timing, keepalive, upgrade."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc
import pytest

from streams import ConnectionLost, Headers, ProtocolError, StreamRejected
from streams._core.backend import BackendOptions
from streams._core.errors import ConfigError, ErrorCode, LimitExceeded
from streams._core.server import StreamServer
from streams._core.transport import TLSConfig
from streams.backends.spdy import BACKEND, SpdyProvider, SpdySettings
from streams.backends.spdy import codec as spdy
from streams.backends.spdy._dictionary import DICTIONARY
from streams.backends.spdy.codec import RstStatus, SpdyCodec
from streams.backends.spdy.driver import error_code, rst_status
from streams.backends.spdy.upgrade import UpgradeRefused, upgrade_client, upgrade_server
from streams.testing import read_all
from tests.certificates import make_certificates
from tests.spdy.helpers import socket_pair

pytestmark = pytest.mark.anyio

QUIET = SpdySettings(keepalive_interval=None, close_grace=0.5, confirm_replies=False)


@dataclass
class RawPeer:
    """The other end of the connection, driven by hand with a codec."""

    stream: anyio.abc.ByteStream
    codec: SpdyCodec
    events: list[spdy.Event] = field(default_factory=list)

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def expect(
        self, predicate: Callable[[spdy.Event], bool], seconds: float = 5
    ) -> spdy.Event:
        with anyio.fail_after(seconds):
            while True:
                for event in self.events:
                    if predicate(event):
                        self.events.remove(event)
                        return event
                self.events += self.codec.receive_data(await self.stream.receive())

    async def answer_ping(self) -> None:
        ping = await self.expect(lambda e: isinstance(e, spdy.PingReceived))
        assert isinstance(ping, spdy.PingReceived)
        await self.send(self.codec.ping(ping.ping_id))

    async def closed(self, seconds: float = 5) -> None:
        """Read until the connection ends."""
        with anyio.fail_after(seconds):
            try:
                while True:
                    self.events += self.codec.receive_data(await self.stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError, spdy.SessionError):
                return


@asynccontextmanager
async def raw_peer(
    settings: SpdySettings = QUIET, *, provider_is_client: bool = True
) -> AsyncIterator[tuple[SpdyProvider, RawPeer]]:
    ours, theirs = await socket_pair()
    provider = SpdyProvider(ours, client=provider_is_client, settings=settings)
    peer = RawPeer(theirs, SpdyCodec(client=not provider_is_client))
    async with provider:
        yield provider, peer
    await anyio.aclose_forcefully(theirs)


def is_goaway(event: spdy.Event) -> bool:
    return isinstance(event, spdy.GoAwayReceived)


async def test_garbage_closes_with_goaway_and_a_protocol_error() -> None:
    async with raw_peer() as (provider, peer):
        await peer.send(bytes.fromhex("80020006 00000004 00000001"))
        goaway = await peer.expect(is_goaway)
        assert isinstance(goaway, spdy.GoAwayReceived)
        assert goaway.status == spdy.GoAwayStatus.PROTOCOL_ERROR
        await peer.closed()
        with anyio.fail_after(5):
            await provider.wait_closed()
        assert isinstance(provider.failure, ProtocolError)
        assert provider.failure.code == ErrorCode.PROTOCOL_ERROR
        with pytest.raises(ConnectionLost):
            await provider.open_stream()


async def test_a_header_bomb_closes_with_limit_exceeded_and_nothing_escapes() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
    block = compressor.compress(bytes.fromhex("00000001 00000001") + b"a" + b"\x00\xff\xff\xff")
    block += compressor.compress(b"y" * (32 * 1024 * 1024)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    payload = (2).to_bytes(4, "big") + bytes(6) + block
    frame = bytes.fromhex("80030001 00") + len(payload).to_bytes(3, "big") + payload
    async with raw_peer() as (provider, peer):
        provider.listen()
        await peer.send(frame)
        await peer.expect(is_goaway)
        with anyio.fail_after(5):
            await provider.wait_closed()
        assert isinstance(provider.failure, LimitExceeded)
        assert provider.failure.limit == "max_header_block"


async def test_stream_errors_reset_the_stream_and_the_session_goes_on() -> None:
    async with raw_peer() as (provider, peer):
        await peer.send(peer.codec.data_header(9, 4) + b"lost")
        reset = await peer.expect(lambda e: isinstance(e, spdy.ResetReceived))
        assert reset == spdy.ResetReceived(stream_id=9, status=RstStatus.INVALID_STREAM)
        async with anyio.create_task_group() as group:
            group.start_soon(peer.answer_ping)
            assert await provider.ping() >= 0
        assert provider.failure is None


async def test_a_stream_window_violation_resets_only_that_stream() -> None:
    settings = SpdySettings(
        keepalive_interval=None, close_grace=0.5, receive_window=1024, max_receive_window=1024
    )
    async with raw_peer(settings, provider_is_client=False) as (provider, peer):
        listener = provider.listen()
        stream_id = peer.codec.next_stream_id()
        await peer.send(peer.codec.syn_stream(stream_id, [("a", "b")]))
        accepted = await listener.accept()
        await peer.expect(lambda e: isinstance(e, spdy.ReplyReceived))
        await peer.send(peer.codec.data_header(stream_id, 2000) + bytes(2000))
        reset = await peer.expect(lambda e: isinstance(e, spdy.ResetReceived))
        assert reset == spdy.ResetReceived(stream_id=stream_id, status=RstStatus.FLOW_CONTROL_ERROR)
        with pytest.raises(anyio.BrokenResourceError):
            await accepted.receive()
        assert provider.failure is None


async def test_window_credit_comes_back_only_as_the_application_reads() -> None:
    settings = SpdySettings(
        keepalive_interval=None, close_grace=0.5, receive_window=65536, max_receive_window=65536
    )
    async with raw_peer(settings, provider_is_client=False) as (provider, peer):
        listener = provider.listen()
        stream_id = peer.codec.next_stream_id()
        await peer.send(peer.codec.syn_stream(stream_id, [("a", "b")]))
        accepted = await listener.accept()
        await peer.send(peer.codec.data_header(stream_id, 60000) + bytes(60000))
        await peer.expect(lambda e: isinstance(e, spdy.ReplyReceived))
        # what arrives is not read: no credit, for the stream or the session
        await anyio.sleep(0.1)
        peer.events += peer.codec.receive_data(b"")
        assert provider.streams[stream_id].buffered == 60000
        with anyio.move_on_after(0.2):
            await peer.expect(lambda e: isinstance(e, spdy.WindowUpdateReceived) and e.stream_id)
            raise AssertionError("credit was granted for data nobody read")
        received = 0
        while received < 60000:
            received += len(await accepted.receive())
        update = await peer.expect(
            lambda e: isinstance(e, spdy.WindowUpdateReceived) and e.stream_id == stream_id
        )
        assert isinstance(update, spdy.WindowUpdateReceived)
        assert update.delta >= 16384


async def test_no_flow_control_neither_waits_nor_enforces() -> None:
    settings = SpdySettings(
        keepalive_interval=None,
        close_grace=0.5,
        no_flow_control=True,
        receive_window=65536,
        confirm_replies=False,
    )
    async with raw_peer(settings) as (provider, peer):
        stream = await provider.open_stream(wait_accept=False)
        await peer.expect(lambda e: isinstance(e, spdy.StreamOpened))
        await peer.send(peer.codec.syn_reply(stream.stream_id, [("ok", "1")]))
        # far beyond SPDY's 64 KiB default window, and no WINDOW_UPDATE from the peer
        with anyio.fail_after(5):
            await stream.send(bytes(1024 * 1024))
        # and the peer may send beyond the window we announced
        await peer.send(peer.codec.data_header(stream.stream_id, 200_000) + bytes(200_000))
        await peer.send(peer.codec.data_header(stream.stream_id, 0, fin=True))
        with anyio.fail_after(5):
            assert len(await read_all(stream)) == 200_000
        assert provider.failure is None


async def test_flow_control_waits_for_the_peers_window() -> None:
    async with raw_peer() as (provider, peer):
        stream = await provider.open_stream(wait_accept=False)
        await peer.expect(lambda e: isinstance(e, spdy.StreamOpened))
        await peer.send(peer.codec.syn_reply(stream.stream_id, []))
        with anyio.move_on_after(0.5):
            await stream.send(bytes(200_000))
            raise AssertionError("sent past the peer's 64 KiB window")


async def test_goaway_waits_for_the_streams_of_a_peer_without_settings() -> None:
    """docker/spdystream stops reading at GOAWAY and never sends SETTINGS: GOAWAY comes last."""
    async with raw_peer() as (provider, peer):
        stream = await provider.open_stream(wait_accept=False)
        await peer.expect(lambda e: isinstance(e, spdy.StreamOpened))
        await peer.send(peer.codec.syn_reply(stream.stream_id, []))
        async with anyio.create_task_group() as group:
            group.start_soon(provider.aclose)
            await anyio.sleep(0.2)
            assert not any(is_goaway(e) for e in peer.events)
            await stream.send(b"last words")
            await stream.send_eof()
            await peer.send(peer.codec.data_header(stream.stream_id, 0, fin=True))
            data = await peer.expect(lambda e: isinstance(e, spdy.DataReceived) and bool(e.data))
            assert isinstance(data, spdy.DataReceived)
            assert data.data == b"last words"
            await peer.expect(is_goaway)


async def test_resets_never_carry_status_zero() -> None:
    assert rst_status(ErrorCode.NO_ERROR) == RstStatus.CANCEL
    assert rst_status(0x1234) == RstStatus.CANCEL
    assert error_code(RstStatus.REFUSED_STREAM) == ErrorCode.REFUSED_STREAM
    assert error_code(99) == ErrorCode.PROTOCOL_ERROR
    async with raw_peer() as (provider, peer):
        stream = await provider.open_stream(wait_accept=False)
        await peer.send(peer.codec.syn_reply(stream.stream_id, []))
        await stream.accepted()
        await stream.reset(ErrorCode.NO_ERROR)
        reset = await peer.expect(lambda e: isinstance(e, spdy.ResetReceived))
        assert reset == spdy.ResetReceived(stream_id=stream.stream_id, status=RstStatus.CANCEL)


async def test_a_bare_refusal_is_a_retryable_rejection() -> None:
    async with raw_peer() as (provider, peer):
        async with anyio.create_task_group() as group:

            async def refuse() -> None:
                opened = await peer.expect(lambda e: isinstance(e, spdy.StreamOpened))
                assert isinstance(opened, spdy.StreamOpened)
                await peer.send(peer.codec.rst_stream(opened.stream_id, RstStatus.REFUSED_STREAM))

            group.start_soon(refuse)
            with pytest.raises(StreamRejected) as rejected:
                await provider.open_stream({"x": "1"})
        assert rejected.value.retryable
        assert rejected.value.response_headers == Headers()


async def test_data_and_fin_wait_for_the_reply_and_its_confirmation() -> None:
    """docker/spdystream drops data and FIN that arrive before its SYN_REPLY, or before it
    marked the stream replied (just after writing the reply): they wait for the reply and
    for a ping round trip after it, for a peer that never sent SETTINGS."""
    settings = SpdySettings(keepalive_interval=None, close_grace=0.5)
    async with raw_peer(settings) as (provider, peer):
        stream = await provider.open_stream(wait_accept=False)
        await stream.send(b"early")
        await stream.send_eof()
        await peer.expect(lambda e: isinstance(e, spdy.StreamOpened))
        await peer.send(peer.codec.syn_reply(stream.stream_id, []))
        ping = await peer.expect(lambda e: isinstance(e, spdy.PingReceived))
        assert not any(isinstance(e, spdy.DataReceived) for e in peer.events)
        assert isinstance(ping, spdy.PingReceived)
        await peer.send(peer.codec.ping(ping.ping_id))
        data = await peer.expect(lambda e: isinstance(e, spdy.DataReceived))
        assert data == spdy.DataReceived(stream_id=stream.stream_id, data=b"early", fin=False)
        fin = await peer.expect(lambda e: isinstance(e, spdy.DataReceived))
        assert fin == spdy.DataReceived(stream_id=stream.stream_id, data=b"", fin=True)


async def test_pings_of_the_peer_are_answered_and_ours_measured() -> None:
    async with raw_peer(provider_is_client=False) as (provider, peer):
        await peer.send(peer.codec.ping(1))
        answer = await peer.expect(lambda e: isinstance(e, spdy.PingReceived))
        assert answer == spdy.PingReceived(ping_id=1)
        async with anyio.create_task_group() as group:

            async def answer_ours() -> None:
                ping = await peer.expect(lambda e: isinstance(e, spdy.PingReceived))
                assert isinstance(ping, spdy.PingReceived)
                assert ping.ping_id % 2 == 0, "a server's pings are even"
                await peer.send(peer.codec.ping(ping.ping_id))

            group.start_soon(answer_ours)
            rtt = await provider.ping()
        assert provider.rtt == rtt


async def test_keepalive_declares_a_silent_peer_dead() -> None:
    settings = SpdySettings(keepalive_interval=0.1, keepalive_timeout=0.2, close_grace=0.5)
    async with raw_peer(settings) as (provider, _peer):
        with anyio.fail_after(5):
            await provider.wait_closed()
        assert isinstance(provider.failure, ConnectionLost)
        assert "keepalive" in str(provider.failure)


async def test_upgrade_handshake_both_sides() -> None:
    client_stream, server_stream = await socket_pair()
    async with anyio.create_task_group() as group:
        result: dict[str, Headers] = {}

        async def server() -> None:
            upgraded, headers = await upgrade_server(server_stream)
            result["headers"] = headers
            await upgraded.send(b"spdy bytes")

        group.start_soon(server)
        with anyio.fail_after(5):
            upgraded = await upgrade_client(client_stream, host="example", path="/x")
            assert await upgraded.receive() == b"spdy bytes"
    assert result["headers"]["upgrade"] == "SPDY/3.1"
    await client_stream.aclose()
    await server_stream.aclose()


async def test_an_http_server_that_does_not_upgrade_is_refused() -> None:
    client_stream, server_stream = await socket_pair()
    async with anyio.create_task_group() as group:

        async def plain_http() -> None:
            await server_stream.receive()
            await server_stream.send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

        group.start_soon(plain_http)
        with anyio.fail_after(5), pytest.raises(UpgradeRefused) as refused:
            await upgrade_client(client_stream, host="example")
    assert refused.value.status == 404
    await client_stream.aclose()
    await server_stream.aclose()


async def test_our_server_answers_a_plain_request_with_400() -> None:
    async with BACKEND.serve("http://127.0.0.1:0/") as server:
        address = server.address.removeprefix("http://").rstrip("/")
        host, port = address.rsplit(":", 1)
        with anyio.fail_after(5):
            stream = await anyio.connect_tcp(host, int(port))
            await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await stream.receive()
            await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_an_upgraded_connection_carries_streams() -> None:
    async def echo_one(server: StreamServer) -> None:
        stream = await server.listener.accept()
        await stream.send(await read_all(stream))
        await stream.aclose()

    async with (
        BACKEND.serve("http://127.0.0.1:0/spdy") as server,
        anyio.create_task_group() as group,
    ):
        group.start_soon(echo_one, server)
        with anyio.fail_after(5):
            async with BACKEND.connect(server.address) as provider:
                stream = await provider.open_stream({"a": "b"})
                await stream.send(b"through the upgrade")
                await stream.send_eof()
                assert await read_all(stream) == b"through the upgrade"
                await stream.aclose()


async def test_a_header_that_cannot_travel_fails_the_open_not_the_session() -> None:
    async with raw_peer() as (provider, peer):
        with pytest.raises(ValueError, match="NUL"):
            await provider.open_stream({"x": "a\x00b"}, wait_accept=False)
        stream = await provider.open_stream({"x": "fine"}, wait_accept=False)
        opened = await peer.expect(lambda e: isinstance(e, spdy.StreamOpened))
        assert opened == spdy.StreamOpened(
            stream_id=stream.stream_id, headers=(("x", "fine"),), fin=False
        )
        await anyio.sleep(0.05)
        peer.events += peer.codec.receive_data(b"")
        stray = [e for e in peer.events if isinstance(e, (spdy.ResetReceived, spdy.DataReceived))]
        assert not stray, "the failed open wrote frames"


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"session_window": 10}, "session_window"),
        ({"goaway": "never"}, "goaway"),
        ({"max_header_block": 1}, "max_header_block"),
        ({"keepalive_interval": 0}, "keepalive_interval"),
        ({"receive_window": 1}, "receive_window"),
    ],
)
def test_settings_name_the_bad_field(overrides: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as error:
        SpdySettings(**overrides)  # type: ignore[arg-type]
    assert error.value.path == path


def test_an_unknown_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown spdy setting"):
        BACKEND.connect("127.0.0.1:1", BackendOptions(settings={"windw": 1}))


async def test_an_upgrade_server_on_port_0_gets_a_free_port() -> None:
    async with BACKEND.serve("http://127.0.0.1:0/spdy") as server:
        assert server.address.startswith("http://127.0.0.1:")
        assert not server.address.startswith("http://127.0.0.1:80/")
        assert server.address.endswith("/spdy")


async def test_unix_sockets_and_tls_through_the_backend(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    server_tls = BackendOptions(
        tls=TLSConfig(cert=str(certificates.cert), key=str(certificates.key))
    )
    client_tls = BackendOptions(tls=TLSConfig(ca=str(certificates.ca), server_name="localhost"))
    for listen, server_options, client_options in (
        (f"unix:{tmp_path / 'spdy.sock'}", BackendOptions(), BackendOptions()),
        ("127.0.0.1:0", server_tls, client_tls),
    ):
        async with (
            BACKEND.serve(listen, server_options) as server,
            anyio.create_task_group() as group,
        ):

            async def echo_one(server: StreamServer = server) -> None:
                stream = await server.listener.accept()
                await stream.send(await read_all(stream))
                await stream.aclose()

            group.start_soon(echo_one)
            with anyio.fail_after(5):
                async with BACKEND.connect(server.address, client_options) as provider:
                    stream = await provider.open_stream()
                    await stream.send(b"over " + listen.encode())
                    await stream.send_eof()
                    assert await read_all(stream) == b"over " + listen.encode()
                    await stream.aclose()
