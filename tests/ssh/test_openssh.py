"""Interop with OpenSSH: our client through a real ``sshd``, a real ``ssh -W`` against our
server, and trust failures (wrong host key, unknown user key) that connect nothing."""

from __future__ import annotations

import getpass
import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.abc
import pytest

from streams import Headers, StreamRejected
from streams._core.backend import BackendOptions, SSHConfig
from streams.backends.ssh import (
    BACKEND,
    DESTINATION_HEADER,
    ORIGIN_HEADER,
    USER_HEADER,
    AuthenticationFailed,
    HostKeyNotVerified,
    SSHAttribute,
)
from streams.testing import read_all
from tests.peers import free_port, missing_peer, require_program, running

from .helpers import Keys, client_options, port_of, server_options

pytestmark = [pytest.mark.anyio, pytest.mark.interop]


@pytest.fixture(scope="module")
def sshd(ssh_keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A private OpenSSH server on a loopback port, logging in with the test's user key."""
    program = require_program("sshd")
    directory = Path(tmp_path_factory.mktemp("sshd"))
    port = free_port()
    try:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    except OSError:
        missing_peer("/run/sshd (sshd's privilege separation directory; run as root)")
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {ssh_keys.host_key}",
                f"AuthorizedKeysFile {ssh_keys.authorized_keys}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "AllowTcpForwarding yes",
                "StrictModes no",
                "UsePAM no",
                f"PidFile {directory / 'sshd.pid'}",
                "LogLevel ERROR",
                "MaxStartups 100",
                "",
            ]
        )
    )
    with running([program, "-f", str(config), "-D", "-e"], port=port):
        yield port


async def _echo_service(task_status: anyio.abc.TaskStatus[int]) -> None:
    """A plain TCP echo service on loopback, the destination of direct-tcpip channels."""

    async def echo(connection: anyio.abc.SocketStream) -> None:
        async with connection:
            try:
                async for chunk in connection:
                    await connection.send(chunk)
                await connection.send_eof()
            except anyio.BrokenResourceError:
                return

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener:
        task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
        await listener.serve(echo)


async def test_hundred_direct_tcpip_streams_through_sshd(sshd: int, ssh_keys: Keys) -> None:
    """100 concurrent streams of 4 MiB each through a real sshd to an echo service,
    every byte verified by hash."""
    size = 4 * 1024 * 1024
    with anyio.fail_after(120):
        async with anyio.create_task_group() as group:
            echo_port = await group.start(_echo_service)
            options = client_options(ssh_keys, sshd)
            async with BACKEND.connect(f"127.0.0.1:{sshd}", options) as provider:

                async def one(index: int) -> None:
                    block = random.Random(index).randbytes(256 * 1024)
                    stream = await provider.open_stream(
                        {DESTINATION_HEADER: f"127.0.0.1:{echo_port}"}
                    )
                    sent = hashlib.sha256()
                    received = hashlib.sha256()
                    total = 0

                    async def send() -> None:
                        for _ in range(size // len(block)):
                            sent.update(block)
                            await stream.send(block)
                        await stream.send_eof()

                    async with stream, anyio.create_task_group() as inner:
                        inner.start_soon(send)
                        while True:
                            try:
                                data = await stream.receive(1 << 20)
                            except anyio.EndOfStream:
                                break
                            received.update(data)
                            total += len(data)
                    assert total == size, f"stream {index}: {total} bytes came back"
                    assert sent.digest() == received.digest(), f"stream {index} was altered"

                async with anyio.create_task_group() as streams:
                    for index in range(100):
                        streams.start_soon(one, index)
            group.cancel_scope.cancel()


async def test_sshd_refusal_is_a_clear_rejection(sshd: int, ssh_keys: Keys) -> None:
    """A destination sshd cannot reach is a StreamRejected with sshd's reason; a stream
    without a destination is refused at once (sshd does not speak streams)."""
    closed_port = free_port()
    with anyio.fail_after(20):
        async with BACKEND.connect(f"127.0.0.1:{sshd}", client_options(ssh_keys, sshd)) as p:
            with pytest.raises(StreamRejected) as refused:
                await p.open_stream({DESTINATION_HEADER: f"127.0.0.1:{closed_port}"})
            assert "refused" in refused.value.reason.lower() or refused.value.reason
            with pytest.raises(StreamRejected, match="does not speak streams"):
                await p.open_stream({"x-plain": "1"})
            early = await p.open_stream(
                {DESTINATION_HEADER: f"127.0.0.1:{closed_port}"}, wait_accept=False
            )
            with pytest.raises(StreamRejected):
                await early.accepted()
            await early.aclose()


async def test_zero_round_trip_open_through_sshd(sshd: int, ssh_keys: Keys) -> None:
    """With wait_accept=False, data sent before sshd confirmed the channel arrives."""
    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            echo_port = await group.start(_echo_service)
            options = client_options(ssh_keys, sshd)
            async with BACKEND.connect(f"127.0.0.1:{sshd}", options) as provider:
                stream = await provider.open_stream(
                    {DESTINATION_HEADER: f"127.0.0.1:{echo_port}"}, wait_accept=False
                )
                await stream.send(b"sent before the open was confirmed")
                await stream.send_eof()
                assert await read_all(stream) == b"sent before the open was confirmed"
                assert (await stream.accepted()).get("x-ssh-channel") == "direct-tcpip"
                await stream.aclose()
            group.cancel_scope.cancel()


def _ssh_command(keys: Keys, port: int, destination: str, key: Path | None = None) -> list[str]:
    return [
        require_program("ssh"),
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={keys.known_hosts(port)}",
        "-i",
        str(key or keys.user_key),
        "-p",
        str(port),
        "-W",
        destination,
        f"{getpass.getuser()}@127.0.0.1",
    ]


async def test_ssh_w_reaches_our_server(ssh_keys: Keys) -> None:
    """``ssh -W`` arrives as a stream with its destination, origin and user in the headers;
    data flows both ways unaltered; a refused destination makes ssh fail clearly."""
    seen: list[Headers] = []
    users: list[str | None] = []

    def handler(headers: Headers) -> tuple[dict[str, str], bool]:
        seen.append(headers)
        return {}, headers.get(DESTINATION_HEADER) == "127.0.0.1:7"

    async def echo_back(stream: anyio.abc.ByteStream) -> None:
        users.append(stream.extra(SSHAttribute.user))
        data = await read_all(stream)  # type: ignore[arg-type]
        await stream.send(data[::-1])
        await stream.send_eof()

    payload = os.urandom(300_000)
    with anyio.fail_after(60):
        async with (
            BACKEND.serve("127.0.0.1:0", server_options(ssh_keys), handler) as server,
            anyio.create_task_group() as group,
        ):
            group.start_soon(server.listener.serve, echo_back, group)
            port = port_of(server.address)
            result = await anyio.run_process(
                _ssh_command(ssh_keys, port, "127.0.0.1:7"), input=payload, check=False
            )
            assert result.returncode == 0, result.stderr.decode()
            assert result.stdout == payload[::-1]
            headers = seen[0]
            assert headers[DESTINATION_HEADER] == "127.0.0.1:7"
            assert ORIGIN_HEADER in headers
            assert headers[USER_HEADER] == getpass.getuser()
            assert users == [getpass.getuser()]

            refused = await anyio.run_process(
                _ssh_command(ssh_keys, port, "10.9.8.7:22"), input=b"x", check=False
            )
            assert refused.returncode != 0
            message = refused.stderr.decode()
            assert "open failed: administratively prohibited: rejected by the handler" in message
            assert len(seen) == 2
            group.cancel_scope.cancel()


async def test_trust_failures_connect_nothing(ssh_keys: Keys) -> None:
    """A wrong host key and an unknown user key fail with clear errors, for our client and
    for OpenSSH's, and no stream ever reaches the handler."""
    calls: list[Headers] = []

    def handler(headers: Headers) -> tuple[None, bool]:
        calls.append(headers)
        return None, True

    with anyio.fail_after(60):
        async with BACKEND.serve("127.0.0.1:0", server_options(ssh_keys), handler) as server:
            port = port_of(server.address)
            impostor = ssh_keys.other_key.with_suffix(".pub").read_text().strip()
            wrong_hosts = ssh_keys.known_hosts(port, key=impostor)
            options = BackendOptions(
                ssh=SSHConfig(
                    identity=str(ssh_keys.user_key),
                    known_hosts=str(wrong_hosts),
                    user=getpass.getuser(),
                )
            )
            with pytest.raises(HostKeyNotVerified, match="not trusted"):
                async with BACKEND.connect(server.address, options):
                    pass
            stranger = client_options(ssh_keys, port, identity=ssh_keys.other_key)
            with pytest.raises(AuthenticationFailed, match="no key was accepted"):
                async with BACKEND.connect(server.address, stranger):
                    pass
            result = await anyio.run_process(
                _ssh_command(ssh_keys, port, "127.0.0.1:7", key=ssh_keys.other_key),
                input=b"",
                check=False,
            )
            assert result.returncode != 0
            assert b"Permission denied (publickey)" in result.stderr, result.stderr.decode()
            assert server.connections == []
    assert calls == []


async def test_ssh_l_forwards_into_a_stream(ssh_keys: Keys) -> None:
    """``ssh -L`` against our server: each local connection becomes a stream whose headers
    name the forward's destination, and bytes flow both ways."""
    local_port = free_port()

    async def upper(stream: anyio.abc.ByteStream) -> None:
        data = await read_all(stream)  # type: ignore[arg-type]
        await stream.send(data.upper())
        await stream.send_eof()

    destinations: list[str] = []

    def handler(headers: Headers) -> tuple[None, bool]:
        destinations.append(headers[DESTINATION_HEADER])
        return None, True

    with anyio.fail_after(60):
        async with (
            BACKEND.serve("127.0.0.1:0", server_options(ssh_keys), handler) as server,
            anyio.create_task_group() as group,
        ):
            group.start_soon(server.listener.serve, upper, group)
            command = _ssh_command(ssh_keys, port_of(server.address), "unused")
            at = command.index("-W")
            command[at : at + 2] = [
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-L",
                f"127.0.0.1:{local_port}:db.internal:5432",
            ]
            async with await anyio.open_process(command) as ssh:
                try:
                    for _ in range(200):
                        try:
                            connection = await anyio.connect_tcp("127.0.0.1", local_port)
                            break
                        except OSError:
                            await anyio.sleep(0.05)
                    else:
                        raise AssertionError("ssh -L never listened")
                    async with connection:
                        await connection.send(b"select 1;")
                        await connection.send_eof()
                        reply = b""
                        async for chunk in connection:
                            reply += chunk
                    assert reply == b"SELECT 1;"
                    assert destinations == ["db.internal:5432"]
                finally:
                    ssh.terminate()
            group.cancel_scope.cancel()
