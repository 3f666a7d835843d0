"""Where a pool's endpoints come from: a fixed list, or a host name that stands for every
address it resolves to (a Kubernetes headless service, Consul DNS), looked up again at an
interval by the pool.

A resolver is anything with an async :meth:`Resolver.resolve` returning a set of address
strings; the pool turns each address into a dialer with the function it was given, adds
new ones and drains vanished ones. A lookup that fails keeps the last known set.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import anyio

from .._core.errors import ConfigError, StreamError

__all__ = ["DNSResolver", "ResolveError", "Resolver", "StaticResolver"]


class ResolveError(StreamError):
    """A lookup failed; the pool keeps the addresses it knew before.

    :ivar name: what was looked up
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"cannot resolve {name}: {message}")
        self.name = name


@runtime_checkable
class Resolver(Protocol):
    """A source of endpoint addresses."""

    async def resolve(self) -> set[str]:
        """Return the addresses that make up the service now.

        :raises ResolveError: if the lookup failed (the pool keeps the last set)
        """
        ...


class StaticResolver:
    """A fixed set of addresses; :meth:`update` changes it (handy for tests and for
    discovery sources that push changes)."""

    def __init__(self, addresses: Iterable[str] = ()) -> None:
        self._addresses = set(addresses)
        #: set by :meth:`fail`: the next lookups raise it
        self.error: ResolveError | None = None

    def update(self, addresses: Iterable[str]) -> None:
        """Replace the set that the next :meth:`resolve` returns."""
        self._addresses = set(addresses)

    def fail(self, message: str | None) -> None:
        """Make the next lookups fail with *message* (``None``: succeed again)."""
        self.error = ResolveError("static addresses", message) if message is not None else None

    async def resolve(self) -> set[str]:
        await anyio.lowlevel.checkpoint()
        if self.error is not None:
            raise self.error
        return set(self._addresses)


class DNSResolver:
    """Every address a host name resolves to, with a fixed port: ``host:port`` each
    (``[v6]:port`` for IPv6).

    :param host: the name to look up
    :param port: the port every address gets
    :param family: ``socket.AF_INET``, ``socket.AF_INET6`` or ``socket.AF_UNSPEC`` (both)
    :param timeout: seconds one lookup may take
    :param template: how to write each address; ``{host}`` and ``{port}`` are replaced
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        family: int = socket.AF_UNSPEC,
        timeout: float = 5.0,
        template: str = "{host}:{port}",
    ) -> None:
        if not host:
            raise ConfigError("must not be empty", path="host")
        if not 0 < port <= 65535:
            raise ConfigError("must be between 1 and 65535", path="port")
        if timeout <= 0:
            raise ConfigError("must be positive", path="timeout")
        self.host = host
        self.port = port
        self.family = family
        self.timeout = timeout
        self.template = template

    async def resolve(self) -> set[str]:
        try:
            with anyio.fail_after(self.timeout):
                infos = await anyio.getaddrinfo(
                    self.host, self.port, family=self.family, type=socket.SOCK_STREAM
                )
        except TimeoutError:
            raise ResolveError(self.host, f"no answer within {self.timeout} s") from None
        except OSError as exc:
            raise ResolveError(self.host, str(exc)) from exc
        found: set[str] = set()
        for family, _type, _proto, _name, sockaddr in infos:
            ip = str(sockaddr[0])
            host = f"[{ip}]" if family == socket.AF_INET6 else ip
            found.add(self.template.format(host=host, port=self.port))
        return found

    def __repr__(self) -> str:
        return f"<DNSResolver {self.host}:{self.port}>"
