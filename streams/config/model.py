"""A validated topology as typed, immutable data (what :func:`load_topology` returns)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._core.backend import BackendOptions, SSHConfig
from .._core.transport import TLSConfig

__all__ = [
    "AdminSpec",
    "EndpointSpec",
    "GroupSpec",
    "MetricsSpec",
    "ServerSpec",
    "Topology",
    "TunnelSpec",
    "UpstreamSpec",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSpec:
    """One endpoint of a priority group."""

    address: str
    weight: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSpec:
    """A priority group: endpoints listed, or a host name re-resolved at an interval."""

    name: str
    endpoints: tuple[EndpointSpec, ...] = ()
    #: ``(host, port, interval seconds)`` for endpoints from DNS
    resolve: tuple[str, int, float] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamSpec:
    """An upstream: a backend, priority groups of endpoints, and the policies over them.

    The option mappings hold values already converted (durations in seconds, sizes in
    bytes), keyed as in the file.
    """

    name: str
    backend: str
    options: BackendOptions
    groups: tuple[GroupSpec, ...]
    pool: Mapping[str, Any] = field(default_factory=dict)
    balance: str = "round_robin"
    health_check: Mapping[str, Any] | None = None
    outlier_detection: Mapping[str, Any] | None = None
    retries: Mapping[str, Any] = field(default_factory=dict)
    circuit_breaker: Mapping[str, Any] = field(default_factory=dict)
    failover: Mapping[str, Any] = field(default_factory=dict)
    metrics: bool = True
    debug: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSpec:
    """A backend listening on an address, echoing or forwarding accepted streams."""

    name: str
    backend: str
    listen: str
    options: BackendOptions
    action: str = "echo"
    #: the forwarding allowlist: target name -> ``HOST:PORT``
    forward_targets: Mapping[str, str] = field(default_factory=dict)
    #: the header that names a stream's target
    forward_header: str = "x-target"
    metrics: bool = True
    debug: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class TunnelSpec:
    """A local TCP listener whose every connection becomes a stream on an upstream."""

    name: str
    listen: str
    upstream: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminSpec:
    """Where the admin endpoint listens."""

    listen: str
    allow_remote: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSpec:
    """Process-wide metric options."""

    namespace: str = "streams"
    header_label: str | None = None
    header_label_limit: int = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    """A whole topology file."""

    upstreams: tuple[UpstreamSpec, ...] = ()
    servers: tuple[ServerSpec, ...] = ()
    tunnels: tuple[TunnelSpec, ...] = ()
    admin: AdminSpec | None = None
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    #: where it came from, for messages
    source: str = "<topology>"

    def upstream(self, name: str) -> UpstreamSpec:
        """The upstream called *name*.

        :raises KeyError: if there is none
        """
        for upstream in self.upstreams:
            if upstream.name == name:
                return upstream
        raise KeyError(name)


def backend_options(section: Mapping[str, Any]) -> BackendOptions:
    """The :class:`BackendOptions` of an upstream's or server's section."""
    tls = section.get("tls")
    ssh = section.get("ssh")
    return BackendOptions(
        tls=TLSConfig(**tls) if tls is not None else None,
        ssh=SSHConfig(**ssh) if ssh is not None else None,
        raw=bool(section.get("raw", False)),
        spdy_no_flow_control=bool(section.get("spdy_no_flow_control", False)),
        settings=dict(section.get("settings", {})),
    )
