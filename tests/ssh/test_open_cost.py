"""What a stream costs on the wire and in timers: the headers ride in the channel-open
request and the decision in its confirmation (``streams-v2@stream``), so an
open-echo-close takes the packets of a bare channel; keepalive notes reads instead of
re-arming a timer for each one."""

from __future__ import annotations

import collections
import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import asyncssh
import pytest
from asyncssh.constants import (
    MSG_CHANNEL_CLOSE,
    MSG_CHANNEL_DATA,
    MSG_CHANNEL_EOF,
    MSG_CHANNEL_OPEN,
    MSG_CHANNEL_OPEN_CONFIRMATION,
    MSG_IGNORE,
)
from asyncssh.packet import String, UInt32

from streams import ProtocolError, StreamRejected
from streams.backends.ssh import BACKEND, SSHProvider
from streams.backends.ssh._bridge import open_bridge
from streams.backends.ssh._codec import STREAM_CHANNEL, encode_open
from streams.testing import read_all

from .helpers import Keys, port_of, server_options, ssh_pair

pytestmark = pytest.mark.anyio


@contextmanager
def _counting(*providers: SSHProvider) -> Iterator[collections.Counter[int]]:
    """Count the SSH messages the providers' connections send (IGNORE aside)."""
    sent: collections.Counter[int] = collections.Counter()
    originals = []
    for provider in providers:
        conn = provider.conn
        assert conn is not None
        original = conn.send_packet

        def send_packet(pkttype: int, *args: Any, _original: Any = original, **kw: Any) -> None:
            if pkttype != MSG_IGNORE:
                sent[pkttype] += 1
            _original(pkttype, *args, **kw)

        conn.send_packet = send_packet  # type: ignore[method-assign]
        originals.append((conn, original))
    try:
        yield sent
    finally:
        for conn, original in originals:
            conn.send_packet = original  # type: ignore[method-assign]


async def _echo_once(client: SSHProvider, accepted_streams: Any) -> None:
    stream = await client.open_stream({"x-path": "/echo"})
    assert stream.response_headers is not None
    assert stream.response_headers.get("x-answer") == "yes"
    await stream.send(b"m" * 64)
    await stream.send_eof()
    assert await read_all(stream) == b"m" * 64
    await stream.aclose()


async def test_an_open_echo_close_takes_the_packets_of_a_bare_channel(ssh_keys: Keys) -> None:
    """One CHANNEL_OPEN (headers inside), one confirmation (the reply inside), then only
    the data, EOF and CLOSE each way: eight messages, as a bare asyncssh channel."""
    rounds = 5
    with anyio.fail_after(20):
        async with ssh_pair(ssh_keys) as pair:
            assert isinstance(pair.client, SSHProvider)
            assert isinstance(pair.server, SSHProvider)

            async def decide(headers: Any) -> tuple[dict[str, str], bool]:
                assert headers.get("x-path") == "/echo"
                return {"x-answer": "yes"}, True

            listener = pair.server.listen(decide)

            async def echo() -> None:
                async for accepted in listener:
                    async with accepted:
                        await accepted.send(await accepted.receive())
                        await read_all(accepted)
                        await accepted.send_eof()

            async with anyio.create_task_group() as group:
                group.start_soon(echo)
                await _echo_once(pair.client, listener)  # the first, outside the count
                with _counting(pair.client, pair.server) as sent:
                    for _ in range(rounds):
                        await _echo_once(pair.client, listener)
                    # the last channel's CLOSE answer may still be on its way
                    while sent[MSG_CHANNEL_CLOSE] < 2 * rounds:
                        await anyio.sleep(0.01)
                    await anyio.sleep(0.05)  # nothing more follows
                group.cancel_scope.cancel()
    assert sent == {
        MSG_CHANNEL_OPEN: rounds,
        MSG_CHANNEL_OPEN_CONFIRMATION: rounds,
        MSG_CHANNEL_DATA: 2 * rounds,
        MSG_CHANNEL_EOF: 2 * rounds,
        MSG_CHANNEL_CLOSE: 2 * rounds,
    }, sent


async def test_a_refusal_carries_its_headers_and_sends_no_early_data(ssh_keys: Keys) -> None:
    """A zero-round-trip open whose handler refuses: the refusal's headers arrive in the
    confirmation, and the data written before it never leaves the opener."""
    with anyio.fail_after(20):
        async with ssh_pair(ssh_keys) as pair:
            assert isinstance(pair.client, SSHProvider)
            gate = anyio.Event()

            async def refuse(headers: Any) -> tuple[dict[str, str], bool]:
                await gate.wait()
                return {"x-why": "closed today"}, False

            refusing = pair.server.listen(refuse)
            with _counting(pair.client) as sent:
                stream = await pair.client.open_stream(wait_accept=False)
                await stream.send(b"early" * 100)
                await stream.send_eof()
                gate.set()
                with pytest.raises(StreamRejected) as refused:
                    await stream.accepted()
                await anyio.sleep(0.05)
            assert refused.value.response_headers.get("x-why") == "closed today"
            assert sent[MSG_CHANNEL_DATA] == 0, sent
            await stream.aclose()
            await refusing.aclose()
            # the connection goes on
            listener = pair.server.listen()
            again = await pair.client.open_stream()
            accepted = await listener.accept()
            await again.aclose()
            await accepted.aclose()


async def test_early_data_waits_beyond_the_write_buffer(ssh_keys: Keys) -> None:
    """What a zero-round-trip open sends before the channel opens is queued up to
    ``write_buffer``; a larger send waits for the channel, then everything arrives."""
    with anyio.fail_after(20):
        async with ssh_pair(ssh_keys, write_buffer=64 * 1024) as pair:
            gate = anyio.Event()

            async def late(headers: Any) -> tuple[dict[str, str], bool]:
                await gate.wait()
                return {}, True

            listener = pair.server.listen(late)
            stream = await pair.client.open_stream(wait_accept=False)
            await stream.send(b"a" * 60_000)  # queued at once
            blocked = True
            async with anyio.create_task_group() as group:

                async def more() -> None:
                    nonlocal blocked
                    await stream.send(b"b" * 60_000)  # over the buffer: waits
                    blocked = False
                    await stream.send_eof()

                group.start_soon(more)
                await anyio.sleep(0.2)
                assert blocked
                gate.set()
                accepted = await listener.accept()
                assert await read_all(accepted) == b"a" * 60_000 + b"b" * 60_000
            await accepted.aclose()
            await stream.aclose()


async def test_a_broken_open_request_fails_the_connection(ssh_keys: Keys) -> None:
    """A stream channel whose open request does not hold one valid frame: ProtocolError,
    and the peer is disconnected."""
    with anyio.fail_after(20):
        async with (
            BACKEND.serve_connections("127.0.0.1:0", server_options(ssh_keys)) as (
                server,
                providers,
            ),
            open_bridge() as bridge,
        ):
            port = port_of(server.address)
            conn = await bridge.run(
                asyncssh.connect,
                "127.0.0.1",
                port,
                known_hosts=str(ssh_keys.known_hosts(port)),
                client_keys=[str(ssh_keys.user_key)],
                username=getpass.getuser(),
                agent_path=None,
                config=None,
            )
            try:
                provider = await providers.receive()
                chan = conn.create_unix_channel()
                frame = encode_open([("x-a", "1")])
                conn.send_packet(
                    MSG_CHANNEL_OPEN,
                    String(STREAM_CHANNEL),
                    UInt32(chan._recv_chan),  # type: ignore[arg-type]
                    UInt32(1 << 20),
                    UInt32(32 << 10),
                    frame + b"trailing",
                )
                await provider.wait_closed()
                assert isinstance(provider.failure, ProtocolError), provider.failure
                assert "stray" in str(provider.failure)
                await bridge.run(conn.wait_closed)
            finally:
                conn.abort()


async def test_keepalive_does_not_rearm_a_timer_per_read(ssh_keys: Keys) -> None:
    """Traffic leaves the keepalive timer alone (it looks at the last read when it fires),
    and an idle connection whose peer answers stays up over many intervals."""
    with anyio.fail_after(20):
        async with ssh_pair(ssh_keys, keepalive_interval=0.1, keepalive_count_max=2) as pair:
            assert isinstance(pair.client, SSHProvider)
            conn = pair.client.conn
            assert conn is not None
            listener = pair.server.listen()
            stream = await pair.client.open_stream()
            accepted = await listener.accept()
            timer = conn._keepalive_timer
            assert timer is not None
            for _ in range(20):
                await stream.send(b"x")
                await accepted.receive()
            assert conn._keepalive_timer is timer
            await anyio.sleep(0.8)  # eight intervals without a stream's byte
            await stream.send(b"still here")
            assert await accepted.receive() == b"still here"
            assert not pair.client.is_closing
            await stream.aclose()
            await accepted.aclose()


def test_the_packet_size_follows_the_windows() -> None:
    """128 KiB packets by default; smaller where a window is smaller (down to SSH's usual
    32 KiB); an explicit max_packet is kept."""
    from streams._core.backend import BackendOptions
    from streams.backends.ssh._backend import split_settings

    def packet(**settings: Any) -> int:
        return split_settings(BackendOptions(settings=settings))[0].max_packet

    assert packet() == 128 * 1024
    assert packet(receive_window=128 * 1024) == 64 * 1024
    assert packet(window=65536, receive_window=65536) == 32 * 1024
    assert packet(max_packet=16384) == 16384


async def test_bulk_data_moves_in_large_packets(ssh_keys: Keys) -> None:
    """4 MiB through one stream takes about 32 data packets of 128 KiB, not 128 of the
    usual 32 KiB: each packet costs its encryption and asyncssh's Python code."""
    block = b"z" * (1 << 20)
    with anyio.fail_after(20):
        async with ssh_pair(ssh_keys) as pair:
            assert isinstance(pair.client, SSHProvider)
            listener = pair.server.listen()
            stream = await pair.client.open_stream()
            accepted = await listener.accept()
            with _counting(pair.client) as sent:
                async with anyio.create_task_group() as group:

                    async def send() -> None:
                        for _ in range(4):
                            await stream.send(block)
                        await stream.send_eof()

                    group.start_soon(send)
                    assert len(await read_all(accepted)) == 4 * len(block)
            # a window running low can cut a packet short: far from the 128 of 32 KiB
            assert 32 <= sent[MSG_CHANNEL_DATA] <= 64, sent
            await stream.aclose()
            await accepted.aclose()


async def test_a_channel_session_keeps_to_thirty_attributes(ssh_keys: Keys) -> None:
    """CPython shares the key table of a class's instance dictionaries up to 30 keys; one
    more made every idle stream 1.3 KiB larger on each end."""
    with anyio.fail_after(20):
        async with ssh_pair(ssh_keys) as pair:
            assert isinstance(pair.client, SSHProvider)
            assert isinstance(pair.server, SSHProvider)
            listener = pair.server.listen()
            stream = await pair.client.open_stream(wait_accept=False)
            await stream.send(b"early")
            accepted = await listener.accept()
            await accepted.send(b"x")
            await stream.receive()
            sessions = [*pair.client.sessions.values(), *pair.server.sessions.values()]
            assert len(sessions) == 2
            for session in sessions:
                assert len(vars(session)) <= 30, sorted(vars(session))
            await stream.aclose()
            await accepted.aclose()


async def test_our_peers_encrypt_with_aes_gcm(ssh_keys: Keys) -> None:
    """Between two of ours the cipher is AES-GCM (one call into OpenSSL per packet), not
    asyncssh's first choice, chacha20-poly1305 (driven from Python)."""
    async with ssh_pair(ssh_keys) as pair:
        for provider in (pair.client, pair.server):
            assert isinstance(provider, SSHProvider)
            assert provider.conn is not None
            assert provider.conn.get_extra_info("send_cipher") == "aes128-gcm@openssh.com"
            assert provider.conn.get_extra_info("recv_cipher") == "aes128-gcm@openssh.com"


async def test_a_finished_stream_leaves_no_cycle_behind(ssh_keys: Keys) -> None:
    """A stream, its session and its channel are freed by reference counting as the stream
    ends, on both sides: nothing of them is left for the cycle collector, whose runs cost
    an open-echo-close about a tenth of its time when each stream left a cycle."""
    import gc

    with anyio.fail_after(20):
        async with ssh_pair(ssh_keys) as pair:
            listener = pair.server.listen()

            async def echo() -> None:
                async for accepted in listener:
                    async with accepted:
                        await accepted.send(await accepted.receive())
                        await read_all(accepted)
                        await accepted.send_eof()

            async with anyio.create_task_group() as group:
                group.start_soon(echo)
                await _echo_once_plain(pair.client)
                gc.collect()
                gc.disable()
                gc.set_debug(gc.DEBUG_SAVEALL)
                try:
                    for _ in range(5):
                        await _echo_once_plain(pair.client)
                    await anyio.sleep(0.05)  # the last CLOSE answers
                    gc.collect()
                    left = {type(item).__name__ for item in gc.garbage}
                finally:
                    gc.set_debug(0)
                    gc.garbage.clear()
                    gc.enable()
                group.cancel_scope.cancel()
    assert not left & {"MuxStream", "ChannelSession", "StreamChannel"}, left


async def _echo_once_plain(client: Any) -> None:
    stream = await client.open_stream()
    await stream.send(b"m" * 64)
    await stream.send_eof()
    assert await read_all(stream) == b"m" * 64
    await stream.aclose()


class _Recording:
    """A transport that counts the writes it passes on."""

    def __init__(self, real: Any, side: str, writes: collections.Counter[str]) -> None:
        self._real, self._side, self._writes = real, side, writes

    def write(self, data: bytes) -> None:
        self._writes[self._side] += 1
        self._real.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


async def test_small_packets_of_one_turn_leave_in_one_write(ssh_keys: Keys) -> None:
    """asyncssh writes each packet (and an IGNORE before each) to the socket on its own:
    16 writes per open-echo-close. Gathered per turn, they are five: the opener writes
    the open, then the data with its EOF, then its CLOSE (answering the acceptor's);
    the acceptor writes its answer, then its data, EOF and CLOSE together."""
    rounds = 5
    with anyio.fail_after(20):
        async with ssh_pair(ssh_keys) as pair:
            assert isinstance(pair.client, SSHProvider)
            assert isinstance(pair.server, SSHProvider)
            writes: collections.Counter[str] = collections.Counter()
            restore = []
            for side, provider in (("client", pair.client), ("server", pair.server)):
                gathering = provider._writes
                assert gathering is not None
                # a stand-in for the socket's transport (uvloop's cannot be patched)
                restore.append((gathering, gathering.transport))
                gathering.transport = _Recording(gathering.transport, side, writes)
            listener = pair.server.listen()

            async def echo() -> None:
                async for accepted in listener:
                    async with accepted:
                        await accepted.send(await accepted.receive())
                        await read_all(accepted)
                        await accepted.send_eof()

            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(echo)
                    await _echo_once_plain(pair.client)
                    await anyio.sleep(0.05)
                    writes.clear()
                    for _ in range(rounds):
                        await _echo_once_plain(pair.client)
                    await anyio.sleep(0.05)  # the last CLOSE answers
                    group.cancel_scope.cancel()
            finally:
                for gathering, real in restore:
                    gathering.transport = real
    assert writes == {"client": 3 * rounds, "server": 2 * rounds}, writes


async def test_asyncssh_logs_what_it_logged_before(
    ssh_keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncssh's log lines are made only when they are written (packets at debug level 3,
    a channel's messages when their level is on), and then as before, with their
    connection and channel context."""
    import logging

    async def lines(level: int) -> list[str]:
        caplog.clear()
        with caplog.at_level(level, logger="asyncssh"):
            await _echo_once_plain(pair.client)
            await anyio.sleep(0.05)  # the CLOSE answers
        return [record.getMessage() for record in caplog.records]

    with anyio.fail_after(20):
        async with ssh_pair(ssh_keys) as pair:
            listener = pair.server.listen()

            async def echo() -> None:
                async for accepted in listener:
                    async with accepted:
                        await accepted.send(await read_all(accepted))
                        await accepted.send_eof()

            async with anyio.create_task_group() as group:
                group.start_soon(echo)
                assert await lines(logging.WARNING) == []
                debug = await lines(logging.DEBUG)
                info = await lines(logging.INFO)
                asyncssh.set_debug_level(3)
                try:
                    packets = await lines(logging.DEBUG)
                finally:
                    asyncssh.set_debug_level(1)
                group.cancel_scope.cancel()
    assert not any("MSG_CHANNEL_DATA" in line for line in debug), debug
    assert any(
        line.startswith("[conn=") and "chan=" in line and "Set write buffer limits" in line
        for line in debug
    ), debug
    assert any(line.startswith("[conn=") and "Channel closed" in line for line in info), info
    assert not any("Set write buffer limits" in line for line in info), info
    assert any(line.startswith("[conn=") and "Sent MSG_CHANNEL_DATA" in line for line in packets), (
        packets
    )
    assert any("Received MSG_CHANNEL_DATA" in line for line in packets), packets


async def test_no_ignore_packet_under_aes_gcm(ssh_keys: Keys) -> None:
    """asyncssh puts an IGNORE before every packet (RFC 4251's countermeasure for CBC
    mode); under AES-GCM none arrives, and the exchange still takes its eight messages."""
    from asyncssh.constants import MSG_IGNORE

    with anyio.fail_after(20):
        async with ssh_pair(ssh_keys) as pair:
            assert isinstance(pair.client, SSHProvider)
            assert isinstance(pair.server, SSHProvider)
            received: collections.Counter[str] = collections.Counter()
            for side, provider in (("client", pair.client), ("server", pair.server)):
                conn = provider.conn
                assert conn is not None
                original = conn._packet_handlers[MSG_IGNORE]

                def on_ignore(
                    handler: Any, *args: Any, _side: str = side, _original: Any = original
                ) -> Any:
                    received[_side] += 1
                    return _original(handler, *args)

                conn._packet_handlers[MSG_IGNORE] = on_ignore
            listener = pair.server.listen()
            async with anyio.create_task_group() as group:

                async def echo() -> None:
                    async for accepted in listener:
                        async with accepted:
                            await accepted.send(await read_all(accepted))
                            await accepted.send_eof()

                group.start_soon(echo)
                with _counting(pair.client, pair.server) as sent:
                    for _ in range(3):
                        await _echo_once_plain(pair.client)
                    await anyio.sleep(0.05)
                group.cancel_scope.cancel()
    assert received == {}, received
    assert sum(sent.values()) == 3 * 8, sent


def test_an_ignore_stays_under_other_ciphers() -> None:
    """Only asyncssh's own empty IGNORE, and only under an AEAD cipher, is left out."""
    from asyncssh.constants import MSG_IGNORE
    from asyncssh.encryption import GCMEncryption
    from asyncssh.packet import String

    from streams.backends.ssh._ignore import skip_ignore_under_aead

    class Conn:
        def __init__(self, encryption: object) -> None:
            self._send_encryption = encryption
            self.sent: list[tuple[int, tuple[bytes, ...]]] = []

        def send_packet(self, pkttype: int, *args: bytes, handler: Any = None) -> None:
            self.sent.append((pkttype, args))

    aead = Conn(object.__new__(GCMEncryption))
    other = Conn(object())  # a CBC or CTR cipher's object, or none yet
    for conn in (aead, other):
        skip_ignore_under_aead(conn)
        conn.send_packet(MSG_IGNORE, String(b""))
        conn.send_packet(MSG_IGNORE, String(b"padding"))
        conn.send_packet(MSG_CHANNEL_DATA, UInt32(0), String(b"x"))
    assert [kind for kind, _ in aead.sent] == [MSG_IGNORE, MSG_CHANNEL_DATA]
    assert aead.sent[0][1] == (String(b"padding"),)
    assert [kind for kind, _ in other.sent] == [MSG_IGNORE, MSG_IGNORE, MSG_CHANNEL_DATA]
