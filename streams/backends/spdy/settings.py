"""SPDY/3.1 session settings, and how SPDY's status codes map onto :class:`~streams.ErrorCode`."""

from __future__ import annotations

from dataclasses import dataclass

from ..._core.errors import ConfigError, ErrorCode
from ..._core.flow import MAX_WINDOW
from ..._core.mux import MuxSettings
from . import codec as spdy
from .codec import RstStatus

__all__ = [
    "REJECT_REASON",
    "REJECT_RETRYABLE",
    "SpdySettings",
    "error_code",
    "rst_status",
]

#: response header names that carry a rejection's reason and retryability to our own peers
REJECT_REASON = ":reject-reason"
REJECT_RETRYABLE = ":reject-retryable"

_TO_ERROR_CODE = {
    RstStatus.PROTOCOL_ERROR: ErrorCode.PROTOCOL_ERROR,
    RstStatus.INVALID_STREAM: ErrorCode.STREAM_CLOSED,
    RstStatus.REFUSED_STREAM: ErrorCode.REFUSED_STREAM,
    RstStatus.UNSUPPORTED_VERSION: ErrorCode.PROTOCOL_ERROR,
    RstStatus.CANCEL: ErrorCode.CANCEL,
    RstStatus.INTERNAL_ERROR: ErrorCode.INTERNAL_ERROR,
    RstStatus.FLOW_CONTROL_ERROR: ErrorCode.FLOW_CONTROL_ERROR,
    RstStatus.STREAM_IN_USE: ErrorCode.PROTOCOL_ERROR,
    RstStatus.STREAM_ALREADY_CLOSED: ErrorCode.STREAM_CLOSED,
    RstStatus.INVALID_CREDENTIALS: ErrorCode.INADEQUATE_SECURITY,
    RstStatus.FRAME_TOO_LARGE: ErrorCode.FRAME_SIZE_ERROR,
}

_TO_RST_STATUS = {
    ErrorCode.PROTOCOL_ERROR: RstStatus.PROTOCOL_ERROR,
    ErrorCode.INTERNAL_ERROR: RstStatus.INTERNAL_ERROR,
    ErrorCode.FLOW_CONTROL_ERROR: RstStatus.FLOW_CONTROL_ERROR,
    ErrorCode.STREAM_CLOSED: RstStatus.STREAM_ALREADY_CLOSED,
    ErrorCode.FRAME_SIZE_ERROR: RstStatus.FRAME_TOO_LARGE,
    ErrorCode.REFUSED_STREAM: RstStatus.REFUSED_STREAM,
    ErrorCode.CANCEL: RstStatus.CANCEL,
    ErrorCode.COMPRESSION_ERROR: RstStatus.PROTOCOL_ERROR,
    ErrorCode.INADEQUATE_SECURITY: RstStatus.INVALID_CREDENTIALS,
}


def error_code(status: int) -> ErrorCode | int:
    """The :class:`~streams.ErrorCode` for a SPDY ``RST_STREAM`` status."""
    try:
        return _TO_ERROR_CODE[RstStatus(status)]
    except ValueError:
        return ErrorCode.PROTOCOL_ERROR


def rst_status(code: int) -> RstStatus:
    """The ``RST_STREAM`` status for an :class:`~streams.ErrorCode`; ``CANCEL`` for codes
    SPDY cannot say (never 0, which kills docker/spdystream's connection)."""
    try:
        return _TO_RST_STATUS.get(ErrorCode(code), RstStatus.CANCEL)
    except ValueError:
        return RstStatus.CANCEL


@dataclass(frozen=True, slots=True, kw_only=True)
class SpdySettings(MuxSettings):
    """Settings of a SPDY/3.1 session, on top of :class:`~streams._core.mux.MuxSettings`."""

    #: the session-level receive window (SPDY/3.1), in bytes
    session_window: int = 32 * 1024 * 1024
    #: the most bytes one decompressed header block may have (a bigger one is a bomb)
    max_header_block: int = 256 * 1024
    #: the largest control frame accepted, in bytes
    max_control_frame: int = 1024 * 1024
    #: peers without flow control (docker/spdystream): do not wait for the peer's window,
    #: do not enforce ours; a slow reader then pauses the whole connection instead
    no_flow_control: bool = False
    #: when to send ``GOAWAY`` on close: ``"early"`` (at once, as the specification says),
    #: ``"late"`` (once the streams are done: docker/spdystream stops reading on
    #: ``GOAWAY``), or ``"auto"`` (early only to a peer that sent ``SETTINGS`` or
    #: ``WINDOW_UPDATE``, which spdystream never does)
    goaway: str = "auto"
    #: after a ``SYN_REPLY``, hold data until a ``PING`` round trip confirms the peer took
    #: note of its own reply: docker/spdystream marks a stream replied only after writing
    #: the reply, and drops data that arrives in between. ``None``: only for peers that
    #: never sent ``SETTINGS`` or ``WINDOW_UPDATE`` (which spdystream never does)
    confirm_replies: bool | None = None
    #: seconds between keepalive pings (``None``: no keepalive)
    keepalive_interval: float | None = 30.0
    #: seconds a keepalive ping may go unanswered before the connection is declared dead
    keepalive_timeout: float = 30.0
    #: zlib level for header blocks (-1: zlib's default)
    compression_level: int = -1
    #: bytes queued for the socket before data writers wait
    write_buffer: int = 1024 * 1024
    #: decompressed header bytes the peer's open streams may hold in all; a new stream
    #: past it is refused (``REFUSED_STREAM``), so that many streams with large headers
    #: cannot add up to more than this
    max_connection_headers: int = 16 * 1024 * 1024
    #: bytes of answers (replies, pongs, resets, window updates) queued for a peer that
    #: does not read them; past it (or past ``max_queued_control_frames`` answers) the
    #: session is closed
    max_queued_control_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        MuxSettings.__post_init__(self)
        if not 65536 <= self.session_window <= MAX_WINDOW:
            raise ConfigError("must be between 65536 and 2**31-1", path="session_window")
        if self.max_header_block < 1024:
            raise ConfigError("must be at least 1024", path="max_header_block")
        if not 1024 <= self.max_control_frame <= spdy.MAX_LENGTH:
            raise ConfigError("must be between 1024 and 2**24-1", path="max_control_frame")
        if self.max_frame_size > spdy.MAX_LENGTH:
            raise ConfigError("must be at most 2**24-1", path="max_frame_size")
        if self.goaway not in ("early", "late", "auto"):
            raise ConfigError("must be 'early', 'late' or 'auto'", path="goaway")
        if self.keepalive_interval is not None and self.keepalive_interval <= 0:
            raise ConfigError("must be positive", path="keepalive_interval")
        if self.keepalive_timeout <= 0:
            raise ConfigError("must be positive", path="keepalive_timeout")
        if not -1 <= self.compression_level <= 9:
            raise ConfigError("must be between -1 and 9", path="compression_level")
        if self.write_buffer < 1024:
            raise ConfigError("must be at least 1024", path="write_buffer")
        if self.max_connection_headers < self.max_header_block:
            raise ConfigError("must be at least max_header_block", path="max_connection_headers")
        if self.max_queued_control_bytes < 64 * 1024:
            raise ConfigError("must be at least 65536", path="max_queued_control_bytes")
