"""The framer backend: hashicorp's yamux framing plus header blocks (``docs/framer.md``).

``BACKEND.connect("127.0.0.1:7000")`` dials, ``BACKEND.serve(...)`` listens;
:class:`FramerProvider` runs the protocol on any anyio byte stream.
"""

from __future__ import annotations

from .backend import FramerBackend
from .config import FramerSettings
from .driver import FramerProvider, FramerStream

__all__ = ["BACKEND", "FramerBackend", "FramerProvider", "FramerSettings", "FramerStream"]

#: the framer backend, as :func:`streams.backends.get_backend` finds it
BACKEND = FramerBackend()
