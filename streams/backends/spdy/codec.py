"""A sans-IO SPDY/3.1 codec: bytes in, events out; frames out as bytes.

It knows the wire format of draft 3.1 (control frames ``SYN_STREAM``, ``SYN_REPLY``,
``RST_STREAM``, ``SETTINGS``, ``PING``, ``GOAWAY``, ``HEADERS``, ``WINDOW_UPDATE`` and data
frames), the zlib-compressed name/value header blocks with one compression context per
direction for the whole session, and the rules on stream ids and stream states. It does no
I/O and keeps no clock: flow-control windows are the driver's (``streams._core.flow``).

Two kinds of failure, as the specification says:

* a *session error* (:class:`SessionError`) is raised from :meth:`SpdyCodec.receive_data`;
  the driver answers with ``GOAWAY`` and closes. Any malformed frame is one, and so is a
  header block that cannot be decompressed (the compression context is then lost).
* a *stream error* comes back as a :class:`StreamFailed` event; the driver answers with
  ``RST_STREAM`` and the session goes on.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .codec_frames import (
    _ALLOWED_FLAGS,
    _CONTROL,
    _HEADER,
    _PAIR,
    _U32,
    DEFAULT_WINDOW,
    FLAG_CLEAR_SETTINGS,
    FLAG_FIN,
    FLAG_UNIDIRECTIONAL,
    GOAWAY,
    HEADERS,
    MAX_LENGTH,
    MAX_STREAM_ID,
    PING,
    RST_STREAM,
    SETTINGS,
    SYN_REPLY,
    SYN_STREAM,
    VERSION,
    WINDOW_UPDATE,
    DataReceived,
    Event,
    GoAwayReceived,
    GoAwayStatus,
    HeadersReceived,
    Pairs,
    PingReceived,
    ReplyReceived,
    ResetReceived,
    RstStatus,
    SessionError,
    SettingId,
    SettingsReceived,
    StreamFailed,
    StreamOpened,
    WindowUpdateReceived,
)
from .codec_headers import (
    HeaderCompressor,
    HeaderDecompressor,
    TooManyHeaders,
    decode_header_block,
    encode_header_block,
)

__all__ = [
    "DEFAULT_WINDOW",
    "FLAG_CLEAR_SETTINGS",
    "FLAG_FIN",
    "FLAG_UNIDIRECTIONAL",
    "GOAWAY",
    "HEADERS",
    "MAX_LENGTH",
    "MAX_STREAM_ID",
    "PING",
    "RST_STREAM",
    "SETTINGS",
    "SYN_REPLY",
    "SYN_STREAM",
    "VERSION",
    "WINDOW_UPDATE",
    "DataReceived",
    "Event",
    "GoAwayReceived",
    "GoAwayStatus",
    "HeaderCompressor",
    "HeaderDecompressor",
    "HeadersReceived",
    "Pairs",
    "PingReceived",
    "ReplyReceived",
    "ResetReceived",
    "RstStatus",
    "SessionError",
    "SettingId",
    "SettingsReceived",
    "SpdyCodec",
    "StreamFailed",
    "StreamOpened",
    "WindowUpdateReceived",
    "decode_header_block",
    "encode_header_block",
]


# -- the codec ------------------------------------------------------------------------------


@dataclass(slots=True)
class _DataFrame:
    """The data frame whose payload is arriving."""

    stream_id: int
    fin: bool
    remaining: int
    #: ``False`` for a stream closed here: the payload is discarded
    open: bool = True
    #: the stream error to answer with before the first piece (the payload is discarded)
    failure: tuple[RstStatus, str] | None = None


@dataclass(slots=True)
class _Stream:
    local: bool
    replied: bool = False
    local_fin: bool = False
    remote_fin: bool = False


class SpdyCodec:
    """One SPDY/3.1 session's framing and stream bookkeeping, without I/O.

    Feed received bytes to :meth:`receive_data` and handle the events it returns; call the
    frame methods (:meth:`syn_stream`, :meth:`data_header`, ...) to get bytes to write, in
    the order they must be written (header compression is order-sensitive).

    :param client: ``True`` on the side that dialled: it opens odd streams and sends odd pings
    :param max_header_block: the most bytes a decompressed header block may have
    :param max_control_frame: the largest control frame accepted, in bytes
    :param max_headers: the most header values one block may carry; a block with more
        fails its stream (``FRAME_TOO_LARGE``), not the session
    """

    def __init__(
        self,
        *,
        client: bool,
        max_header_block: int = 256 * 1024,
        max_control_frame: int = 1024 * 1024,
        compression_level: int = zlib.Z_DEFAULT_COMPRESSION,
        max_headers: int | None = None,
    ) -> None:
        self.client = client
        self._next_local_id = 1 if client else 2
        self._next_ping_id = 1 if client else 2
        self._last_remote_id = 0
        self._streams: dict[int, _Stream] = {}
        self._buffer = bytearray()
        self._compressor = HeaderCompressor(compression_level)
        self._decompressor = HeaderDecompressor(max_header_block)
        self._max_control_frame = max_control_frame
        self._max_headers = max_headers
        self._data_frame: _DataFrame | None = None
        self._error: SessionError | None = None

    # -- state for the driver ------------------------------------------------------------

    @property
    def last_remote_id(self) -> int:
        """The highest stream id the peer opened (for ``GOAWAY``)."""
        return self._last_remote_id

    @property
    def open_streams(self) -> int:
        """Streams that are not closed in both directions yet."""
        return len(self._streams)

    def next_stream_id(self) -> int:
        """Allocate the id of the next stream this side opens.

        :raises RuntimeError: once the ids are exhausted (a new session is needed)
        """
        stream_id = self._next_local_id
        if stream_id > MAX_STREAM_ID:
            raise RuntimeError("stream ids are exhausted on this session")
        self._next_local_id += 2
        return stream_id

    def next_ping_id(self) -> int:
        """The id of the next ping this side sends (odd on the client, even on the server)."""
        ping_id = self._next_ping_id
        self._next_ping_id += 2
        if self._next_ping_id > 0xFFFFFFFF:
            self._next_ping_id = 1 if self.client else 2
        return ping_id

    def is_local_ping(self, ping_id: int) -> bool:
        """``True`` if *ping_id* has this side's parity (so it answers one of ours)."""
        return (ping_id & 1) == (1 if self.client else 0)

    # -- receiving -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse *data* (any slice of the byte stream) into events.

        A data frame's payload comes out as it arrives, in pieces (one
        :class:`DataReceived` per piece, ``fin`` on the last), so the codec never holds
        more than one read of it: the driver checks each piece against the windows at once.

        :raises SessionError: if the peer broke the protocol; the codec is then unusable
        """
        if self._error is not None:
            raise self._error
        self._buffer += data
        events: list[Event] = []
        buffer = self._buffer
        position = 0
        try:
            while True:
                frame = self._data_frame
                if frame is not None:
                    size = min(frame.remaining, len(buffer) - position)
                    if not size and frame.remaining:
                        break
                    piece = bytes(buffer[position : position + size])
                    position += size
                    events.append(self._data_piece(frame, piece))
                    continue
                if len(buffer) - position < 8:
                    break
                first, second = _HEADER.unpack_from(buffer, position)
                length = second & MAX_LENGTH
                flags = second >> 24
                if not first & 0x80000000:
                    position += 8
                    self._data_frame = self._data_start(first, flags, length)
                    continue
                if length > self._max_control_frame:
                    raise SessionError(
                        f"control frame of {length} bytes exceeds {self._max_control_frame}",
                        limit="max_control_frame",
                    )
                end = position + 8 + length
                if len(buffer) < end:
                    break
                payload = bytes(buffer[position + 8 : end])
                position = end
                event = self._control((first >> 16) & 0x7FFF, first & 0xFFFF, flags, payload)
                if event is not None:
                    events.append(event)
        except SessionError as exc:
            self._error = exc
            raise
        finally:
            del buffer[:position]
        return events

    def _data_start(self, stream_id: int, flags: int, length: int) -> _DataFrame:
        """Decide, from its header alone, what becomes of a data frame's payload."""
        if stream_id == 0:
            raise SessionError("data frame on stream 0")
        if flags & ~FLAG_FIN:
            raise SessionError(f"data frame with unknown flags {flags:#x}")
        fin = bool(flags & FLAG_FIN)
        frame = _DataFrame(stream_id=stream_id, fin=fin, remaining=length)
        stream = self._streams.get(stream_id)
        if stream is None:
            if self._was_opened(stream_id):
                frame.open = False
            else:
                frame.failure = (
                    RstStatus.INVALID_STREAM,
                    "data for a stream that was never opened",
                )
        elif stream.remote_fin:
            self._forget(stream_id)
            frame.failure = (RstStatus.STREAM_ALREADY_CLOSED, "data after the peer's FIN")
        elif stream.local and not stream.replied:
            self._forget(stream_id)
            frame.failure = (RstStatus.PROTOCOL_ERROR, "data before SYN_REPLY")
        elif fin:
            self._remote_finished(stream_id, stream)
        return frame

    def _data_piece(self, frame: _DataFrame, piece: bytes) -> Event:
        frame.remaining -= len(piece)
        last = not frame.remaining
        if last:
            self._data_frame = None
        if frame.failure is not None:
            # the stream error goes first; the rest of the payload is discarded
            status, reason = frame.failure
            frame.failure = None
            frame.open = False
            frame.fin = False
            return StreamFailed(
                stream_id=frame.stream_id, status=status, reason=reason, discarded=len(piece)
            )
        return DataReceived(
            stream_id=frame.stream_id, data=piece, fin=frame.fin and last, open=frame.open
        )

    def _control(self, version: int, kind: int, flags: int, payload: bytes) -> Event | None:
        if version != VERSION:
            raise SessionError(f"control frame of SPDY version {version}, expected 3")
        allowed = _ALLOWED_FLAGS.get(kind)
        if allowed is None:
            # draft 3.1, 2.2.1: a control frame of an unknown type is ignored
            return None
        if flags & ~allowed:
            raise SessionError(f"control frame type {kind} with unknown flags {flags:#x}")
        if kind == SYN_STREAM:
            return self._syn_stream(flags, payload)
        if kind in (SYN_REPLY, HEADERS):
            return self._reply_or_headers(kind, flags, payload)
        if kind == RST_STREAM:
            stream_id, status = self._two_words(payload, "RST_STREAM")
            if stream_id == 0 or stream_id > MAX_STREAM_ID:
                raise SessionError(f"RST_STREAM for invalid stream {stream_id}")
            if status == 0:
                raise SessionError("RST_STREAM with status 0")
            self._forget(stream_id)
            return ResetReceived(stream_id=stream_id, status=status)
        if kind == SETTINGS:
            return self._settings(flags, payload)
        if kind == PING:
            if len(payload) != 4:
                raise SessionError(f"PING of {len(payload)} bytes, expected 4")
            return PingReceived(ping_id=_U32.unpack(payload)[0])
        if kind == GOAWAY:
            last, status = self._two_words(payload, "GOAWAY")
            return GoAwayReceived(last_stream_id=last & MAX_STREAM_ID, status=status)
        stream_id, delta = self._two_words(payload, "WINDOW_UPDATE")
        if stream_id > MAX_STREAM_ID or delta == 0 or delta > MAX_STREAM_ID:
            raise SessionError(f"WINDOW_UPDATE of {delta} for stream {stream_id}")
        if stream_id and stream_id not in self._streams:
            if self._was_opened(stream_id):
                return None
            raise SessionError(f"WINDOW_UPDATE for stream {stream_id}, never opened")
        return WindowUpdateReceived(stream_id=stream_id, delta=delta)

    @staticmethod
    def _two_words(payload: bytes, what: str) -> tuple[int, int]:
        if len(payload) != 8:
            raise SessionError(f"{what} of {len(payload)} bytes, expected 8")
        first, second = _HEADER.unpack(payload)
        return first, second

    def _headers(self, compressed: bytes, stream_id: int) -> Pairs | StreamFailed:
        block = self._decompressor.decompress(compressed)
        try:
            return decode_header_block(block, self._max_headers)
        except TooManyHeaders as exc:
            # the block was decompressed in full, so the context is intact: the draft's
            # status for a header block this side cannot support
            return StreamFailed(
                stream_id=stream_id,
                status=RstStatus.FRAME_TOO_LARGE,
                reason=str(exc),
                limit="max_headers",
            )
        except ValueError as exc:
            # the compression context is intact, so only the stream fails
            return StreamFailed(
                stream_id=stream_id, status=RstStatus.PROTOCOL_ERROR, reason=str(exc)
            )

    def _syn_stream(self, flags: int, payload: bytes) -> Event:
        if len(payload) < 10:
            raise SessionError(f"SYN_STREAM of {len(payload)} bytes")
        stream_id, associated = _HEADER.unpack_from(payload, 0)
        if stream_id & 0x80000000 or associated & 0x80000000:
            raise SessionError("SYN_STREAM with the reserved bit set")
        headers = self._headers(payload[10:], stream_id)
        if stream_id == 0:
            raise SessionError("SYN_STREAM for stream 0")
        if (stream_id & 1) == (1 if self.client else 0):
            raise SessionError(f"SYN_STREAM for stream {stream_id}, of this side's parity")
        if stream_id <= self._last_remote_id:
            raise SessionError(
                f"SYN_STREAM for stream {stream_id} after {self._last_remote_id}: ids must increase"
            )
        self._last_remote_id = stream_id
        if isinstance(headers, StreamFailed):
            return headers
        if flags & FLAG_UNIDIRECTIONAL:
            return StreamFailed(
                stream_id=stream_id,
                status=RstStatus.REFUSED_STREAM,
                reason="unidirectional streams are not supported",
            )
        fin = bool(flags & FLAG_FIN)
        self._streams[stream_id] = _Stream(local=False, remote_fin=fin)
        return StreamOpened(
            stream_id=stream_id,
            headers=headers,
            fin=fin,
            associated_id=associated,
            priority=payload[8] >> 5,
        )

    def _reply_or_headers(self, kind: int, flags: int, payload: bytes) -> Event | None:
        what = "SYN_REPLY" if kind == SYN_REPLY else "HEADERS"
        if len(payload) < 4:
            raise SessionError(f"{what} of {len(payload)} bytes")
        (stream_id,) = _U32.unpack_from(payload, 0)
        if stream_id == 0 or stream_id & 0x80000000:
            raise SessionError(f"{what} for invalid stream {stream_id}")
        headers = self._headers(payload[4:], stream_id)
        stream = self._streams.get(stream_id)
        if stream is None:
            if self._was_opened(stream_id):
                return None
            return StreamFailed(
                stream_id=stream_id,
                status=RstStatus.INVALID_STREAM,
                reason=f"{what} for a stream that was never opened",
            )
        if isinstance(headers, StreamFailed):
            self._forget(stream_id)
            return headers
        fin = bool(flags & FLAG_FIN)
        if kind == SYN_REPLY:
            if not stream.local:
                self._forget(stream_id)
                return StreamFailed(
                    stream_id=stream_id,
                    status=RstStatus.PROTOCOL_ERROR,
                    reason="SYN_REPLY for a stream the peer opened",
                )
            if stream.replied:
                self._forget(stream_id)
                return StreamFailed(
                    stream_id=stream_id,
                    status=RstStatus.STREAM_IN_USE,
                    reason="a second SYN_REPLY",
                )
            stream.replied = True
        elif stream.remote_fin:
            self._forget(stream_id)
            return StreamFailed(
                stream_id=stream_id,
                status=RstStatus.STREAM_ALREADY_CLOSED,
                reason="HEADERS after the peer's FIN",
            )
        if fin:
            self._remote_finished(stream_id, stream)
        if kind == SYN_REPLY:
            return ReplyReceived(stream_id=stream_id, headers=headers, fin=fin)
        return HeadersReceived(stream_id=stream_id, headers=headers, fin=fin)

    def _settings(self, flags: int, payload: bytes) -> Event:
        if len(payload) < 4:
            raise SessionError(f"SETTINGS of {len(payload)} bytes")
        (count,) = _U32.unpack_from(payload, 0)
        if len(payload) != 4 + 8 * count:
            raise SessionError(f"SETTINGS of {len(payload)} bytes announces {count} entries")
        entries = []
        for index in range(count):
            id_word, value = _PAIR.unpack_from(payload, 4 + 8 * index)
            entries.append((id_word & 0xFFFFFF, value))
        return SettingsReceived(settings=tuple(entries), clear=bool(flags & FLAG_CLEAR_SETTINGS))

    def _was_opened(self, stream_id: int) -> bool:
        """``True`` if *stream_id* belongs to a stream that existed and is closed now."""
        if (stream_id & 1) == (1 if self.client else 0):
            return stream_id < self._next_local_id
        return stream_id <= self._last_remote_id

    def _remote_finished(self, stream_id: int, stream: _Stream) -> None:
        stream.remote_fin = True
        if stream.local_fin:
            self._forget(stream_id)

    def _forget(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    # -- sending -------------------------------------------------------------------------

    def _control_frame(self, kind: int, flags: int, payload: bytes) -> bytes:
        return _CONTROL.pack(0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload

    def syn_stream(
        self,
        stream_id: int,
        headers: Sequence[tuple[str, str]],
        *,
        fin: bool = False,
        priority: int = 0,
    ) -> bytes:
        """``SYN_STREAM`` opening *stream_id* (from :meth:`next_stream_id`).

        :raises ValueError: if a header cannot travel (see :func:`encode_header_block`)
        """
        block = self._compressor.compress(encode_header_block(headers))
        self._streams[stream_id] = _Stream(local=True, local_fin=fin)
        payload = _HEADER.pack(stream_id, 0) + bytes([(priority & 7) << 5, 0]) + block
        return self._control_frame(SYN_STREAM, FLAG_FIN if fin else 0, payload)

    def syn_reply(
        self, stream_id: int, headers: Sequence[tuple[str, str]], *, fin: bool = False
    ) -> bytes:
        """``SYN_REPLY`` accepting the peer's stream *stream_id*.

        :raises ValueError: if a header cannot travel
        """
        block = self._compressor.compress(encode_header_block(headers))
        if fin:
            self._local_finished(stream_id)
        return self._control_frame(SYN_REPLY, FLAG_FIN if fin else 0, _U32.pack(stream_id) + block)

    def headers(
        self, stream_id: int, headers: Sequence[tuple[str, str]], *, fin: bool = False
    ) -> bytes:
        """``HEADERS`` carrying more headers for *stream_id*.

        :raises ValueError: if a header cannot travel
        """
        block = self._compressor.compress(encode_header_block(headers))
        if fin:
            self._local_finished(stream_id)
        return self._control_frame(HEADERS, FLAG_FIN if fin else 0, _U32.pack(stream_id) + block)

    def data_header(self, stream_id: int, length: int, *, fin: bool = False) -> bytes:
        """The 8 bytes that precede *length* bytes of data on *stream_id*."""
        if length > MAX_LENGTH:
            raise ValueError(f"a data frame carries at most {MAX_LENGTH} bytes")
        if fin:
            self._local_finished(stream_id)
        return _HEADER.pack(stream_id & MAX_STREAM_ID, ((FLAG_FIN if fin else 0) << 24) | length)

    def rst_stream(self, stream_id: int, status: RstStatus) -> bytes:
        """``RST_STREAM`` aborting *stream_id*; never status 0."""
        self._forget(stream_id)
        return self._control_frame(RST_STREAM, 0, _HEADER.pack(stream_id, int(status)))

    def settings(self, values: Iterable[tuple[int, int]], *, clear: bool = False) -> bytes:
        """``SETTINGS`` with *values* (id, value)."""
        entries = list(values)
        payload = _U32.pack(len(entries)) + b"".join(
            _PAIR.pack(setting & 0xFFFFFF, value) for setting, value in entries
        )
        return self._control_frame(SETTINGS, FLAG_CLEAR_SETTINGS if clear else 0, payload)

    def ping(self, ping_id: int) -> bytes:
        """``PING`` with *ping_id* (ours from :meth:`next_ping_id`, or the peer's echoed)."""
        return self._control_frame(PING, 0, _U32.pack(ping_id))

    def goaway(self, status: GoAwayStatus = GoAwayStatus.OK) -> bytes:
        """``GOAWAY`` naming the last stream the peer opened."""
        return self._control_frame(GOAWAY, 0, _HEADER.pack(self._last_remote_id, int(status)))

    def window_update(self, stream_id: int, delta: int) -> bytes:
        """``WINDOW_UPDATE`` granting *delta* bytes on *stream_id* (0: the session)."""
        return self._control_frame(WINDOW_UPDATE, 0, _HEADER.pack(stream_id, delta))

    def _local_finished(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.local_fin = True
        if stream.remote_fin:
            self._forget(stream_id)
