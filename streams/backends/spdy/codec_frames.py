"""SPDY/3.1 wire constants, status codes and the events the codec returns (sans-IO)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = [
    "DataReceived",
    "Event",
    "GoAwayReceived",
    "GoAwayStatus",
    "HeadersReceived",
    "Pairs",
    "PingReceived",
    "ReplyReceived",
    "ResetReceived",
    "RstStatus",
    "SessionError",
    "SettingId",
    "SettingsReceived",
    "StreamFailed",
    "StreamOpened",
    "WindowUpdateReceived",
]

VERSION = 3
MAX_STREAM_ID = 0x7FFFFFFF
MAX_LENGTH = 0xFFFFFF
#: the window both ends assume for a new stream and for the session (draft 3.1, 2.6.8)
DEFAULT_WINDOW = 65536

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_CLEAR_SETTINGS = 0x01

#: the control flags each frame type may carry
_ALLOWED_FLAGS = {
    SYN_STREAM: FLAG_FIN | FLAG_UNIDIRECTIONAL,
    SYN_REPLY: FLAG_FIN,
    RST_STREAM: 0,
    SETTINGS: FLAG_CLEAR_SETTINGS,
    PING: 0,
    GOAWAY: 0,
    HEADERS: FLAG_FIN,
    WINDOW_UPDATE: 0,
}

_U32 = struct.Struct(">I")
_HEADER = struct.Struct(">II")
_CONTROL = struct.Struct(">HHI")
_PAIR = struct.Struct(">II")


class RstStatus(enum.IntEnum):
    """``RST_STREAM`` status codes (draft 3.1, 2.6.3). Zero is not a status."""

    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    INVALID_CREDENTIALS = 10
    FRAME_TOO_LARGE = 11


class GoAwayStatus(enum.IntEnum):
    """``GOAWAY`` status codes (draft 3.1, 2.6.6)."""

    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class SettingId(enum.IntEnum):
    """``SETTINGS`` ids (draft 3.1, 2.6.4)."""

    UPLOAD_BANDWIDTH = 1
    DOWNLOAD_BANDWIDTH = 2
    ROUND_TRIP_TIME = 3
    MAX_CONCURRENT_STREAMS = 4
    CURRENT_CWND = 5
    DOWNLOAD_RETRANS_RATE = 6
    INITIAL_WINDOW_SIZE = 7
    CLIENT_CERTIFICATE_VECTOR_SIZE = 8


class SessionError(Exception):
    """The peer broke the protocol; the session must end with ``GOAWAY``.

    :ivar status: the ``GOAWAY`` status to send
    :ivar limit: the name of the configured limit that was exceeded, if that was the cause
    """

    def __init__(
        self,
        message: str,
        status: GoAwayStatus = GoAwayStatus.PROTOCOL_ERROR,
        *,
        limit: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.limit = limit


# -- events ---------------------------------------------------------------------------------

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOpened:
    """``SYN_STREAM``: the peer opened a stream."""

    #: the new stream's id
    stream_id: int
    #: the header block, in order, one pair per value
    headers: Pairs
    #: the peer sent no data on it (``FLAG_FIN``)
    fin: bool
    #: the stream the peer associated it with (0: none)
    associated_id: int = 0
    #: 0 (highest) to 7
    priority: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyReceived:
    """``SYN_REPLY``: the peer accepted a stream this side opened."""

    stream_id: int
    headers: Pairs
    fin: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadersReceived:
    """``HEADERS``: more headers for a stream."""

    stream_id: int
    headers: Pairs
    fin: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived:
    """A data frame. ``open`` is false for a stream that was already closed here: its data
    must be discarded (and still count against the session window)."""

    stream_id: int
    data: bytes
    fin: bool
    open: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetReceived:
    """``RST_STREAM``: the peer aborted a stream."""

    stream_id: int
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingsReceived:
    """``SETTINGS``: id to value, in the order received."""

    settings: tuple[tuple[int, int], ...]
    clear: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PingReceived:
    """``PING``: answer it if its id has the peer's parity; else it answers ours."""

    ping_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GoAwayReceived:
    """``GOAWAY``: the peer takes no new streams above ``last_stream_id``."""

    last_stream_id: int
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowUpdateReceived:
    """``WINDOW_UPDATE``: more credit on a stream, or on the session (``stream_id`` 0)."""

    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamFailed:
    """A stream error: answer with ``RST_STREAM`` *status*; the session goes on.

    ``discarded`` counts data bytes that were dropped with it: they count against the
    session window, and their credit goes back at once. The rest of a data frame that
    arrives later comes as :class:`DataReceived` with ``open`` false."""

    stream_id: int
    status: RstStatus
    reason: str
    discarded: int = 0
    #: the name of the configured limit the stream went over, if that was the cause
    limit: str | None = None


Event = (
    StreamOpened
    | ReplyReceived
    | HeadersReceived
    | DataReceived
    | ResetReceived
    | SettingsReceived
    | PingReceived
    | GoAwayReceived
    | WindowUpdateReceived
    | StreamFailed
)
