"""Secure defaults: what a user gets without asking for it.

TLS verifies certificates and host names unless turned off explicitly; servers forward
only to allowlisted targets; the admin endpoint binds to loopback; no credential carried
in a header ever reaches logs, metrics or debug output. (SSH host key verification is
checked with the SSH backend, in ``tests/ssh``.)
"""

from __future__ import annotations

import logging
import ssl
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from streams import ConfigError, ConnectionLost, Headers, StreamRejected
from streams._core.backend import BackendOptions
from streams._core.transport import TLSConfig
from streams.backends.framer import BACKEND
from streams.cli.echo import echo_handler, echo_stream
from streams.config import parse_topology
from streams.config.runtime import Runtime
from streams.testing import read_all
from streams.wrappers.metrics import StreamMetrics
from tests.certificates import Certificates, make_certificates

SECRET = "s3cr3t-never-shown-0451"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@asynccontextmanager
async def tls_echo_server(certificates: Certificates) -> AsyncIterator[str]:
    options = BackendOptions(tls=TLSConfig(cert=str(certificates.cert), key=str(certificates.key)))
    async with BACKEND.serve("127.0.0.1:0", options, echo_handler) as server:
        async with anyio.create_task_group() as group:
            group.start_soon(server.listener.serve, echo_stream)
            yield server.address
            group.cancel_scope.cancel()


async def echo_once(address: str, tls: TLSConfig) -> bytes:
    options = BackendOptions(tls=tls, connect_timeout=10)
    async with BACKEND.connect(address, options) as provider:
        async with await provider.open_stream({"x-test": "tls"}) as stream:
            await stream.send(b"verified")
            await stream.send_eof()
            return await read_all(stream)


def test_tls_client_contexts_verify_unless_told_not_to() -> None:
    verifying = TLSConfig().client_context()
    assert verifying.verify_mode == ssl.CERT_REQUIRED
    assert verifying.check_hostname
    insecure = TLSConfig(insecure=True).client_context()
    assert insecure.verify_mode == ssl.CERT_NONE


@pytest.mark.anyio
async def test_tls_refuses_an_untrusted_certificate(certificates: Certificates) -> None:
    with anyio.fail_after(20):
        async with tls_echo_server(certificates) as address:
            # the system trust store does not know the throwaway CA
            with pytest.raises(ConnectionLost, match=r"(?i)certificate"):
                await echo_once(address, TLSConfig())


@pytest.mark.anyio
async def test_tls_refuses_a_certificate_for_another_name(certificates: Certificates) -> None:
    with anyio.fail_after(20):
        async with tls_echo_server(certificates) as address:
            wrong_name = TLSConfig(ca=str(certificates.ca), server_name="elsewhere.example")
            with pytest.raises(ConnectionLost, match=r"(?i)certificate|hostname|match"):
                await echo_once(address, wrong_name)


@pytest.mark.anyio
async def test_tls_connects_when_trusted_or_explicitly_insecure(
    certificates: Certificates,
) -> None:
    with anyio.fail_after(20):
        async with tls_echo_server(certificates) as address:
            assert await echo_once(address, TLSConfig(ca=str(certificates.ca))) == b"verified"
            assert await echo_once(address, TLSConfig(insecure=True)) == b"verified"


def test_the_admin_endpoint_binds_to_loopback_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="loopback") as caught:
        parse_topology("version: 1\nadmin: {listen: 0.0.0.0:9901}\n")
    assert caught.value.path == "admin.listen"
    topology = parse_topology("version: 1\nadmin: {listen: 0.0.0.0:9901, allow_remote: true}\n")
    assert topology.admin is not None and topology.admin.allow_remote


@pytest.mark.parametrize("name", ["authorization", "Cookie", "x-api-key", "x-auth-token"])
def test_a_credential_header_cannot_become_a_metric_label(name: str) -> None:
    with pytest.raises(ConfigError, match="credentials"):
        StreamMetrics(None, header_label=name)
    with pytest.raises(ConfigError, match="credentials") as caught:
        parse_topology(f"version: 1\nmetrics: {{header_label: {name}}}\n")
    assert caught.value.path == "metrics.header_label"


def test_header_reprs_mask_credentials() -> None:
    headers = Headers({"authorization": f"Bearer {SECRET}", "x-tenant": "blue"})
    assert SECRET not in repr(headers)
    assert "blue" in repr(headers)
    assert headers["authorization"] == f"Bearer {SECRET}"  # the value itself is intact


def _topology(suffix: str, target_port: int) -> str:
    return f"""\
version: 1
admin:
  listen: 127.0.0.1:0
servers:
  - name: gateway
    backend: memory
    listen: memory:gateway-{suffix}
    action: forward
    forward:
      targets: {{web: 127.0.0.1:{target_port}}}
upstreams:
  - name: api
    backend: memory
    groups:
      - endpoints: [memory:gateway-{suffix}]
tunnels:
  - name: allowed
    listen: 127.0.0.1:0
    upstream: api
    headers: {{x-target: web, authorization: "Bearer {SECRET}", cookie: "id={SECRET}"}}
  - name: smuggled
    listen: 127.0.0.1:0
    upstream: api
    headers: {{x-target: "127.0.0.1:{target_port}"}}
"""


@asynccontextmanager
async def tcp_echo() -> AsyncIterator[int]:
    async def echo(connection: anyio.abc.SocketStream) -> None:
        async with connection:
            async for data in connection:
                await connection.send(data)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, echo)
        yield int(listener.extra(anyio.abc.SocketAttribute.local_port))
        group.cancel_scope.cancel()


async def _fetch(url: str) -> str:
    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    return await anyio.to_thread.run_sync(fetch)


async def _exchange(address: str, payload: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    received = b""
    async with await anyio.connect_tcp(host, int(port)) as connection:
        # a refused tunnel aborts the connection, possibly before the payload is written
        with anyio.move_on_after(3):
            try:
                await connection.send(payload)
                while len(received) < len(payload):
                    received += await connection.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                pass
    return received


@pytest.mark.anyio
async def test_forwarding_only_to_allowlisted_targets_and_no_secret_shown(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(30):
        async with tcp_echo() as port:
            topology = parse_topology(_topology(tmp_path.name, port))
            async with Runtime(topology) as runtime:
                tunnels = runtime.tunnel_addresses
                # a stream naming an allowlisted target reaches it
                assert await _exchange(tunnels["allowed"], b"hello") == b"hello"
                # one naming an address directly is refused: the header is a name, not a
                # place to go
                assert await _exchange(tunnels["smuggled"], b"hello") == b""
                with pytest.raises(StreamRejected):
                    await runtime.upstream("api").open_stream({"x-target": f"127.0.0.1:{port}"})

                # hold a stream open with the credentials, and look at everything shown
                host, tunnel_port = tunnels["allowed"].rsplit(":", 1)
                async with await anyio.connect_tcp(host, int(tunnel_port)) as held:
                    await held.send(b"ping")
                    assert await held.receive() == b"ping"
                    admin = f"http://{runtime.admin_address}"
                    pages = {
                        path: await _fetch(admin + path)
                        for path in (
                            "/metrics",
                            "/debug/streams",
                            "/debug/pool",
                            "/explain?upstream=api",
                        )
                    }
                    assert "x-target" in pages["/debug/streams"]
                    assert "<redacted>" in pages["/debug/streams"]
    for path, page in pages.items():
        assert SECRET not in page, f"the secret appears in {path}"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert logged, "debug logging produced no records to check"
    assert SECRET not in logged
    for record in caplog.records:
        assert SECRET not in repr(record.__dict__), f"the secret is in a field of {record}"
