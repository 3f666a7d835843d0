"""The framer's wire format, sans-IO: yamux v0 frames and the header blocks we add.

Bytes go in through :meth:`FrameDecoder.receive_data` and come out as events; frames to
write come from the ``encode_*`` functions. Nothing here does I/O or reads a clock. The
format is specified in ``docs/framer.md``.

Validation is strict: anything malformed raises :class:`FramerProtocolError`, which
carries the yamux Go Away code to send before the connection closes.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "ACK",
    "FIN",
    "HEADER_SIZE",
    "INITIAL_WINDOW",
    "RST",
    "SYN",
    "BlockKind",
    "DataReceived",
    "EmptyFrame",
    "Event",
    "Flag",
    "FrameDecoder",
    "FrameType",
    "FramerProtocolError",
    "GoAwayCode",
    "GoAwayReceived",
    "HeaderBlock",
    "HeaderBlockReader",
    "HeaderBlockRefused",
    "PingReceived",
    "WindowUpdated",
    "encode_data_header",
    "encode_frame_header",
    "encode_go_away",
    "encode_header_block",
    "encode_ping",
    "encode_window_update",
]

#: yamux's only protocol version
VERSION = 0
#: bytes in a frame header
HEADER_SIZE = 12
#: the window each stream starts with, in both directions, fixed by yamux
INITIAL_WINDOW = 256 * 1024
#: how far below the highest stream id a SYN may still arrive: yamux allocates ids before
#: it sends their SYNs, so concurrent opens reach the wire out of order
REORDER_WINDOW = 4096

_HEADER = struct.Struct(">BBHII")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_BLOCK_PREFIX = struct.Struct(">BI")


class FrameType(enum.IntEnum):
    """The four yamux frame types."""

    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(enum.IntFlag):
    """Frame flags."""

    NONE = 0
    SYN = 1
    ACK = 2
    FIN = 4
    RST = 8


_ALL_FLAGS = 0xF

#: the flags and frame types as plain ints, for the hot paths (enum operations are slow)
SYN, ACK, FIN, RST = 1, 2, 4, 8
DATA, WINDOW_UPDATE, PING, GO_AWAY = 0, 1, 2, 3


class GoAwayCode(enum.IntEnum):
    """The codes a Go Away frame carries in its length field."""

    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class FramerProtocolError(Exception):
    """The peer broke the wire format.

    :ivar go_away: the Go Away code to send before closing the connection
    :ivar flow_control: ``True`` when the violation is a flow-control one
    :ivar limit: the name of the limit the peer went over, when the violation is one (for
        the log line that names it)
    """

    def __init__(
        self,
        message: str,
        go_away: GoAwayCode = GoAwayCode.PROTOCOL_ERROR,
        *,
        flow_control: bool = False,
        limit: str | None = None,
    ) -> None:
        super().__init__(message)
        self.go_away = go_away
        self.flow_control = flow_control
        self.limit = limit


class HeaderBlockRefused(FramerProtocolError):
    """A header block over a limit (its size, or its number of headers).

    Only the block's stream is at fault: an acceptor refuses that stream, an opener resets
    it, and the connection carries on. A driver that does not handle it fails the
    connection, as for any :class:`FramerProtocolError`.
    """

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message, limit=limit)


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived:
    """Payload of a Data frame, or a piece of it when the frame arrived in pieces.

    A frame's ``SYN``/``ACK`` flags come with its first piece, ``FIN``/``RST`` with its last;
    a frame of length 0 gives one event with empty ``data`` and all its flags.
    """

    #: the stream the data belongs to
    stream_id: int
    #: the bytes (possibly empty)
    data: bytes
    #: the flags that apply at this point of the frame
    flags: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowUpdated:
    """A Window Update frame: more credit, and/or flags that open, accept, end or reset."""

    #: the stream
    stream_id: int
    #: the length field: a window increment (or, with ``RST`` in header mode, a reset code)
    increment: int
    #: the frame's flags
    flags: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PingReceived:
    """A Ping: a request (``ack=False``) to answer with the same *opaque*, or an answer."""

    #: the value to echo back
    opaque: int
    #: ``True`` for an answer to one of our pings
    ack: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class GoAwayReceived:
    """A Go Away: the peer opens and accepts no new streams."""

    #: why the peer is going away
    code: GoAwayCode


@dataclass(frozen=True, slots=True, kw_only=True)
class EmptyFrame:
    """A stream frame without payload, credit or flags: it does nothing but cost the
    receiver its parsing, so floods of it are counted (CVE-2019-9518)."""

    #: the stream it named
    stream_id: int


Event: TypeAlias = DataReceived | WindowUpdated | PingReceived | GoAwayReceived | EmptyFrame


# -- encoding ---------------------------------------------------------------------------


def encode_frame_header(frame_type: int, flags: int, stream_id: int, length: int) -> bytes:
    """The 12-byte header of one frame."""
    return _HEADER.pack(VERSION, frame_type, flags, stream_id, length)


def encode_data_header(stream_id: int, length: int, flags: int = 0) -> bytes:
    """The header of a Data frame whose *length* bytes of payload follow."""
    return _HEADER.pack(VERSION, DATA, flags, stream_id, length)


def encode_window_update(stream_id: int, increment: int, flags: int = 0) -> bytes:
    """A Window Update frame (also how raw mode opens, accepts, ends and resets)."""
    return _HEADER.pack(VERSION, WINDOW_UPDATE, flags, stream_id, increment)


def encode_ping(opaque: int, *, ack: bool = False) -> bytes:
    """A Ping request, or with *ack* the answer to one."""
    return _HEADER.pack(VERSION, PING, ACK if ack else SYN, 0, opaque)


def encode_go_away(code: GoAwayCode = GoAwayCode.NORMAL) -> bytes:
    """A Go Away frame."""
    return _HEADER.pack(VERSION, GO_AWAY, 0, 0, code)


# -- decoding ---------------------------------------------------------------------------


class FrameDecoder:
    """Incremental parser and validator of the frames one side receives.

    :param client: ``True`` on the side that dialled (it opens odd stream ids)
    :param max_data_length: the longest Data frame accepted (no stream window is larger)
    """

    __slots__ = (
        "_first",
        "_flags",
        "_gaps",
        "_head",
        "_highest_remote",
        "_next_local",
        "_remaining",
        "_stream_id",
        "client",
        "max_data_length",
    )

    def __init__(self, *, client: bool, max_data_length: int = 0x7FFFFFFF) -> None:
        self.client = client
        self.max_data_length = max_data_length
        self._next_local = 1 if client else 2
        # the id below the peer's first, so that the first SYN leaves no gap
        self._highest_remote = -1 if not client else 0
        self._gaps: set[int] = set()
        self._head = b""
        self._remaining = 0
        self._stream_id = 0
        self._flags = 0
        self._first = False

    def allocate_stream_id(self) -> int:
        """The id for the next stream this side opens.

        :raises FramerProtocolError: once the ids are exhausted (``INTERNAL_ERROR``)
        """
        stream_id = self._next_local
        if stream_id > 0xFFFFFFFF:
            raise FramerProtocolError("stream ids exhausted", GoAwayCode.INTERNAL_ERROR)
        self._next_local += 2
        return stream_id

    @property
    def highest_remote_stream_id(self) -> int:
        """The highest stream id the peer has opened."""
        return max(0, self._highest_remote)

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse *data* (any split of the byte stream) into events.

        :raises FramerProtocolError: if the bytes break the wire format
        """
        events: list[Event] = []
        size = len(data)
        position = 0
        while position < size:
            if self._remaining:
                take = min(self._remaining, size - position)
                chunk = data if take == size else data[position : position + take]
                position += take
                self._remaining -= take
                flags = self._flags
                if self._first:
                    self._first = False
                    if self._remaining:
                        flags &= SYN | ACK
                elif self._remaining:
                    flags = 0
                else:
                    flags &= FIN | RST
                events.append(DataReceived(stream_id=self._stream_id, data=chunk, flags=flags))
                continue
            if self._head:
                needed = HEADER_SIZE - len(self._head)
                self._head += data[position : position + needed]
                position += min(needed, size - position)
                if len(self._head) < HEADER_SIZE:
                    break
                header, self._head = self._head, b""
                fields = _HEADER.unpack(header)
            elif size - position >= HEADER_SIZE:
                fields = _HEADER.unpack_from(data, position)
                position += HEADER_SIZE
            else:
                self._head = data[position:]
                break
            event = self._frame(*fields)
            if event is not None:
                events.append(event)
        return events

    @property
    def idle(self) -> bool:
        """``True`` between frames (nothing partial is held)."""
        return not self._head and not self._remaining

    def _frame(
        self, version: int, frame_type: int, flags: int, stream_id: int, length: int
    ) -> Event | None:
        if version != VERSION:
            raise FramerProtocolError(f"unsupported protocol version {version}")
        if flags & ~_ALL_FLAGS:
            raise FramerProtocolError(f"unknown flags {flags:#x}")
        if frame_type <= WINDOW_UPDATE:
            self._check_stream(stream_id, flags)
            if frame_type == WINDOW_UPDATE:
                if not length and not flags:
                    return EmptyFrame(stream_id=stream_id)
                return WindowUpdated(stream_id=stream_id, increment=length, flags=flags)
            if length > self.max_data_length:
                raise FramerProtocolError(
                    f"a data frame of {length} bytes exceeds any window",
                    flow_control=True,
                )
            if length == 0:
                if not flags:
                    return EmptyFrame(stream_id=stream_id)
                return DataReceived(stream_id=stream_id, data=b"", flags=flags)
            self._remaining = length
            self._stream_id = stream_id
            self._flags = flags
            self._first = True
            return None
        if stream_id != 0:
            raise FramerProtocolError(f"a frame of type {frame_type} on stream {stream_id}")
        if frame_type == PING:
            if flags not in (SYN, ACK):
                raise FramerProtocolError(f"a ping with flags {flags:#x}")
            return PingReceived(opaque=length, ack=flags == ACK)
        if frame_type == GO_AWAY:
            if flags:
                raise FramerProtocolError(f"a go away with flags {flags:#x}")
            try:
                code = GoAwayCode(length)
            except ValueError:
                raise FramerProtocolError(f"unknown go away code {length}") from None
            return GoAwayReceived(code=code)
        raise FramerProtocolError(f"unknown frame type {frame_type}")

    def _check_stream(self, stream_id: int, flags: int) -> None:
        if stream_id == 0:
            raise FramerProtocolError("a stream frame on stream 0")
        if flags & SYN and flags & ACK:
            raise FramerProtocolError(f"SYN and ACK together on stream {stream_id}")
        local = (stream_id & 1) == (1 if self.client else 0)
        if flags & SYN:
            if local:
                raise FramerProtocolError(f"the peer opened stream {stream_id} of our parity")
            highest = self._highest_remote
            if stream_id > highest:
                gaps = self._gaps
                gaps.update(range(max(highest + 2, stream_id - REORDER_WINDOW), stream_id, 2))
                if len(gaps) > REORDER_WINDOW:
                    oldest = stream_id - REORDER_WINDOW
                    self._gaps = {gap for gap in gaps if gap >= oldest}
                self._highest_remote = stream_id
            elif stream_id in self._gaps:
                self._gaps.discard(stream_id)
            else:
                raise FramerProtocolError(f"stream {stream_id} was opened twice")
        elif local:
            if stream_id >= self._next_local:
                raise FramerProtocolError(f"a frame for stream {stream_id}, never opened")
        elif stream_id > self._highest_remote or stream_id in self._gaps:
            raise FramerProtocolError(f"a frame for stream {stream_id}, never opened")


# -- header blocks ------------------------------------------------------------------------


class BlockKind(enum.IntEnum):
    """What a header block says."""

    #: the opener's headers
    OPEN = 1
    #: the acceptor accepted; response headers
    ACCEPT = 2
    #: the acceptor refused; code, reason and response headers
    REJECT = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderBlock:
    """A decoded header block."""

    #: what it says
    kind: BlockKind
    #: ``(name, value)`` pairs in order
    headers: tuple[tuple[str, str], ...] = ()
    #: the refusal's error code (HTTP/2 numbering), for ``REJECT``
    code: int = 0
    #: the refusal's reason, for ``REJECT``
    reason: str = ""
    #: ``True`` when the refusal says retrying elsewhere is safe, for ``REJECT``
    retryable: bool = False


def _encode_text(text: str, prefix: struct.Struct) -> bytes:
    raw = text.encode()
    return prefix.pack(len(raw)) + raw


def encode_header_block(block: HeaderBlock, limit: int = 0x7FFFFFFF) -> bytes:
    """Encode *block* (kind, body length, body).

    :raises ValueError: if a name or value is too long, or the block exceeds *limit*
    """
    parts: list[bytes] = []
    if block.kind == BlockKind.REJECT:
        parts.append(_U32.pack(block.code))
        parts.append(b"\x01" if block.retryable else b"\x00")
        reason = block.reason.encode()[:0xFFFF]
        parts.append(_U16.pack(len(reason)) + reason)
    if len(block.headers) > 0xFFFF:
        raise ValueError("more than 65535 headers")
    parts.append(_U16.pack(len(block.headers)))
    for name, value in block.headers:
        raw_name = name.encode()
        if not raw_name or len(raw_name) > 0xFFFF:
            raise ValueError(f"a header name must have 1 to 65535 bytes: {name[:40]!r}")
        parts.append(_U16.pack(len(raw_name)) + raw_name)
        parts.append(_encode_text(value, _U32))
    body = b"".join(parts)
    if len(body) > limit:
        raise ValueError(f"the header block has {len(body)} bytes, over the limit of {limit}")
    return _BLOCK_PREFIX.pack(block.kind, len(body)) + body


class HeaderBlockReader:
    """Collects the header block at the start of one direction of a stream.

    The block's size is announced up front, so a block over *limit* is refused before any
    of it is held; pieces are gathered in one growing buffer, so a block dribbled a byte
    per frame costs linear time (the CONTINUATION floods of CVE-2024-27316 exploited
    quadratic reassembly and unbounded buffering).

    :param expected: the kinds allowed here (the acceptor expects ``OPEN``; the opener
        ``ACCEPT`` or ``REJECT``)
    :param limit: the largest body accepted, in bytes
    :param max_headers: the most headers a block may carry
    """

    __slots__ = ("_buffer", "expected", "limit", "max_headers")

    def __init__(
        self, expected: tuple[BlockKind, ...], limit: int, max_headers: int = 0xFFFF
    ) -> None:
        self.expected = expected
        self.limit = limit
        self.max_headers = max_headers
        self._buffer = bytearray()

    def feed(self, data: bytes) -> tuple[HeaderBlock | None, bytes]:
        """Add *data*; return the block once complete and the bytes that follow it.

        :raises HeaderBlockRefused: if the block is over ``limit`` bytes or carries more
            than ``max_headers`` headers
        :raises FramerProtocolError: if the block is malformed
        """
        held = self._buffer
        if held:
            held += data
            buffer: bytes | bytearray = held
        else:
            buffer = data
        if len(buffer) >= 1 and buffer[0] not in self.expected:
            raise FramerProtocolError(f"unexpected header block kind {buffer[0]}")
        if len(buffer) < _BLOCK_PREFIX.size:
            if not held:
                held += data
            return None, b""
        kind, length = _BLOCK_PREFIX.unpack_from(buffer)
        if length > self.limit:
            raise HeaderBlockRefused(
                f"a header block of {length} bytes exceeds the limit of {self.limit}",
                limit="max_header_block",
            )
        end = _BLOCK_PREFIX.size + length
        if len(buffer) < end:
            if not held:
                held += data
            return None, b""
        body = bytes(buffer[_BLOCK_PREFIX.size : end])
        rest = bytes(buffer[end:])
        self._buffer = bytearray()
        block = _decode_body(BlockKind(kind), body, self.max_headers)
        return block, rest

    @property
    def pending(self) -> int:
        """Bytes of an incomplete block held so far."""
        return len(self._buffer)


def _decode_body(kind: BlockKind, body: bytes, max_headers: int = 0xFFFF) -> HeaderBlock:
    position = 0

    def take(count: int) -> bytes:
        nonlocal position
        if position + count > len(body):
            raise FramerProtocolError("a header block ends early")
        chunk = body[position : position + count]
        position += count
        return chunk

    def text(count: int) -> str:
        try:
            return take(count).decode()
        except UnicodeDecodeError:
            raise FramerProtocolError("a header block holds invalid UTF-8") from None

    code = 0
    reason = ""
    retryable = False
    if kind == BlockKind.REJECT:
        (code,) = _U32.unpack(take(4))
        flag = take(1)[0]
        if flag > 1:
            raise FramerProtocolError(f"a rejection with retry flag {flag}")
        retryable = flag == 1
        reason = text(_U16.unpack(take(2))[0])
    (count,) = _U16.unpack(take(2))
    if count > max_headers:
        raise HeaderBlockRefused(
            f"a header block of {count} headers exceeds the limit of {max_headers}",
            limit="max_headers",
        )
    headers: list[tuple[str, str]] = []
    for _ in range(count):
        name = text(_U16.unpack(take(2))[0])
        if not name:
            raise FramerProtocolError("an empty header name")
        value = text(_U32.unpack(take(4))[0])
        headers.append((name, value))
    if position != len(body):
        raise FramerProtocolError(f"{len(body) - position} stray bytes after the headers")
    return HeaderBlock(
        kind=kind, headers=tuple(headers), code=code, reason=reason, retryable=retryable
    )
