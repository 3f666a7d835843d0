"""Shared helpers of the SPDY tests: connected provider pairs over TCP and TLS, and
throwaway certificates."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from streams._core.transport import set_no_delay
from streams.backends.spdy import SpdyProvider, SpdySettings
from streams.testing import ProviderPair


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))


def make_certificates(directory: Path) -> Certificates:
    """Write a CA and a server certificate signed by it into *directory*."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streams test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = Certificates(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


async def socket_pair(
    certificates: Certificates | None = None,
) -> tuple[anyio.abc.ByteStream, anyio.abc.ByteStream]:
    """Two ends of a loopback TCP connection, wrapped in TLS when *certificates* are given."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        client_raw = await anyio.connect_tcp("127.0.0.1", port)
        server_raw = await listener.listeners[0].accept()
    set_no_delay(client_raw)
    set_no_delay(server_raw)
    if certificates is None:
        return client_raw, server_raw
    results: dict[str, anyio.abc.ByteStream] = {}

    async def wrap_server() -> None:
        results["server"] = await TLSStream.wrap(
            server_raw,
            server_side=True,
            ssl_context=certificates.server_context(),
            standard_compatible=False,
        )

    async with anyio.create_task_group() as group:
        group.start_soon(wrap_server)
        results["client"] = await TLSStream.wrap(
            client_raw,
            hostname="localhost",
            ssl_context=certificates.client_context(),
            standard_compatible=False,
        )
    return results["client"], results["server"]


@asynccontextmanager
async def spdy_pair(
    certificates: Certificates | None = None,
    settings: SpdySettings | None = None,
    server_settings: SpdySettings | None = None,
) -> AsyncIterator[ProviderPair]:
    """Two SPDY providers on a loopback connection."""
    client_stream, server_stream = await socket_pair(certificates)
    client = SpdyProvider(client_stream, client=True, settings=settings)
    server = SpdyProvider(server_stream, client=False, settings=server_settings or settings)

    async def break_connection() -> None:
        await anyio.aclose_forcefully(client_stream)

    async with client, server:
        yield ProviderPair(client=client, server=server, break_connection=break_connection)
