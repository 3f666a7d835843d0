"""Backends: each runs one real protocol behind the :class:`~streams.StreamProvider` contract.

:func:`get_backend` finds a backend by the name the command line and topologies use;
each backend package exposes its :class:`~streams._core.backend.Backend` as ``BACKEND``.
"""

from __future__ import annotations

import importlib

from .._core.backend import Backend
from .._core.errors import ConfigError

__all__ = ["BACKEND_NAMES", "get_backend"]

#: the backends this version knows, by name
BACKEND_NAMES = ("memory", "framer", "http2", "spdy", "ssh")


def get_backend(name: str) -> Backend:
    """Return the backend called *name*.

    :raises ~streams.ConfigError: if there is no such backend, or its extra is not installed
    """
    if name not in BACKEND_NAMES:
        raise ConfigError(f"unknown backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}")
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(__name__):
            raise ConfigError(f"the {name} backend is not available in this version") from exc
        raise ConfigError(
            f"the {name} backend needs {exc.name!r}: pip install 'streams[{name}]'"
        ) from exc
    backend = getattr(module, "BACKEND", None)
    if not isinstance(backend, Backend):
        raise ConfigError(f"the {name} backend is not available in this version")
    return backend
