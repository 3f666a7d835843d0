"""The error hierarchy of ``streams``.

Every error derives from :class:`StreamError` and, where anyio has a matching meaning,
from the anyio exception too, so code written for anyio streams handles ours unchanged:

* *closed* (:class:`anyio.ClosedResourceError`) means **you** closed it;
* *broken* (:class:`anyio.BrokenResourceError`) means something outside broke it: the
  peer reset the stream, the connection was lost, or the peer broke the protocol.

Each error that comes from the wire carries the protocol's code (:class:`ErrorCode`).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from .headers import Headers

__all__ = [
    "ConfigError",
    "ConnectionLost",
    "ErrorCode",
    "GoingAway",
    "LimitExceeded",
    "OpenTimeout",
    "ProtocolError",
    "ProviderClosed",
    "StreamClosed",
    "StreamError",
    "StreamRejected",
    "StreamReset",
]


class ErrorCode(enum.IntEnum):
    """Reasons for a reset or a connection close, shared by every backend.

    The numbers are HTTP/2's (RFC 9113, section 7); other protocols map onto them.
    """

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD

    @classmethod
    def coerce(cls, code: int) -> ErrorCode | int:
        """Return the enum member for *code*, or *code* itself when it is not a known one."""
        try:
            return cls(code)
        except ValueError:
            return code


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"code {code:#x}"


class StreamError(Exception):
    """Base of every error raised by ``streams``.

    :ivar retryable: ``True`` when the peer provably did not process the stream, so that
        opening it again (elsewhere) is safe. Failover relies on it.
    """

    retryable: bool = False


class StreamReset(StreamError, anyio.BrokenResourceError):
    """The stream was reset (aborted in both directions) by either side.

    :ivar code: the reset's error code
    :ivar remote: ``True`` if the peer reset it, ``False`` if it was reset locally
    """

    def __init__(self, code: int = ErrorCode.CANCEL, *, remote: bool = True) -> None:
        self.code = ErrorCode.coerce(code)
        self.remote = remote
        side = "peer" if remote else "local side"
        super().__init__(f"stream reset by the {side} ({_code_name(code)})")
        self.retryable = remote and code == ErrorCode.REFUSED_STREAM


class ConnectionLost(StreamError, anyio.BrokenResourceError):
    """The connection under the stream or provider failed or was closed by the peer."""

    def __init__(self, message: str = "connection lost", *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class GoingAway(ConnectionLost):
    """The peer announced that it takes no new streams (Go Away).

    Streams that the peer announced it would not process are safe to open again elsewhere.

    :ivar code: the Go Away's error code
    :ivar last_stream_id: the highest stream id the peer said it processed, when known
    """

    def __init__(
        self,
        message: str = "peer is going away",
        *,
        code: int = ErrorCode.NO_ERROR,
        last_stream_id: int | None = None,
    ) -> None:
        super().__init__(message, retryable=True)
        self.code = ErrorCode.coerce(code)
        self.last_stream_id = last_stream_id


class ProtocolError(ConnectionLost):
    """The peer broke the protocol; the connection was closed with *code*.

    Also raised for a stream whose connection was closed because of it.
    """

    def __init__(self, message: str, code: int = ErrorCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = ErrorCode.coerce(code)


class LimitExceeded(ProtocolError):
    """The peer exceeded a configured limit (:ivar limit: names which one)."""

    def __init__(self, limit: str, message: str, code: int = ErrorCode.ENHANCE_YOUR_CALM) -> None:
        super().__init__(f"{limit}: {message}", code)
        self.limit = limit


class StreamClosed(StreamError, anyio.ClosedResourceError):
    """The stream was closed (or half-closed, for sending) on this side."""

    def __init__(self, message: str = "stream is closed") -> None:
        super().__init__(message)


class ProviderClosed(StreamClosed):
    """The provider was closed on this side; no operation is possible on it or its streams."""

    def __init__(self, message: str = "provider is closed") -> None:
        super().__init__(message)


class StreamRejected(StreamError):
    """The remote handler refused the stream.

    :ivar response_headers: the headers the peer sent with the refusal
    :ivar reason: the peer's reason, when the protocol carries one
    :ivar code: the protocol's code for the refusal
    """

    def __init__(
        self,
        response_headers: Headers | None = None,
        reason: str = "",
        *,
        code: int = ErrorCode.REFUSED_STREAM,
        retryable: bool = False,
    ) -> None:
        from .headers import Headers

        self.response_headers = response_headers if response_headers is not None else Headers()
        self.reason = reason
        self.code = ErrorCode.coerce(code)
        self.retryable = retryable
        super().__init__(f"stream rejected by the peer: {reason or _code_name(code)}")


class OpenTimeout(StreamError, TimeoutError):
    """The peer did not accept or reject a stream within the open timeout."""

    retryable = False


class ConfigError(StreamError, ValueError):
    """A configuration value is invalid.

    :ivar path: where the bad value sits (``upstreams.api.endpoints[0]``)
    :ivar file: the file it came from, when it came from one
    :ivar line: the 1-based line in that file, when known
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.file = file
        self.line = line
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        at = f"{path}: " if path else ""
        super().__init__(f"{where}{at}{message}")
