"""The framer's settings, with their documented defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..._core.errors import ConfigError
from ..._core.mux import MuxSettings
from .codec import INITIAL_WINDOW

__all__ = ["MAX_HEADER_BLOCK_LIMIT", "FramerSettings"]

#: the largest ``max_header_block`` allowed: a block must fit in the initial window
MAX_HEADER_BLOCK_LIMIT = 128 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class FramerSettings(MuxSettings):
    """Settings of one framer connection (the fields of :class:`MuxSettings` too).

    ``receive_window`` is the window each stream starts with; yamux fixes the initial
    window at 256 KiB, so a larger value is granted with a Window Update as the stream
    opens (as hashicorp/yamux does for ``MaxStreamWindowSize``).
    """

    #: the largest data frame written, in bytes (yamux has no limit but the window)
    max_frame_size: int = 256 * 1024
    #: streams the peer may have open at once (those whose OPEN header block is still
    #: arriving included); more are refused. yamux has no connection window, so each
    #: stream lets the peer make us hold its whole receive window: 256 streams of 256 KiB
    #: bound that to 64 MiB a connection (MuxSettings' 4096 would allow 1 GiB)
    max_incoming_streams: int = 256
    #: seconds between keepalive pings; ``None`` disables keepalive. The first ping is
    #: sent at once, so the round-trip time is known early (window auto-tuning uses it)
    keepalive_interval: float | None = 30.0
    #: seconds a ping may go unanswered before the connection is declared dead
    ping_timeout: float = 15.0
    #: seconds without any open stream and without stream frames after which the
    #: connection closes gracefully; pings do not count as activity; ``None``: never
    idle_timeout: float | None = None
    #: seconds a ``send`` may make no progress (no credit from the peer, no room in the
    #: connection's output) before the stream is reset with ``CANCEL``; ``None``: forever
    write_timeout: float | None = None
    #: the largest header block body accepted, in bytes (at most 128 KiB)
    max_header_block: int = 64 * 1024
    #: bytes all streams of the connection may hold unread before the driver stops
    #: reading the transport until the application catches up (at least
    #: ``max_receive_window``)
    max_connection_buffer: int = 32 * 1024 * 1024
    #: bytes queued for the transport before senders wait
    write_buffer: int = 1024 * 1024
    #: bytes asked of the transport per read
    read_size: int = 256 * 1024

    def __post_init__(self) -> None:
        MuxSettings.__post_init__(self)
        if self.receive_window < INITIAL_WINDOW:
            raise ConfigError(
                f"must be at least yamux's initial window ({INITIAL_WINDOW})",
                path="receive_window",
            )
        for name in ("keepalive_interval", "idle_timeout", "write_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError("must be positive (or None to disable)", path=name)
        if self.ping_timeout <= 0:
            raise ConfigError("must be positive", path="ping_timeout")
        if not 64 <= self.max_header_block <= MAX_HEADER_BLOCK_LIMIT:
            raise ConfigError(
                f"must be between 64 and {MAX_HEADER_BLOCK_LIMIT}", path="max_header_block"
            )
        if self.max_connection_buffer < self.max_receive_window:
            raise ConfigError("must be at least max_receive_window", path="max_connection_buffer")
        if self.write_buffer < 4096:
            raise ConfigError("must be at least 4096", path="write_buffer")
        if self.read_size < 4096:
            raise ConfigError("must be at least 4096", path="read_size")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FramerSettings:
        """Settings from a mapping by field name (``BackendOptions.settings``).

        :raises ~streams.ConfigError: naming an unknown field or a bad value
        """
        known = {field.name for field in fields(cls)}
        for name in values:
            if name not in known:
                raise ConfigError(
                    f"unknown framer setting; known: {', '.join(sorted(known))}", path=name
                )
        try:
            return cls(**dict(values))
        except TypeError as exc:
            raise ConfigError(f"bad framer settings: {exc}") from None
