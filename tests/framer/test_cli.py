"""The real ``streams echo`` and ``streams probe`` commands with the framer, against each
other, with headers, over TCP and TLS."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pytest

from streams import StreamRejected, StreamReset
from streams._core.backend import BackendOptions
from streams.backends.framer import BACKEND
from tests.certificates import make_certificates
from tests.peers import listening_address, running, streams_command


def probe(address: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = streams_command("probe", "--backend", "framer", "--connect", address, *extra)
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_probe_against_echo(loop: str) -> None:
    echo = streams_command("echo", "--backend", "framer", "--listen", "127.0.0.1:0", "--loop", loop)
    with running(echo, ready_line="echo: listening on") as server:
        address = listening_address(server)
        result = probe(
            address,
            "--streams",
            "100",
            "--bytes",
            "200000",
            "--header",
            "x-test=yes",
            "--loop",
            loop,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "100/100 streams verified" in result.stdout


def test_probe_against_echo_over_tls(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    echo = streams_command(
        "echo",
        "--backend",
        "framer",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        str(files.cert),
        "--tls-key",
        str(files.key),
    )
    with running(echo, ready_line="echo: listening on") as server:
        address = listening_address(server)
        result = probe(address, "--streams", "20", "--bytes", "100000", "--tls-ca", str(files.ca))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "20/20 streams verified" in result.stdout
        unverified = probe(address, "--streams", "1", "--timeout", "10")
        assert unverified.returncode == 1  # the system's trust store does not know our CA


@pytest.mark.anyio
async def test_echo_rejects_and_resets() -> None:
    echo = streams_command("echo", "--backend", "framer", "--listen", "127.0.0.1:0")
    with running(echo, ready_line="echo: listening on") as server:
        address = listening_address(server)
        with anyio.fail_after(20):
            async with BACKEND.connect(address, BackendOptions()) as provider:
                with pytest.raises(StreamRejected) as caught:
                    await provider.open_stream({"x-reject": "1", "x-why": "test"})
                assert caught.value.response_headers.get("x-echo-x-why") == "test"
                stream = await provider.open_stream({"x-reset-after": "5"})
                await stream.send(b"0123456789")
                received = b""
                while len(received) < 5:
                    received += await stream.receive()
                assert received == b"01234"
                with pytest.raises(StreamReset):
                    await stream.receive()


def test_bad_setting_is_a_clear_error() -> None:
    command = streams_command(
        "probe", "--backend", "framer", "--connect", "127.0.0.1:1", "--setting", "bogus=1"
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "bogus" in result.stdout + result.stderr


def test_raw_probe_against_raw_echo_over_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    echo = streams_command("echo", "--backend", "framer", "--raw", "--listen", f"unix:{path}")
    with running(echo, ready_line="echo: listening on") as server:
        address = listening_address(server)
        assert address == f"unix:{path}"
        result = probe(address, "--raw", "--streams", "50", "--bytes", "100000")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "50/50 streams verified" in result.stdout
