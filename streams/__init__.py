"""One interface for multiplexed byte streams, on asyncio and trio.

A :class:`Stream` is an :class:`anyio.abc.ByteStream` with headers, half-close and reset;
a :class:`StreamProvider` opens streams, lets the peer's in through :meth:`~StreamProvider.listen`,
and closes as a whole. Backends (``streams.backends``) run real protocols behind it; wrappers
(``streams.wrappers``) build pools, failover and metrics on top of it.
"""

from ._core.abc import (
    Handler,
    HandlerResult,
    Listener,
    Stream,
    StreamAttribute,
    StreamProvider,
)
from ._core.errors import (
    ConfigError,
    ConnectionLost,
    ErrorCode,
    GoingAway,
    LimitExceeded,
    OpenTimeout,
    ProtocolError,
    ProviderClosed,
    StreamClosed,
    StreamError,
    StreamRejected,
    StreamReset,
)
from ._core.headers import Headers, HeadersLike

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConnectionLost",
    "ErrorCode",
    "GoingAway",
    "Handler",
    "HandlerResult",
    "Headers",
    "HeadersLike",
    "LimitExceeded",
    "Listener",
    "OpenTimeout",
    "ProtocolError",
    "ProviderClosed",
    "Stream",
    "StreamAttribute",
    "StreamClosed",
    "StreamError",
    "StreamProvider",
    "StreamRejected",
    "StreamReset",
    "__version__",
]
