"""What a backend offers the rest of the system: dialling one connection, serving many,
and the small :class:`Dialer` object that wrappers use to make one more connection."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from .abc import Handler, StreamProvider
from .server import StreamServer
from .transport import TLSConfig

__all__ = ["Backend", "BackendDialer", "BackendOptions", "Dialer", "SSHConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SSHConfig:
    """SSH identity and trust, as an operator writes them."""

    #: server: the host key file (PEM/OpenSSH private key)
    host_key: str | None = None
    #: server: the authorized_keys file of the users allowed in
    authorized_keys: str | None = None
    #: client: the private key to log in with (the agent's keys when ``None``)
    identity: str | None = None
    #: client: the known_hosts file that must vouch for the server's key
    known_hosts: str | None = None
    #: client: the user to log in as
    user: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendOptions:
    """Options for dialling or serving; each backend reads the ones it knows."""

    #: TLS, when the connection should use it
    tls: TLSConfig | None = None
    #: SSH identity and trust (the ``ssh`` backend)
    ssh: SSHConfig | None = None
    #: the framer's raw yamux mode: no header handshake
    raw: bool = False
    #: SPDY peers that never send window updates (docker/spdystream)
    spdy_no_flow_control: bool = False
    #: seconds to wait for the connection (and its handshakes)
    connect_timeout: float = 30.0
    #: backend-specific settings by name (window sizes, keepalive, limits)
    settings: Mapping[str, Any] = field(default_factory=dict)


class Dialer(ABC):
    """Knows how to make one more connection to one endpoint. Wrappers take dialers."""

    #: the endpoint, for labels, logs and errors
    endpoint: str

    @abstractmethod
    def dial(self) -> AbstractAsyncContextManager[StreamProvider]:
        """Connect; the provider closes when the block ends.

        :raises ~streams.ConnectionLost: if the connection cannot be made
        """


class Backend(ABC):
    """A protocol that can dial and serve."""

    #: the name the command line and topologies use
    name: str

    @abstractmethod
    def connect(
        self, address: str, options: BackendOptions | None = None
    ) -> AbstractAsyncContextManager[StreamProvider]:
        """Dial one connection to *address* and run the protocol on it."""

    @abstractmethod
    def serve(
        self,
        address: str,
        options: BackendOptions | None = None,
        handler: Handler | None = None,
    ) -> AbstractAsyncContextManager[StreamServer]:
        """Listen on *address*; every connection's streams arrive on ``server.listener``."""

    def dialer(self, address: str, options: BackendOptions | None = None) -> Dialer:
        """A :class:`Dialer` for *address*."""
        return BackendDialer(self, address, options)


class BackendDialer(Dialer):
    """A :class:`Dialer` that calls :meth:`Backend.connect`."""

    def __init__(self, backend: Backend, address: str, options: BackendOptions | None) -> None:
        self.backend = backend
        self.endpoint = address
        self.options = options

    def dial(self) -> AbstractAsyncContextManager[StreamProvider]:
        return self.backend.connect(self.endpoint, self.options)

    def __repr__(self) -> str:
        return f"<Dialer {self.backend.name} {self.endpoint}>"
