"""``streams echo --backend ssh`` and ``streams probe --backend ssh``, as real commands, and
OpenSSH's ``ssh -W`` reaching ``streams echo``."""

from __future__ import annotations

import getpass
import os
import subprocess

import anyio
import pytest

from streams import Stream, StreamRejected, StreamReset
from streams.backends.ssh import BACKEND
from streams.cli.echo import echo_handler, echo_stream
from tests.peers import listening_address, require_program, running, streams_command

from .helpers import Keys, client_options, port_of, server_options
from .test_openssh import _ssh_command

pytestmark = pytest.mark.interop


def _echo(keys: Keys, loop: str = "asyncio") -> list[str]:
    return streams_command(
        "echo",
        "--backend",
        "ssh",
        "--listen",
        "127.0.0.1:0",
        "--ssh-host-key",
        str(keys.host_key),
        "--ssh-authorized-keys",
        str(keys.authorized_keys),
        "--loop",
        loop,
    )


def _probe(keys: Keys, address: str, *extra: str, loop: str = "asyncio") -> list[str]:
    return streams_command(
        "probe",
        "--backend",
        "ssh",
        "--connect",
        address,
        "--ssh-identity",
        str(keys.user_key),
        "--ssh-known-hosts",
        str(keys.known_hosts(port_of(address))),
        "--ssh-user",
        getpass.getuser(),
        "--loop",
        loop,
        "--timeout",
        "60",
        *extra,
    )


@pytest.mark.parametrize(("echo_loop", "probe_loop"), [("asyncio", "trio"), ("trio", "asyncio")])
def test_probe_verifies_echo(ssh_keys: Keys, echo_loop: str, probe_loop: str) -> None:
    with running(_echo(ssh_keys, echo_loop), ready_line="echo: listening on") as echo:
        address = listening_address(echo)
        result = subprocess.run(
            _probe(
                ssh_keys,
                address,
                "--streams",
                "20",
                "--bytes",
                "300000",
                "--header",
                "x-kind=cli",
                loop=probe_loop,
            ),
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "probe: 20/20 streams verified" in result.stdout, result.stdout


def test_probe_fails_against_an_untrusted_host_key(ssh_keys: Keys) -> None:
    with running(_echo(ssh_keys), ready_line="echo: listening on") as echo:
        address = listening_address(echo)
        known_hosts = ssh_keys.known_hosts(
            port_of(address),
            key=ssh_keys.other_key.with_suffix(".pub").read_text().strip(),
        )
        command = _probe(ssh_keys, address)
        command[command.index("--ssh-known-hosts") + 1] = str(known_hosts)
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "not trusted" in result.stdout + result.stderr, result.stdout + result.stderr


def test_ssh_w_reaches_streams_echo(ssh_keys: Keys) -> None:
    require_program("ssh")
    payload = os.urandom(200_000)
    with running(_echo(ssh_keys), ready_line="echo: listening on") as echo:
        port = port_of(listening_address(echo))
        result = subprocess.run(
            _ssh_command(ssh_keys, port, "127.0.0.1:9"),
            input=payload,
            capture_output=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == payload


@pytest.mark.anyio
async def test_echo_rules_over_ssh(ssh_keys: Keys) -> None:
    """``x-reject`` is refused with the handler's refusal, ``x-reset-after: N`` echoes
    exactly N bytes and then resets, over a real SSH connection."""
    with anyio.fail_after(20):
        async with (
            BACKEND.serve("127.0.0.1:0", server_options(ssh_keys), echo_handler) as server,
            anyio.create_task_group() as group,
        ):
            group.start_soon(server.listener.serve, echo_stream, group)
            port = port_of(server.address)
            async with BACKEND.connect(server.address, client_options(ssh_keys, port)) as client:
                with pytest.raises(StreamRejected) as rejected:
                    await client.open_stream({"x-reject": "1"})
                assert rejected.value.response_headers.get("x-echo-x-reject") == "1"
                stream = await client.open_stream({"x-reset-after": "5"})
                await stream.send(b"0123456789")
                received = bytearray()
                with pytest.raises(StreamReset):
                    await _read_into(stream, received)
                assert bytes(received) == b"01234"
                await stream.aclose()
            group.cancel_scope.cancel()


async def _read_into(stream: Stream, into: bytearray) -> None:
    while True:
        into += await stream.receive()
