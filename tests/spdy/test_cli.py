"""``streams echo`` and ``streams probe`` with ``--backend spdy``, as real commands: against
each other (with and without flow control, plain and over the HTTP/1.1 upgrade) and against
the Go spdystream peer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.certificates import make_certificates
from tests.peers import ROOT, build_go, free_port, listening_address, running, streams_command

pytestmark = pytest.mark.interop

GO_SOURCE = Path(__file__).resolve().parent / "go" / "spdypeer"


@pytest.fixture(scope="module")
def spdypeer() -> Path:
    return build_go(GO_SOURCE, "github.com/moby/spdystream")


def run_probe(address: str, *extra: str, streams: int = 20, size: int = 300_000) -> str:
    command = streams_command(
        "probe",
        "--backend",
        "spdy",
        "--connect",
        address,
        "--streams",
        str(streams),
        "--bytes",
        str(size),
        "--header",
        "x-probe=yes",
        "--timeout",
        "60",
        *extra,
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"probe: {streams}/{streams} streams verified" in result.stdout, result.stdout
    return result.stdout


@pytest.mark.parametrize(
    ("listen", "extra"),
    [
        ("127.0.0.1:0", ()),
        ("127.0.0.1:0", ("--spdy-no-flow-control",)),
        ("http://127.0.0.1:0/spdy", ()),
    ],
    ids=["flow-control", "no-flow-control", "upgrade"],
)
def test_probe_against_our_echo(listen: str, extra: tuple[str, ...]) -> None:
    command = streams_command("echo", "--backend", "spdy", "--listen", listen, *extra)
    with running(command, ready_line="echo: listening on", cwd=ROOT) as echo:
        run_probe(listening_address(echo), *extra)


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_probe_against_the_go_server(spdypeer: Path, loop: str) -> None:
    port = free_port()
    with running([str(spdypeer), "server", f"127.0.0.1:{port}"], ready_line="listening on"):
        run_probe(f"127.0.0.1:{port}", "--spdy-no-flow-control", "--loop", loop)


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_go_client_against_our_echo(spdypeer: Path, loop: str) -> None:
    command = streams_command(
        "echo", "--backend", "spdy", "--listen", "127.0.0.1:0", "--spdy-no-flow-control"
    )
    with running([*command, "--loop", loop], ready_line="echo: listening on", cwd=ROOT) as echo:
        result = subprocess.run(
            [str(spdypeer), "client", listening_address(echo), "-streams", "10"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("echo ok: 10 streams", "refusal ok", "server reset ok", "ping ok", "DONE"):
        assert line in result.stdout, result.stdout


def test_probe_against_our_echo_over_tls(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    command = streams_command(
        "echo",
        "--backend",
        "spdy",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        str(certificates.cert),
        "--tls-key",
        str(certificates.key),
    )
    with running(command, ready_line="echo: listening on", cwd=ROOT) as echo:
        run_probe(listening_address(echo), "--tls-ca", str(certificates.ca))
