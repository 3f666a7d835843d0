"""The HTTP/2 backend: each stream is one request/response exchange used full-duplex.

h2 is the protocol state machine; :mod:`.driver` runs it on an anyio byte stream. The
mapping of streams onto requests and responses is in ``docs/http2.md``.
"""

from __future__ import annotations

from .backend import Http2Backend
from .driver import Http2Provider, Http2Stream
from .settings import Http2Settings

__all__ = ["BACKEND", "Http2Backend", "Http2Provider", "Http2Settings", "Http2Stream"]

#: the HTTP/2 backend, as :func:`streams.backends.get_backend` finds it
BACKEND = Http2Backend()
