"""Interop with real HTTP/2 programs: nghttpd, nghttp, curl, h2load and Go's net/http2.

Each peer is a real process on loopback, stopped by its own pid; a missing peer skips
locally and fails in CI (``tests/peers.py``).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from streams import StreamRejected
from streams._core.backend import BackendOptions
from streams._core.transport import TLSConfig
from streams.backends.http2 import BACKEND
from streams.testing import read_all
from tests.certificates import Certificates, make_certificates
from tests.peers import (
    build_go,
    free_port,
    listening_address,
    require_program,
    running,
    streams_command,
)

pytestmark = pytest.mark.interop

GO = Path(__file__).resolve().parent / "go"
HTTP2 = "golang.org/x/net/http2"
LOOPS = pytest.mark.parametrize("loop", ["asyncio", "trio"])
FILES = {"empty": 0, "one": 1, "big": 32 * 1024 * 1024}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def docroot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("htdocs")
    digests = {}
    for name, size in FILES.items():
        data = random.Random(size).randbytes(size)
        (root / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return root, digests


@contextmanager
def nghttpd(root: Path, certificates: Certificates | None) -> Iterator[int]:
    program = require_program("nghttpd")
    port = free_port()
    command = [program, "-a", "127.0.0.1", "-d", str(root)]
    if certificates is None:
        command += ["--no-tls", str(port)]
    else:
        command += [str(port), str(certificates.key), str(certificates.cert)]
    with running(command, port=port):
        yield port


@contextmanager
def streams_echo(loop: str, *tls: str) -> Iterator[str]:
    command = streams_command(
        "echo", "--backend", "http2", "--listen", "127.0.0.1:0", "--loop", loop, *tls
    )
    with running(command, ready_line="echo: listening on") as process:
        yield listening_address(process)


def tls_server_flags(certificates: Certificates) -> tuple[str, ...]:
    return ("--tls-cert", str(certificates.cert), "--tls-key", str(certificates.key))


# -- our client against nghttpd -------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
async def test_client_fetches_files_from_nghttpd(
    tls: bool, docroot: tuple[Path, dict[str, str]], certificates: Certificates
) -> None:
    root, digests = docroot
    options = BackendOptions(tls=TLSConfig(ca=str(certificates.ca)) if tls else None)
    with nghttpd(root, certificates if tls else None) as port:
        with anyio.fail_after(60):
            async with BACKEND.connect(f"127.0.0.1:{port}", options) as provider:
                for name in FILES:
                    stream = await provider.open_stream({":method": "GET", ":path": f"/{name}"})
                    assert stream.response_headers is not None
                    assert stream.response_headers[":status"] == "200"
                    await stream.send_eof()
                    body = await read_all(stream, 1 << 20)
                    assert len(body) == FILES[name], name
                    assert hashlib.sha256(body).hexdigest() == digests[name], name
                    await stream.aclose()
                with pytest.raises(StreamRejected) as caught:
                    await provider.open_stream({":method": "GET", ":path": "/missing"})
                assert caught.value.response_headers[":status"] == "404"
                assert not caught.value.retryable


# -- real clients against our server -----------------------------------------------------------


def _upload_file(tmp_path: Path, size: int) -> Path:
    path = tmp_path / f"upload-{size}"
    path.write_bytes(random.Random(size + 1).randbytes(size))
    return path


@LOOPS
@pytest.mark.parametrize("size", [0, 1, 3 * 1024 * 1024 + 7])
def test_nghttp_upload_is_echoed(loop: str, size: int, tmp_path: Path) -> None:
    nghttp = require_program("nghttp")
    upload = _upload_file(tmp_path, size)
    with streams_echo(loop) as address:
        result = subprocess.run(
            [nghttp, "--no-dep", "-d", str(upload), f"http://{address}/upload"],
            capture_output=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout == upload.read_bytes()


@LOOPS
@pytest.mark.parametrize("size", [0, 1, 3 * 1024 * 1024 + 7])
def test_curl_upload_is_echoed(loop: str, size: int, tmp_path: Path) -> None:
    curl = require_program("curl")
    upload = _upload_file(tmp_path, size)
    with streams_echo(loop) as address:
        result = subprocess.run(
            [
                curl, "-sS", "--fail", "--http2-prior-knowledge", "-H", "x-hello: there",
                "-D", str(tmp_path / "headers"), "--data-binary", f"@{upload}",
                "-o", str(tmp_path / "out"), f"http://{address}/upload",
            ],
            capture_output=True,
            timeout=60,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert (tmp_path / "out").read_bytes() == upload.read_bytes()
    headers = (tmp_path / "headers").read_text().lower()
    assert headers.startswith("http/2 200"), headers
    assert "x-echo-x-hello: there" in headers


@LOOPS
def test_curl_upgrades_from_http1(loop: str, tmp_path: Path) -> None:
    curl = require_program("curl")
    upload = _upload_file(tmp_path, 10_000)
    with streams_echo(loop) as address:
        for extra in ([], ["--data-binary", f"@{upload}"]):
            result = subprocess.run(
                [curl, "-sS", "--fail", "--http2", "-o", str(tmp_path / "out"),
                 "-w", "%{http_version}", *extra, f"http://{address}/upgrade"],
                capture_output=True,
                timeout=60,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr.decode(errors="replace")
            assert result.stdout == b"2", "curl's Upgrade: h2c was not taken"
            expected = upload.read_bytes() if extra else b""
            assert (tmp_path / "out").read_bytes() == expected
        plain = subprocess.run(
            [curl, "-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}",
             f"http://{address}/"],
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        assert plain.stdout == b"505"


def test_curl_over_tls_with_alpn(tmp_path: Path, certificates: Certificates) -> None:
    curl = require_program("curl")
    upload = _upload_file(tmp_path, 100_000)
    with streams_echo("asyncio", *tls_server_flags(certificates)) as address:
        result = subprocess.run(
            [
                curl, "-sS", "--fail", "--http2", "--cacert", str(certificates.ca),
                "--data-binary", f"@{upload}", "-o", str(tmp_path / "out"),
                "-w", "%{http_version}", f"https://{address}/upload",
            ],
            capture_output=True,
            timeout=60,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout == b"2", "curl did not speak HTTP/2 over TLS"
    assert (tmp_path / "out").read_bytes() == upload.read_bytes()


@LOOPS
def test_h2load_against_our_server(loop: str) -> None:
    h2load = require_program("h2load")
    with streams_echo(loop) as address:
        result = subprocess.run(
            [h2load, "-n", "20000", "-c", "4", "-m", "100", f"http://{address}/"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr
    match = re.search(
        r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored",
        result.stdout,
    )
    assert match, result.stdout
    total, done, succeeded, failed, errored = map(int, match.groups())
    assert (total, done, succeeded, failed, errored) == (20000, 20000, 20000, 0, 0), match[0]


# -- Go's net/http2, both ways ---------------------------------------------------------------

DUPLEX_STREAMS = 100
# the size on asyncio; trio moves the same streams with less data, to keep the
# suite's time (trio runs this pure-Python data path about half as fast)
DUPLEX_BYTES = {"asyncio": 16 * 1024 * 1024, "trio": 4 * 1024 * 1024}


@LOOPS
def test_go_client_full_duplex_against_our_server(loop: str) -> None:
    client = build_go(GO / "duplexclient", HTTP2)
    with streams_echo(loop) as address:
        result = subprocess.run(
            [
                str(client), "-url", f"http://{address}/",
                "-streams", str(DUPLEX_STREAMS), "-bytes", str(DUPLEX_BYTES[loop]),
            ],
            capture_output=True,
            text=True,
            timeout=240,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.strip() == f"ok {DUPLEX_STREAMS} {DUPLEX_BYTES[loop]}"


@LOOPS
def test_go_client_with_default_frames(loop: str) -> None:
    """Go's default 16 KiB frames, the path most Go clients take (less data: it is slower)."""
    client = build_go(GO / "duplexclient", HTTP2)
    with streams_echo(loop) as address:
        result = subprocess.run(
            [str(client), "-url", f"http://{address}/", "-streams", "100",
             "-bytes", str(4 * 1024 * 1024), "-frame", "16384"],
            capture_output=True,
            text=True,
            timeout=240,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.strip() == f"ok 100 {4 * 1024 * 1024}"


@LOOPS
def test_our_client_full_duplex_against_go_server(loop: str) -> None:
    server = build_go(GO / "echoserver", HTTP2)
    with running([str(server)], ready_line="listening on") as process:
        address = process.ready.split("listening on ", 1)[1]  # type: ignore[attr-defined]
        result = subprocess.run(
            streams_command(
                "probe", "--backend", "http2", "--connect", address, "--loop", loop,
                "--streams", str(DUPLEX_STREAMS), "--bytes", str(DUPLEX_BYTES[loop]),
                "--timeout", "200",
            ),
            capture_output=True,
            text=True,
            timeout=240,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert f"{DUPLEX_STREAMS}/{DUPLEX_STREAMS} streams verified" in result.stdout


def test_go_server_rejection_reaches_our_client() -> None:
    server = build_go(GO / "echoserver", HTTP2)
    with running([str(server)], ready_line="listening on") as process:
        address = process.ready.split("listening on ", 1)[1]  # type: ignore[attr-defined]
        result = subprocess.run(
            streams_command(
                "probe", "--backend", "http2", "--connect", address,
                "--header", "x-reject=1", "--timeout", "30",
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert "HTTP status 403" in result.stdout, result.stdout


# -- streams echo and probe against each other --------------------------------------------------


@LOOPS
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_probe_against_echo(loop: str, tls: bool, certificates: Certificates) -> None:
    server_flags = tls_server_flags(certificates) if tls else ()
    client_flags = ("--tls-ca", str(certificates.ca)) if tls else ()
    with streams_echo(loop, *server_flags) as address:
        result = subprocess.run(
            streams_command(
                "probe", "--backend", "http2", "--connect", address, "--loop", loop,
                "--streams", "20", "--bytes", "1000000", "--header", "x-probe=yes",
                "--timeout", "60", *client_flags,
            ),
            capture_output=True,
            text=True,
            timeout=90,
            env={**os.environ},
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "20/20 streams verified" in result.stdout


def test_probe_refuses_an_unverified_certificate(certificates: Certificates) -> None:
    with streams_echo("asyncio", *tls_server_flags(certificates)) as address:
        result = subprocess.run(
            streams_command(
                "probe", "--backend", "http2", "--connect", address, "--tls", "--timeout", "30"
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "certificate verify failed" in result.stdout.lower(), result.stdout
