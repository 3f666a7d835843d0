"""Topologies: YAML files that describe upstreams, servers, tunnels and the admin endpoint.

:func:`load_topology` reads and validates one into a :class:`Topology`;
:data:`TOPOLOGY_SCHEMA` is its JSON Schema.
"""

from .loader import load_topology, parse_topology
from .model import (
    AdminSpec,
    EndpointSpec,
    GroupSpec,
    MetricsSpec,
    ServerSpec,
    Topology,
    TunnelSpec,
    UpstreamSpec,
)
from .schema import TOPOLOGY_SCHEMA
from .units import parse_duration, parse_size

__all__ = [
    "TOPOLOGY_SCHEMA",
    "AdminSpec",
    "EndpointSpec",
    "GroupSpec",
    "MetricsSpec",
    "ServerSpec",
    "Topology",
    "TunnelSpec",
    "UpstreamSpec",
    "load_topology",
    "parse_duration",
    "parse_size",
    "parse_topology",
]
