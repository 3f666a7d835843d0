"""Settings, header names, attributes and errors of the SSH backend."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import anyio

from ..._core.errors import ConfigError, ConnectionLost
from ._codec import MAX_FRAME

__all__ = [
    "CHANNEL_HEADER",
    "DEFAULT_MAX_PACKET",
    "DEFAULT_WINDOW",
    "DESTINATION_HEADER",
    "OPEN_FAILURE_HEADER",
    "ORIGIN_HEADER",
    "USER_HEADER",
    "AuthenticationFailed",
    "HostKeyNotVerified",
    "SSHAttribute",
    "SSHSettings",
    "default_max_packet",
]

#: on ``open_stream``: open a standard ``direct-tcpip`` channel to ``HOST:PORT`` (what an
#: OpenSSH server forwards); on an incoming ``direct-tcpip`` channel: where it wants to go
DESTINATION_HEADER = "x-ssh-destination"
#: the originator ``HOST:PORT`` of a ``direct-tcpip`` channel (default ``127.0.0.1:0``)
ORIGIN_HEADER = "x-ssh-origin"
#: set by the server on every incoming stream: the user the SSH connection authenticated
#: as (a value the opener sent under this name is replaced, never trusted)
USER_HEADER = "x-ssh-user"
#: ``direct-tcpip`` on streams carried by a plain TCP channel
CHANNEL_HEADER = "x-ssh-channel"
#: in a :class:`~streams.StreamRejected` for a refused channel: the SSH reason code
OPEN_FAILURE_HEADER = "x-ssh-open-failure"


class SSHAttribute(anyio.TypedAttributeSet):
    """Extra attributes of the SSH backend's streams (``stream.extra(...)``)."""

    #: the authenticated user (server side) or the login user (client side)
    user: str | None = anyio.typed_attribute()
    #: the SSH peer's socket address
    peer_address: Any = anyio.typed_attribute()


class HostKeyNotVerified(ConnectionLost):
    """The server's host key is not vouched for by known_hosts: nothing was sent to it."""


class AuthenticationFailed(ConnectionLost):
    """The server accepted none of the client's keys."""


#: the SSH receive window of a channel when not set
DEFAULT_WINDOW = 2 * 1024 * 1024
#: the largest SSH data packet taken when neither it nor the windows are set
DEFAULT_MAX_PACKET = 128 * 1024
#: the smallest packet size chosen for small windows (the usual SSH default)
_SMALL_MAX_PACKET = 32 * 1024


def default_max_packet(window: int, receive_window: int) -> int:
    """The ``max_packet`` used when it is not set: :data:`DEFAULT_MAX_PACKET`, or less
    where *window* or half of the stream's *receive_window* is smaller (down to 32 KiB)."""
    return max(_SMALL_MAX_PACKET, min(DEFAULT_MAX_PACKET, window, receive_window // 2))


@dataclass(frozen=True, slots=True, kw_only=True)
class SSHSettings:
    """How the SSH backend runs its connections and channels.

    Set through ``BackendOptions.settings`` (``--setting NAME=VALUE``) by name; the names
    of :class:`~streams._core.mux.MuxSettings` are accepted there too.
    """

    #: the SSH receive window of each channel, in bytes (asyncssh's default is 2 MiB)
    window: int = DEFAULT_WINDOW
    #: the largest SSH data packet this side accepts, in bytes. When not given: 128 KiB,
    #: or less where ``window`` or half of ``receive_window`` is smaller, down to 32 KiB
    #: (asyncssh's and OpenSSH's default). Each packet costs its encryption and a trip
    #: through asyncssh's Python code, so larger packets move bulk data at a fraction of
    #: the cost; the peer sends at most this, and sends smaller ones as it likes
    max_packet: int = DEFAULT_MAX_PACKET
    #: bytes queued in a channel's send buffer before a sender waits
    write_buffer: int = 256 * 1024
    #: seconds between keepalive requests when the connection is idle (0: none)
    keepalive_interval: float = 15.0
    #: unanswered keepalives after which the connection is declared dead
    keepalive_count_max: int = 3
    #: seconds the SSH handshake (and authentication) may take; a connection that has
    #: not authenticated by then is closed
    login_timeout: float = 30.0
    #: bytes received on one connection and not yet read by the application (stream
    #: buffers, data asyncssh holds for paused channels, unfinished header frames); more
    #: closes the connection. SSH has no connection-level window, so without this bound
    #: a peer could fill ``window`` bytes on every channel it opens
    max_connection_buffer: int = 32 * 1024 * 1024
    #: the largest header frame (the opener's headers) accepted on one stream, in bytes;
    #: a larger one refuses that stream only
    max_header_block: int = 64 * 1024
    #: authentication requests one connection may make; one more disconnects it
    max_auth_attempts: int = 20

    def __post_init__(self) -> None:
        if not 4096 <= self.window <= 0x7FFFFFFF:
            raise ConfigError("must be between 4096 and 2**31-1", path="window")
        if not 1024 <= self.max_packet <= 256 * 1024 or self.max_packet > self.window:
            raise ConfigError(
                "must be between 1024 and 262144, and at most window", path="max_packet"
            )
        if self.write_buffer < 1024:
            raise ConfigError("must be at least 1024", path="write_buffer")
        if self.keepalive_interval < 0:
            raise ConfigError("must not be negative", path="keepalive_interval")
        if self.keepalive_count_max < 1:
            raise ConfigError("must be at least 1", path="keepalive_count_max")
        if self.login_timeout <= 0:
            raise ConfigError("must be positive", path="login_timeout")
        if self.max_connection_buffer < 1024 * 1024:
            raise ConfigError("must be at least 1048576", path="max_connection_buffer")
        if not 64 <= self.max_header_block <= MAX_FRAME:
            raise ConfigError(f"must be between 64 and {MAX_FRAME}", path="max_header_block")
        if self.max_auth_attempts < 1:
            raise ConfigError("must be at least 1", path="max_auth_attempts")

    @classmethod
    def field_names(cls) -> set[str]:
        """The names this class takes."""
        return {field.name for field in fields(cls)}
