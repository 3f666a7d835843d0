"""The HTTP/1.1 upgrade that starts SPDY/3.1 on an HTTP connection, as Kubernetes does it
(``Connection: Upgrade``, ``Upgrade: SPDY/3.1``, answered by ``101 Switching Protocols``).

Parsing is in small pure functions; the two coroutines do the exchange on a byte stream and
return a stream that first replays whatever arrived after the HTTP head.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from ..._core.errors import ConnectionLost, ProtocolError
from ..._core.headers import Headers, HeadersLike

__all__ = [
    "PROTOCOL",
    "HeadTooLarge",
    "PrefixedStream",
    "UpgradeRefused",
    "parse_head",
    "upgrade_client",
    "upgrade_server",
]

#: the token of the ``Upgrade`` header
PROTOCOL = "SPDY/3.1"
#: the largest HTTP head read before giving up
MAX_HEAD = 64 * 1024


class UpgradeRefused(ProtocolError):
    """The HTTP peer did not switch to SPDY/3.1.

    :ivar status: the HTTP status it answered with (0 if it did not answer in HTTP)
    """

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class HeadTooLarge(UpgradeRefused):
    """The HTTP head of the upgrade is longer than :data:`MAX_HEAD` bytes.

    :ivar limit: the name of the limit, for the log line
    """

    limit = "max_upgrade_head"

    def __init__(self) -> None:
        super().__init__(f"the HTTP head is longer than {MAX_HEAD} bytes", 431)


class PrefixedStream(anyio.abc.ByteStream):
    """A byte stream that first returns *prefix*, then what *inner* receives."""

    def __init__(self, inner: anyio.abc.ByteStream, prefix: bytes) -> None:
        self._inner = inner
        self._prefix = prefix

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            await anyio.lowlevel.checkpoint()
            return data
        return await self._inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._inner.send(item)

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes


def parse_head(head: bytes) -> tuple[str, Headers]:
    """Split an HTTP/1.1 head (without its final empty line) into its first line and
    headers.

    :raises ValueError: if it is not an HTTP head
    """
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise ValueError("not an HTTP head") from exc
    lines = text.split("\r\n")
    headers = Headers()
    for line in lines[1:]:
        name, separator, value = line.partition(":")
        if not separator or not name or name != name.strip():
            raise ValueError(f"malformed HTTP header line {line!r}")
        headers.add(name, value.strip())
    return lines[0], headers


def _has_token(headers: Headers, name: str, token: str) -> bool:
    return any(
        part.strip().lower() == token.lower()
        for value in headers.getall(name, [])
        for part in value.split(",")
    )


def is_upgrade_request(headers: Headers) -> bool:
    """``True`` if *headers* ask to upgrade to SPDY/3.1."""
    return _has_token(headers, "connection", "upgrade") and _has_token(headers, "upgrade", PROTOCOL)


async def _read_head(stream: anyio.abc.ByteStream) -> tuple[bytes, bytes]:
    buffer = bytearray()
    searched = 0
    while True:
        # only the new bytes (and the three before them) are searched: a head sent a byte
        # at a time must not cost a search of the whole buffer per byte
        end = buffer.find(b"\r\n\r\n", searched)
        if end >= 0:
            return bytes(buffer[:end]), bytes(buffer[end + 4 :])
        if len(buffer) > MAX_HEAD:
            raise HeadTooLarge()
        searched = max(0, len(buffer) - 3)
        try:
            buffer += await stream.receive(65536)
        except anyio.EndOfStream:
            raise UpgradeRefused("the peer closed the connection during the upgrade") from None


async def upgrade_client(
    stream: anyio.abc.ByteStream,
    *,
    host: str,
    path: str = "/",
    method: str = "POST",
    headers: HeadersLike | None = None,
) -> anyio.abc.ByteStream:
    """Ask the HTTP server on *stream* to switch to SPDY/3.1.

    :raises UpgradeRefused: if it answers anything but ``101`` with ``Upgrade: SPDY/3.1``
    :raises ~streams.ConnectionLost: if the connection fails
    """
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        "Connection: Upgrade",
        f"Upgrade: {PROTOCOL}",
    ]
    lines += [f"{name}: {value}" for name, value in Headers.coerce(headers).items()]
    try:
        await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head, rest = await _read_head(stream)
    except UpgradeRefused:
        # a ProtocolError, so a BrokenResourceError too: not a failure of the connection
        raise
    except (OSError, anyio.BrokenResourceError) as exc:
        raise ConnectionLost(f"the upgrade failed: {exc!r}") from exc
    try:
        status_line, response = parse_head(head)
        version, _, rest_of_line = status_line.partition(" ")
        status = int(rest_of_line.split(" ", 1)[0])
    except ValueError as exc:
        raise UpgradeRefused(f"not an HTTP answer to the upgrade: {exc}") from None
    if not version.startswith("HTTP/1.") or status != 101 or not is_upgrade_request(response):
        raise UpgradeRefused(f"the server did not switch to {PROTOCOL}: {status_line}", status)
    return PrefixedStream(stream, rest)


async def upgrade_server(stream: anyio.abc.ByteStream) -> tuple[anyio.abc.ByteStream, Headers]:
    """Answer an HTTP/1.1 request on *stream* that asks for SPDY/3.1 with ``101``.

    Anything else gets ``400 Bad Request`` and the connection is refused.

    :return: the stream to run SPDY on, and the request's headers
    :raises HeadTooLarge: if the request's head is too long (answered with ``431``)
    :raises UpgradeRefused: if the request does not ask for SPDY/3.1
    """
    try:
        try:
            head, rest = await _read_head(stream)
        except HeadTooLarge:
            await stream.send(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"Connection: close\r\nContent-Length: 0\r\n\r\n"
            )
            raise
        try:
            request_line, headers = parse_head(head)
        except ValueError as exc:
            raise UpgradeRefused(f"malformed HTTP request: {exc}") from None
        if len(request_line.split(" ")) != 3 or not is_upgrade_request(headers):
            await stream.send(
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            )
            raise UpgradeRefused(f"the request does not ask for {PROTOCOL}: {request_line}")
        await stream.send(
            f"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
            f"Upgrade: {PROTOCOL}\r\n\r\n".encode("latin-1")
        )
    except UpgradeRefused:
        # a ProtocolError, so a BrokenResourceError too: not a failure of the connection
        raise
    except (OSError, anyio.BrokenResourceError) as exc:
        raise ConnectionLost(f"the upgrade failed: {exc!r}") from exc
    return PrefixedStream(stream, rest), headers
