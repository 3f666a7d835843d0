"""The SSH backend's limits, in process: the header frame's limits (sans-IO), the new
settings' validation, the disconnect codes, a provider pair whose peer goes over a limit
(every stream fails with an error naming it, nothing hangs), and host key verification
being on by default. The attacks themselves, against a server process, are in
``tests/hardening/abuse/test_ssh.py``."""

from __future__ import annotations

import getpass
from pathlib import Path

import anyio
import asyncssh
import pytest

from streams import ConfigError, ConnectionLost, LimitExceeded, ProtocolError
from streams._core.backend import BackendOptions, SSHConfig
from streams._core.errors import ErrorCode
from streams.backends.ssh import BACKEND, HostKeyNotVerified, SSHProvider, SSHSettings
from streams.backends.ssh._codec import (
    MAX_FRAME,
    FrameReader,
    HeaderLimitError,
    OpenFrame,
    encode_open,
    encode_reply,
)
from streams.backends.ssh._limits import disconnect_code

from .helpers import Keys, port_of, server_options, ssh_pair

# -- the header frame ------------------------------------------------------------------------


def test_too_many_headers_is_a_limit_not_a_codec_error() -> None:
    frame = encode_open([(f"x-{i}", "v") for i in range(10)])
    with pytest.raises(HeaderLimitError) as raised:
        FrameReader(reply=False, max_headers=9).feed(frame)
    assert raised.value.limit == "max_headers"
    parsed, rest = FrameReader(reply=False, max_headers=10).feed(frame)
    assert isinstance(parsed, OpenFrame) and len(parsed.headers) == 10 and rest == b""


def test_an_oversize_header_frame_is_refused_from_its_length_prefix() -> None:
    """The limit is seen in the first five bytes: nothing of the body is buffered."""
    reader = FrameReader(reply=False, max_body=1024)
    prefix = b"\x01" + (MAX_FRAME * 100).to_bytes(4, "big")
    with pytest.raises(HeaderLimitError) as raised:
        reader.feed(prefix)
    assert raised.value.limit == "max_header_block"
    assert reader.buffered == 0
    small = encode_open([("x", "y" * 900)])
    assert FrameReader(reply=False, max_body=1024).feed(small)[0] is not None
    with pytest.raises(HeaderLimitError):
        FrameReader(reply=False, max_body=512).feed(small)


def test_reply_frames_keep_the_codec_bound_only() -> None:
    """The limits are the acceptor's; an opener reads any reply up to MAX_FRAME."""
    reply = encode_reply(accepted=True, headers=[(f"x-{i}", "v") for i in range(300)])
    frame, _ = FrameReader(reply=True, max_body=64, max_headers=1).feed(reply)
    assert frame is not None


def test_reader_reports_what_it_holds() -> None:
    reader = FrameReader(reply=False)
    frame = encode_open([("a", "b")])
    assert reader.feed(frame[:7]) == (None, b"")
    assert reader.buffered == 7
    assert reader.feed(frame[7:])[0] is not None
    assert reader.buffered == 0


# -- settings and codes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_connection_buffer", 1000),
        ("max_header_block", 10),
        ("max_header_block", MAX_FRAME + 1),
        ("max_auth_attempts", 0),
    ],
)
def test_new_settings_are_validated(name: str, value: int) -> None:
    with pytest.raises(ConfigError) as raised:
        SSHSettings(**{name: value})
    assert raised.value.path == name


def test_disconnect_codes() -> None:
    flood = LimitExceeded("pings_per_second", "too many")
    assert disconnect_code(flood) == asyncssh.DISC_PROTOCOL_ERROR
    auth = LimitExceeded("max_auth_attempts", "too many", ErrorCode.PROTOCOL_ERROR)
    assert disconnect_code(auth) == asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE


# -- a peer over a limit, in process -------------------------------------------------------------


@pytest.mark.anyio
async def test_ping_flood_fails_every_stream_with_the_limit(ssh_keys: Keys) -> None:
    """Pings over ``pings_per_second``: the flooded side fails with the limit, the
    flooding side is disconnected with a reason naming it, and open streams on both raise
    (never a clean end of file), without hanging."""
    settings = {"pings_per_second": 1, "flood_burst_seconds": 3}
    with anyio.fail_after(30):
        async with ssh_pair(ssh_keys, **settings) as pair:
            client, server = pair.client, pair.server
            assert isinstance(client, SSHProvider) and isinstance(server, SSHProvider)
            listener = server.listen()
            opened = await client.open_stream({"x-test": "ping-flood"})
            accepted = await listener.accept()
            await opened.send(b"before")
            assert await accepted.receive() == b"before"
            with pytest.raises(ConnectionLost):
                for _ in range(10):
                    await client.ping()
            await server.wait_closed()
            assert isinstance(server.failure, LimitExceeded)
            assert server.failure.limit == "pings_per_second"
            await client.wait_closed()
            assert isinstance(client.failure, ProtocolError)
            assert "limit pings_per_second exceeded" in str(client.failure)
            with pytest.raises(ConnectionLost):
                await opened.receive()
            with pytest.raises(ConnectionLost):
                await accepted.receive()


@pytest.mark.anyio
async def test_unread_data_over_the_connection_buffer(ssh_keys: Keys) -> None:
    """Three streams whose data nobody reads, 3 MiB each, against a 1 MiB connection
    buffer: SSH lets each channel fill its 2 MiB window (so every sender is still
    waiting for window when the limit trips); the guard counts what is held across the
    channels and disconnects."""
    with anyio.fail_after(30):
        async with ssh_pair(ssh_keys, max_connection_buffer=1 << 20) as pair:
            client, server = pair.client, pair.server
            assert isinstance(server, SSHProvider)
            server.listen()
            chunk = b"x" * (64 << 10)
            errors: list[Exception] = []

            async def fill() -> None:
                try:
                    stream = await client.open_stream()
                    for _ in range(48):
                        await stream.send(chunk)
                except Exception as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as group:
                for _ in range(3):
                    group.start_soon(fill)
            await server.wait_closed()
            await client.wait_closed()
            assert errors, "every sender finished: nothing was limited"
            assert all(isinstance(error, ConnectionLost) for error in errors), errors
            assert isinstance(server.failure, LimitExceeded)
            assert server.failure.limit == "max_connection_buffer"
            assert isinstance(client.failure, ProtocolError)


# -- host keys are verified by default ------------------------------------------------------------


def _options(keys: Keys, known_hosts: Path | None) -> BackendOptions:
    return BackendOptions(
        ssh=SSHConfig(
            identity=str(keys.user_key),
            known_hosts=str(known_hosts) if known_hosts is not None else None,
            user=getpass.getuser(),
        )
    )


@pytest.mark.anyio
async def test_an_unknown_host_key_is_refused(ssh_keys: Keys, tmp_path: Path) -> None:
    """A known_hosts file that says nothing of the server: ``HostKeyNotVerified``. There
    is no option to skip the check."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:1 {ssh_keys.host_public}\n")  # another port
    with anyio.fail_after(30):
        async with BACKEND.serve("127.0.0.1:0", server_options(ssh_keys)) as server:
            with pytest.raises(HostKeyNotVerified):
                async with BACKEND.connect(server.address, _options(ssh_keys, known_hosts)):
                    pass
            assert server.connections == []


@pytest.mark.anyio
async def test_without_known_hosts_the_users_file_decides(
    ssh_keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``known_hosts`` option: ``~/.ssh/known_hosts`` is used, and a server it does
    not list is refused rather than trusted on first use."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text("")
    monkeypatch.setenv("HOME", str(home))
    with anyio.fail_after(30):
        async with BACKEND.serve("127.0.0.1:0", server_options(ssh_keys)) as server:
            with pytest.raises(HostKeyNotVerified):
                async with BACKEND.connect(server.address, _options(ssh_keys, None)):
                    pass
            port = port_of(server.address)
            (home / ".ssh" / "known_hosts").write_text(
                f"[127.0.0.1]:{port} {ssh_keys.host_public}\n"
            )
            async with BACKEND.connect(server.address, _options(ssh_keys, None)) as provider:
                assert not provider.is_closing
