"""The few bytes ``streams`` adds inside SSH channels, sans-IO.

SSH carries the streams; what it lacks is a place for headers and for the acceptor's
answer. Between two ``streams`` peers there is one frame each way (see ``docs/ssh.md``):

* the opener's :class:`OpenFrame` (its headers): the data of a :data:`STREAM_CHANNEL`
  open request (:func:`decode_open`), or, on a channel of the first version, the first
  bytes before its data (:class:`FrameReader`);
* the acceptor's :class:`ReplyFrame` (accepted or refused, a reason, response headers):
  the data of the open confirmation (:func:`decode_reply`), or the first bytes the other
  way.

A frame is ``version (1 byte) | body length (4 bytes, big endian) | body``. The control
channel carries single messages (:data:`GOAWAY`, :data:`PING` and :data:`PONG` with an
8-byte payload). Nothing here reads a clock or a socket: bytes go in, frames come out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CONTROL_PATH",
    "GOAWAY",
    "MAX_FRAME",
    "PING",
    "PONG",
    "STREAM_CHANNEL",
    "STREAM_PATH",
    "VERSION",
    "CodecError",
    "ControlMessage",
    "ControlReader",
    "FrameReader",
    "HeaderLimitError",
    "OpenFrame",
    "ReplyFrame",
    "decode_open",
    "decode_reply",
    "encode_control",
    "encode_open",
    "encode_reply",
    "format_host_port",
    "parse_host_port",
]

#: the ``direct-streamlocal`` path (and reverse ``streamlocal-forward`` path) that carries
#: streams between two ``streams`` peers; no real socket ever has this name
STREAM_PATH = "streams-v1@stream"
#: the channel type of a stream between two ``streams`` peers: the open request carries
#: the opener's frame and the open confirmation the acceptor's (RFC 4254 5.1 lets both
#: carry data of the channel type), so an open costs one round trip, as a bare channel's
STREAM_CHANNEL = "streams-v2@stream"
#: the path of the one control channel the dialling side opens
CONTROL_PATH = "streams-v1@control"
#: the frame version this module writes and reads
VERSION = 1
#: the largest frame body accepted, in bytes (headers are small; this bounds memory)
MAX_FRAME = 64 * 1024

#: control message: no new streams, please (the counterpart of Go Away)
GOAWAY = b"G"
#: control message: a ping with an 8-byte payload
PING = b"P"
#: control message: the answer to a ping, echoing its payload
PONG = b"O"

_HEADER = struct.Struct("!BI")
_U32 = struct.Struct("!I")
_REPLY = struct.Struct("!BBI")


class CodecError(ValueError):
    """The peer sent bytes that are not a valid frame."""


class HeaderLimitError(CodecError):
    """An open frame is valid but over a configured limit: the stream can be refused
    without failing the connection.

    :ivar limit: the name of the setting that was exceeded
    """

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(f"{limit}: {message}")
        self.limit = limit


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenFrame:
    """The opener's first frame: the stream's headers."""

    #: the headers, as (name, value) pairs in order
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyFrame:
    """The acceptor's first frame: its decision."""

    #: ``True`` if the handler accepted the stream
    accepted: bool
    #: ``True`` if the acceptor refused without looking at the stream (safe to retry)
    retryable: bool
    #: the refusal's code (HTTP/2's numbers); 0 when accepted
    code: int
    #: a human-readable reason for a refusal
    reason: str
    #: the response headers
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlMessage:
    """One message of the control channel."""

    #: :data:`GOAWAY`, :data:`PING` or :data:`PONG`
    kind: bytes
    #: the ping's payload (0 for Go Away)
    payload: int = 0


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return _U32.pack(len(data)) + data


def _encode_headers(headers: Iterable[tuple[str, str]]) -> bytes:
    pairs = list(headers)
    parts = [_U32.pack(len(pairs))]
    for name, value in pairs:
        parts.append(_string(name))
        parts.append(_string(value))
    return b"".join(parts)


def _frame(body: bytes) -> bytes:
    if len(body) > MAX_FRAME:
        raise CodecError(f"a frame of {len(body)} bytes exceeds the limit of {MAX_FRAME}")
    return _HEADER.pack(VERSION, len(body)) + body


def encode_open(headers: Iterable[tuple[str, str]]) -> bytes:
    """The opener's frame carrying *headers*.

    :raises CodecError: if the headers do not fit in :data:`MAX_FRAME`
    """
    return _frame(_encode_headers(headers))


def encode_reply(
    *,
    accepted: bool,
    headers: Iterable[tuple[str, str]] = (),
    reason: str = "",
    code: int = 0,
    retryable: bool = False,
) -> bytes:
    """The acceptor's frame carrying its decision.

    :raises CodecError: if the headers and reason do not fit in :data:`MAX_FRAME`
    """
    if accepted and not headers and not reason and not code and not retryable:
        return _ACCEPTED_FRAME
    head = _REPLY.pack(1 if accepted else 0, 1 if retryable else 0, code & 0xFFFFFFFF)
    return _frame(head + _string(reason) + _encode_headers(headers))


#: the most common reply (accepted, no response headers), encoded and decoded once
_ACCEPTED_BODY = _REPLY.pack(1, 0, 0) + _string("") + _encode_headers(())
_ACCEPTED_FRAME = _frame(_ACCEPTED_BODY)
_ACCEPTED = ReplyFrame(accepted=True, retryable=False, code=0, reason="", headers=())


class _Cursor:
    """Reads typed values from a frame body, raising :class:`CodecError` past its end."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def take(self, size: int) -> bytes:
        end = self._offset + size
        if end > len(self._data):
            raise CodecError("the frame ends in the middle of a field")
        chunk = self._data[self._offset : end]
        self._offset = end
        return chunk

    def u32(self) -> int:
        value: int = _U32.unpack(self.take(4))[0]
        return value

    def string(self) -> str:
        raw = self.take(self.u32())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError("a header is not valid UTF-8") from exc

    def headers(self, max_headers: int | None = None) -> tuple[tuple[str, str], ...]:
        count = self.u32()
        if count > MAX_FRAME // 8:
            raise CodecError(f"{count} headers cannot fit in a frame")
        if max_headers is not None and count > max_headers:
            raise HeaderLimitError("max_headers", f"{count} headers, at most {max_headers}")
        pairs = []
        for _ in range(count):
            name = self.string()
            if not name:
                raise CodecError("a header has an empty name")
            pairs.append((name, self.string()))
        return tuple(pairs)

    def end(self) -> None:
        if self._offset != len(self._data):
            raise CodecError(f"{len(self._data) - self._offset} stray bytes after the frame")


class FrameReader:
    """Collects the first frame of a channel from the bytes that arrive.

    :param reply: ``True`` to read a :class:`ReplyFrame` (the opener's side), ``False`` to
        read an :class:`OpenFrame` (the acceptor's side)
    :param max_body: the largest open frame body accepted (at most :data:`MAX_FRAME`)
    :param max_headers: the most headers an open frame may carry
    """

    def __init__(
        self, *, reply: bool, max_body: int = MAX_FRAME, max_headers: int | None = None
    ) -> None:
        self._reply = reply
        self._buffer = bytearray()
        self._max_body = min(max_body, MAX_FRAME)
        self._max_headers = max_headers

    @property
    def buffered(self) -> int:
        """Bytes held while the frame is incomplete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> tuple[OpenFrame | ReplyFrame | None, bytes]:
        """Add *data*; return the frame once complete (else ``None``) and the bytes after it.

        :raises HeaderLimitError: if an open frame is over ``max_body`` (known from its
            length prefix, before its body is buffered) or ``max_headers``
        :raises CodecError: if the bytes are not a valid frame
        """
        self._buffer += data
        if len(self._buffer) < _HEADER.size:
            return None, b""
        version, length = _HEADER.unpack_from(self._buffer)
        if version != VERSION:
            raise CodecError(f"unknown frame version {version}")
        if length > MAX_FRAME and self._reply:
            raise CodecError(f"a frame of {length} bytes exceeds the limit of {MAX_FRAME}")
        if length > self._max_body and not self._reply:
            self._buffer = bytearray()
            raise HeaderLimitError(
                "max_header_block", f"a header frame of {length} bytes, at most {self._max_body}"
            )
        end = _HEADER.size + length
        if len(self._buffer) < end:
            return None, b""
        body = bytes(self._buffer[_HEADER.size : end])
        rest = bytes(self._buffer[end:])
        self._buffer = bytearray()
        return _parse(body, reply=self._reply, max_headers=self._max_headers), rest


def _parse(body: bytes, *, reply: bool, max_headers: int | None) -> OpenFrame | ReplyFrame:
    if reply and body == _ACCEPTED_BODY:
        return _ACCEPTED
    cursor = _Cursor(body)
    frame: OpenFrame | ReplyFrame
    if reply:
        status, flags, code = _REPLY.unpack(cursor.take(_REPLY.size))
        if status > 1 or flags > 1:
            raise CodecError(f"invalid reply status {status} or flags {flags}")
        reason = cursor.string()
        frame = ReplyFrame(
            accepted=status == 1,
            retryable=flags == 1,
            code=code,
            reason=reason,
            headers=cursor.headers(),
        )
    else:
        frame = OpenFrame(headers=cursor.headers(max_headers))
    cursor.end()
    return frame


def _whole_body(data: bytes, *, max_body: int, reply: bool) -> bytes:
    # what FrameReader.feed checks, for a frame that must be all of *data*
    if len(data) < _HEADER.size:
        raise CodecError(f"{len(data)} bytes end in the middle of a frame")
    version, length = _HEADER.unpack_from(data)
    if version != VERSION:
        raise CodecError(f"unknown frame version {version}")
    if length > MAX_FRAME and reply:
        raise CodecError(f"a frame of {length} bytes exceeds the limit of {MAX_FRAME}")
    if length > min(max_body, MAX_FRAME) and not reply:
        raise HeaderLimitError(
            "max_header_block", f"a header frame of {length} bytes, at most {max_body}"
        )
    end = _HEADER.size + length
    if len(data) < end:
        raise CodecError(f"{len(data)} bytes end in the middle of a frame")
    if len(data) > end:
        raise CodecError(f"{len(data) - end} stray bytes after the frame")
    return data[_HEADER.size :]


def decode_open(
    data: bytes, *, max_body: int = MAX_FRAME, max_headers: int | None = None
) -> OpenFrame:
    """The open frame that is the whole of *data* (a :data:`STREAM_CHANNEL` open request's
    data).

    :raises HeaderLimitError: if it is over ``max_body`` or ``max_headers``
    :raises CodecError: if *data* is not exactly one valid open frame
    """
    body = _whole_body(data, max_body=max_body, reply=False)
    frame = _parse(body, reply=False, max_headers=max_headers)
    assert isinstance(frame, OpenFrame)
    return frame


def decode_reply(data: bytes) -> ReplyFrame:
    """The reply frame that is the whole of *data* (a :data:`STREAM_CHANNEL` open
    confirmation's data).

    :raises CodecError: if *data* is not exactly one valid reply frame
    """
    frame = _parse(_whole_body(data, max_body=MAX_FRAME, reply=True), reply=True, max_headers=None)
    assert isinstance(frame, ReplyFrame)
    return frame


def encode_control(kind: bytes, payload: int = 0) -> bytes:
    """One control message."""
    if kind == GOAWAY:
        return GOAWAY
    if kind in (PING, PONG):
        return kind + payload.to_bytes(8, "big")
    raise CodecError(f"unknown control message {kind!r}")


class ControlReader:
    """Splits the control channel's bytes into :class:`ControlMessage` objects."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[ControlMessage]:
        """Add *data*; return the complete messages.

        :raises CodecError: on an unknown message
        """
        self._buffer += data
        messages = []
        while self._buffer:
            kind = bytes(self._buffer[:1])
            if kind == GOAWAY:
                del self._buffer[:1]
                messages.append(ControlMessage(kind=GOAWAY))
            elif kind in (PING, PONG):
                if len(self._buffer) < 9:
                    break
                payload = int.from_bytes(self._buffer[1:9], "big")
                del self._buffer[:9]
                messages.append(ControlMessage(kind=kind, payload=payload))
            else:
                raise CodecError(f"unknown control message {kind!r}")
        return messages


def parse_host_port(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as ``(host, port)``.

    :raises CodecError: if it is not one
    """
    host, separator, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    # isdigit() alone admits digits int() refuses ("²") and more than int() will parse
    if not separator or not host or not (port_text.isascii() and port_text.isdigit()):
        raise CodecError(f"{text!r} is not HOST:PORT")
    port = int(port_text) if len(port_text) <= 5 else 65536
    if port > 65535:
        raise CodecError(f"{text!r}: the port must be at most 65535")
    return host, port


def format_host_port(host: str, port: int) -> str:
    """The inverse of :func:`parse_host_port`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def header_pairs(headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """*headers* as a tuple of pairs (what the frames carry)."""
    return tuple((str(name), str(value)) for name, value in headers)
