"""What the SSH backend adds to the contract: the server's refusals, the authenticated
user, broken framing, keepalive, pings and configuration errors."""

from __future__ import annotations

import getpass
import sys

import anyio
import anyio.abc
import asyncssh
import pytest

from streams import ConfigError, ConnectionLost, GoingAway, ProtocolError, StreamReset
from streams._core.backend import BackendOptions, SSHConfig
from streams.backends.ssh import BACKEND, USER_HEADER, SSHAttribute, SSHSettings
from streams.backends.ssh._bridge import Bridge, open_bridge
from streams.backends.ssh._codec import STREAM_PATH
from streams.testing import read_all

from .helpers import Keys, client_options, port_of, server_options, ssh_pair

pytestmark = pytest.mark.anyio


async def _raw_client(bridge: Bridge, keys: Keys, port: int) -> asyncssh.SSHClientConnection:
    """A bare asyncssh client, to send what our own client never would."""
    return await bridge.run(
        asyncssh.connect,
        "127.0.0.1",
        port,
        known_hosts=str(keys.known_hosts(port)),
        client_keys=[str(keys.user_key)],
        username=getpass.getuser(),
        agent_path=None,
        config=None,
    )


async def test_server_forwards_nothing_it_was_not_told(ssh_keys: Keys) -> None:
    """No shell, no remote listener, no Unix socket forwarding: only streams."""
    with anyio.fail_after(20):
        async with (
            BACKEND.serve("127.0.0.1:0", server_options(ssh_keys)) as server,
            open_bridge() as bridge,
        ):
            conn = await _raw_client(bridge, ssh_keys, port_of(server.address))
            try:
                with pytest.raises(asyncssh.ChannelOpenError):
                    await bridge.run(conn.create_session, asyncssh.SSHClientSession)
                with pytest.raises(asyncssh.ChannelListenError):
                    await bridge.run(conn.forward_remote_port, "127.0.0.1", 0, "127.0.0.1", 22)
                with pytest.raises(asyncssh.ChannelOpenError):
                    await bridge.run(
                        conn.create_unix_connection, asyncssh.SSHUNIXSession, "/run/x.sock"
                    )
                with pytest.raises(asyncssh.ChannelListenError):
                    await bridge.run(
                        conn.create_unix_server, asyncssh.SSHUNIXSession, "/tmp/elsewhere"
                    )
            finally:
                conn.abort()


async def test_user_is_authenticated_not_claimed(ssh_keys: Keys) -> None:
    """The server stamps the authenticated user on every stream, replacing a claimed one."""
    async with ssh_pair(ssh_keys) as pair:
        listener = pair.server.listen()
        opened = await pair.client.open_stream({USER_HEADER: "admin", "x-a": "1"})
        with anyio.fail_after(10):
            accepted = await listener.accept()
        assert accepted.headers.getall(USER_HEADER) == [getpass.getuser()]
        assert accepted.extra(SSHAttribute.user) == getpass.getuser()
        await opened.aclose()
        await accepted.aclose()


async def test_ping_measures_the_round_trip(ssh_keys: Keys) -> None:
    async with ssh_pair(ssh_keys) as pair:
        with anyio.fail_after(10):
            rtt = await pair.client.ping()
            assert 0 <= rtt < 5
            assert pair.client.rtt == rtt
            assert await pair.server.ping() >= 0


async def test_server_close_is_a_go_away(ssh_keys: Keys) -> None:
    """A server closing gracefully takes no new streams (GoingAway, retryable), lets open
    ones finish within the grace, then the client's provider ends."""
    with anyio.fail_after(20):
        async with BACKEND.serve("127.0.0.1:0", server_options(ssh_keys)) as server:
            port = port_of(server.address)
            async with BACKEND.connect(server.address, client_options(ssh_keys, port)) as c:
                opened = await c.open_stream()
                accepted = await server.listener.accept()
                async with anyio.create_task_group() as group:
                    group.start_soon(lambda: server.aclose(grace=10))
                    while not c.is_closing:
                        await anyio.sleep(0.01)
                    with pytest.raises(GoingAway) as going:
                        await c.open_stream()
                    assert going.value.retryable
                    await opened.send(b"still flows")
                    await opened.send_eof()
                    assert await read_all(accepted) == b"still flows"
                    await accepted.aclose()
                    assert await read_all(opened) == b""
                    await opened.aclose()
                await c.wait_closed()


async def test_broken_framing_fails_the_connection(ssh_keys: Keys) -> None:
    """A channel whose first frame is garbage: the server fails the connection with a
    ProtocolError and disconnects the peer."""
    with anyio.fail_after(20):
        async with (
            BACKEND.serve_connections("127.0.0.1:0", server_options(ssh_keys)) as (
                server,
                providers,
            ),
            open_bridge() as bridge,
        ):
            conn = await _raw_client(bridge, ssh_keys, port_of(server.address))
            try:
                chan, _ = await bridge.run(
                    conn.create_unix_connection, asyncssh.SSHUNIXSession, STREAM_PATH
                )
                provider = await providers.receive()
                chan.write(b"\x07 this is not a frame")
                await provider.wait_closed()
                assert isinstance(provider.failure, ProtocolError), provider.failure
                await bridge.run(conn.wait_closed)
            finally:
                conn.abort()


async def _frozen_proxy(
    target: int, frozen: anyio.Event, *, task_status: anyio.abc.TaskStatus[int]
) -> None:
    """Forwards TCP to *target* until *frozen* is set, then forwards nothing (a dead link)."""

    async def pump(source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream) -> None:
        try:
            async for chunk in source:
                if frozen.is_set():
                    await anyio.sleep_forever()
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return

    async def handle(client: anyio.abc.SocketStream) -> None:
        upstream = await anyio.connect_tcp("127.0.0.1", target)
        async with client, upstream, anyio.create_task_group() as group:
            group.start_soon(pump, client, upstream)
            await pump(upstream, client)
            group.cancel_scope.cancel()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener:
        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
        await listener.serve(handle)


async def test_keepalive_detects_a_dead_link(ssh_keys: Keys) -> None:
    """When the link goes silent, keepalive fails the provider and its streams within
    interval x count, with ConnectionLost."""
    frozen = anyio.Event()
    with anyio.fail_after(20):
        async with (
            BACKEND.serve("127.0.0.1:0", server_options(ssh_keys)) as server,
            anyio.create_task_group() as group,
        ):
            proxy = await group.start(_frozen_proxy, port_of(server.address), frozen)
            options = client_options(ssh_keys, proxy, keepalive_interval=0.2, keepalive_count_max=2)
            async with BACKEND.connect(f"127.0.0.1:{proxy}", options) as client:
                stream = await client.open_stream()
                frozen.set()
                started = anyio.current_time()
                with pytest.raises(ConnectionLost, match=r"(?i)keepalive"):
                    await read_all(stream)
                assert anyio.current_time() - started < 5
                assert client.is_closing
            group.cancel_scope.cancel()


async def test_configuration_errors_name_the_field(ssh_keys: Keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="host key") as missing:
        BACKEND.serve("127.0.0.1:0", BackendOptions(ssh=SSHConfig()))
    assert missing.value.path == "ssh.host_key"
    with pytest.raises(ConfigError) as bad_setting:
        BACKEND.serve("127.0.0.1:0", server_options(ssh_keys, window=10))
    assert bad_setting.value.path == "window"
    with pytest.raises(ConfigError, match="unknown"):
        BACKEND.connect("127.0.0.1:22", client_options(ssh_keys, 22, no_such_setting=1))
    options = BackendOptions(ssh=SSHConfig(known_hosts=str(tmp_path / "missing")))
    with pytest.raises(ConfigError) as no_file:
        async with BACKEND.connect("127.0.0.1:22", options):
            pass
    assert no_file.value.path == "ssh.known_hosts"
    with pytest.raises(ConfigError):
        BACKEND.connect("unix:/tmp/x")
    with pytest.raises(ConfigError) as small_window:
        BACKEND.connect("127.0.0.1:22", client_options(ssh_keys, 22, receive_window=32768))
    assert small_window.value.path == "settings.receive_window"
    for name, value in [
        ("max_packet", 512),
        ("write_buffer", 10),
        ("keepalive_interval", -1),
        ("keepalive_count_max", 0),
        ("login_timeout", 0),
    ]:
        with pytest.raises(ConfigError) as bad:
            SSHSettings(**{name: value})
        assert bad.value.path == name


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_without_the_bridge_fails_clearly(
    ssh_keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On trio without trio-asyncio, connect fails at once with a ConfigError saying what
    to install, instead of misbehaving."""
    monkeypatch.setitem(sys.modules, "trio_asyncio", None)
    with pytest.raises(ConfigError, match="pip install trio-asyncio"):
        async with BACKEND.connect("127.0.0.1:22", client_options(ssh_keys, 22)):
            pass


async def test_reset_reaches_a_sender_whose_reading_is_paused(ssh_keys: Keys) -> None:
    """The peer resets while this side neither reads (its SSH reading is paused) nor can
    send (its send buffer is full): the blocked send fails at once with StreamReset, and
    the receiver still reads what had arrived, then StreamReset, never an end of file."""
    settings = {"window": 65536, "receive_window": 65536, "write_buffer": 16384}
    async with ssh_pair(ssh_keys, **settings) as pair:
        listener = pair.server.listen()
        opened = await pair.client.open_stream()
        with anyio.fail_after(10):
            accepted = await listener.accept()
        payload = bytes(range(256)) * 1024
        sent_by_peer = 0

        async def flood_opened() -> None:
            nonlocal sent_by_peer
            with anyio.move_on_after(1):
                for offset in range(0, len(payload), 4096):
                    await accepted.send(payload[offset : offset + 4096])
                    sent_by_peer += 4096

        await flood_opened()
        assert 0 < sent_by_peer < len(payload), "the window did not stop the peer"
        errors: list[BaseException] = []

        async def blocked_send() -> None:
            try:
                while True:
                    await opened.send(b"y" * 4096)
            except Exception as exc:
                errors.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(blocked_send)
                await anyio.sleep(0.3)
                await accepted.reset()
            assert isinstance(errors[0], StreamReset), errors
            received = bytearray()

            async def read_until_error() -> BaseException:
                while True:
                    try:
                        received.extend(await opened.receive())
                    except (Exception, anyio.EndOfStream) as exc:
                        return exc

            assert isinstance(await read_until_error(), StreamReset)
        assert payload.startswith(bytes(received)), "the data before the reset was altered"
        # all but what the peer still had queued in its own send buffer when it reset
        assert len(received) >= sent_by_peer - 32768, f"{len(received)} of {sent_by_peer} bytes"
        await opened.aclose()
