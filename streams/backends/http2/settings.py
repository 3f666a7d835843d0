"""Settings of the HTTP/2 backend."""

from __future__ import annotations

from dataclasses import dataclass

from ..._core.errors import ConfigError
from ..._core.mux import MuxSettings

__all__ = ["Http2Settings"]

#: the largest frame payload HTTP/2 can express (RFC 9113, section 6.5.2)
MAX_FRAME_SIZE_LIMIT = (1 << 24) - 1
#: the smallest frame payload every HTTP/2 endpoint must accept
MIN_FRAME_SIZE = 16384


@dataclass(frozen=True, slots=True, kw_only=True)
class Http2Settings(MuxSettings):
    """Settings of one HTTP/2 connection, on top of the settings every backend shares.

    ``receive_window`` is advertised as ``SETTINGS_INITIAL_WINDOW_SIZE``,
    ``max_frame_size`` as ``SETTINGS_MAX_FRAME_SIZE`` (the largest frame we accept; the
    frames we write follow the peer's setting), and ``max_incoming_streams`` as
    ``SETTINGS_MAX_CONCURRENT_STREAMS``.
    """

    #: the connection-level receive window, in bytes. Credit is returned as the
    #: application reads, so this bounds what all streams together may buffer; it is
    #: large by default so that one stalled stream does not starve the others
    connection_window: int = 16 * 1024 * 1024
    #: seconds between keepalive PINGs (``None``: no keepalive)
    keepalive_interval: float | None = None
    #: seconds a PING may go unanswered before the connection is declared dead
    ping_timeout: float = 20.0
    #: the largest header list accepted (``SETTINGS_MAX_HEADER_LIST_SIZE``), in bytes
    max_header_list_size: int = 64 * 1024
    #: the ``:scheme`` a client sends when the caller does not give one (``None``:
    #: ``https`` over TLS, ``http`` otherwise)
    default_scheme: str | None = None
    #: the ``:authority`` a client sends when the caller does not give one (``None``: the
    #: dialled address)
    default_authority: str | None = None

    def __post_init__(self) -> None:
        MuxSettings.__post_init__(self)
        if not MIN_FRAME_SIZE <= self.max_frame_size <= MAX_FRAME_SIZE_LIMIT:
            raise ConfigError(
                f"HTTP/2 frames must be between {MIN_FRAME_SIZE} and {MAX_FRAME_SIZE_LIMIT}",
                path="max_frame_size",
            )
        if not 65535 <= self.connection_window <= 0x7FFFFFFF:
            raise ConfigError("must be between 65535 and 2**31-1", path="connection_window")
        if self.keepalive_interval is not None and self.keepalive_interval <= 0:
            raise ConfigError("must be positive", path="keepalive_interval")
        if self.ping_timeout <= 0:
            raise ConfigError("must be positive", path="ping_timeout")
        if self.max_header_list_size < 1024:
            raise ConfigError("must be at least 1024", path="max_header_list_size")
        if self.default_scheme is not None and self.default_scheme not in ("http", "https"):
            raise ConfigError("must be 'http' or 'https'", path="default_scheme")
