"""The start of a cleartext connection: HTTP/2 with prior knowledge, or an HTTP/1.1
request that asks to switch with ``Upgrade: h2c`` (RFC 7540, section 3.2). Sans-IO: bytes
in, a decision out.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

from h2.exceptions import InvalidSettingsValueError
from h2.settings import Settings

__all__ = [
    "MAX_HEAD",
    "PREFACE",
    "SWITCHING_PROTOCOLS",
    "UpgradeError",
    "UpgradeRequest",
    "classify",
    "parse_upgrade",
    "refusal",
]

#: what every HTTP/2 client sends first
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: the largest HTTP/1.1 request head accepted before switching
MAX_HEAD = 64 * 1024
#: the answer that switches the connection to HTTP/2
SWITCHING_PROTOCOLS = (
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
)

_SETTING = struct.Struct(">HI")

# these describe the HTTP/1.1 connection and do not become HTTP/2 request headers
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "upgrade",
        "http2-settings",
        "host",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "content-length",
        "expect",
    }
)


class UpgradeError(ValueError):
    """The client's first bytes are neither HTTP/2 nor a usable ``Upgrade: h2c`` request.

    :ivar status: the HTTP/1.1 status to answer with
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class UpgradeRequest:
    """An HTTP/1.1 request that asked to continue as HTTP/2: it becomes stream 1."""

    #: the request as HTTP/2 request headers, pseudo-headers first
    headers: list[tuple[str, str]]
    #: the decoded ``HTTP2-Settings`` payload (a SETTINGS frame's body)
    settings: bytes
    #: the request body's length (``Content-Length``), to be read before switching
    content_length: int
    #: the request body, once read
    body: bytes = b""


def classify(buffer: bytes) -> str:
    """``"h2"`` when *buffer* starts with the HTTP/2 preface, ``"http1"`` when it holds a
    complete HTTP/1.1 request head, ``"more"`` when more bytes are needed.

    :raises UpgradeError: if the head grows beyond :data:`MAX_HEAD`
    """
    if buffer.startswith(PREFACE):
        return "h2"
    if PREFACE.startswith(buffer):
        return "more"
    if b"\r\n\r\n" in buffer:
        return "http1"
    if len(buffer) > MAX_HEAD:
        raise UpgradeError(431, "the request head is too large")
    return "more"


def parse_upgrade(head: bytes) -> UpgradeRequest:
    """Parse an HTTP/1.1 request head (up to and without the blank line) that must ask
    for ``Upgrade: h2c``.

    :raises UpgradeError: with the status to answer when it cannot be switched
    """
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise UpgradeError(400, "the request head is not text") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise UpgradeError(400, "not an HTTP/1.1 request line")
    method, target, _ = parts
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, separator, value = line.partition(":")
        if not separator or not name or name != name.strip():
            raise UpgradeError(400, f"malformed header line {line[:60]!r}")
        fields.append((name.lower(), value.strip()))
    values = _values(fields)
    if "h2c" not in _tokens(values.get("upgrade", [])):
        raise UpgradeError(
            505, "this server speaks HTTP/2: h2c with prior knowledge, or Upgrade: h2c"
        )
    connection = _tokens(values.get("connection", []))
    if "upgrade" not in connection or "http2-settings" not in connection:
        raise UpgradeError(400, "Connection must list Upgrade and HTTP2-Settings")
    settings_values = values.get("http2-settings", [])
    if len(settings_values) != 1:
        raise UpgradeError(400, "exactly one HTTP2-Settings header is required")
    encoded = settings_values[0]
    try:
        padded = encoded + "=" * (-len(encoded) % 4)
        settings = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise UpgradeError(400, "HTTP2-Settings is not base64url") from None
    if len(settings) % 6:
        raise UpgradeError(400, "HTTP2-Settings is not a SETTINGS payload")
    _check_settings(settings)
    if "transfer-encoding" in values:
        raise UpgradeError(501, "a chunked request cannot be upgraded here")
    lengths = values.get("content-length", ["0"])
    # isdigit() alone admits digits int() refuses ("\xb2" is one in latin-1)
    if len(set(lengths)) != 1 or not (lengths[0].isascii() and lengths[0].isdigit()):
        raise UpgradeError(400, "bad Content-Length")
    if len(lengths[0]) > 18:
        raise UpgradeError(413, "the body is too large to upgrade with")
    hosts = values.get("host", [])
    headers = [
        (":method", method),
        (":scheme", "http"),
        (":authority", hosts[0] if hosts else ""),
        (":path", target),
    ]
    for name, value in fields:
        if name in _HOP_BY_HOP or (name == "te" and value.lower() != "trailers"):
            continue
        headers.append((name, value))
    return UpgradeRequest(headers=headers, settings=settings, content_length=int(lengths[0]))


def refusal(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response that refuses the request and closes the connection."""
    reasons = {400: "Bad Request", 413: "Content Too Large", 431: "Request Header Fields Too Large",
               501: "Not Implemented", 505: "HTTP Version Not Supported"}  # fmt: skip
    body = (message + "\n").encode()
    return (
        f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def _check_settings(payload: bytes) -> None:
    # h2 applies these when the connection starts, and raises for a value the protocol
    # forbids (found by fuzzing): refuse them here, while an HTTP/1.1 answer is possible
    check = Settings(client=True)
    try:
        for setting, value in _SETTING.iter_unpack(payload):
            check[setting] = value
    except InvalidSettingsValueError as exc:
        raise UpgradeError(400, f"HTTP2-Settings: {exc}") from None


def _values(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in fields:
        out.setdefault(name, []).append(value)
    return out


def _tokens(values: list[str]) -> set[str]:
    return {token.strip().lower() for value in values for token in value.split(",")}
