"""The JSON Schema of topology files, version 1 (``streams schema`` prints it)."""

from __future__ import annotations

from typing import Any

from ..backends import BACKEND_NAMES
from .units import DURATION_PATTERN, SIZE_PATTERN

__all__ = ["TOPOLOGY_SCHEMA"]

# "x-expected" is ours: it phrases the error an operator sees when a value does not fit
_NAME = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
    "x-expected": "a name of letters, digits, '.', '_' and '-' (at most 63)",
}
_DURATION = {
    "type": "string",
    "pattern": DURATION_PATTERN,
    "x-expected": "a duration like 5s, 250ms or 1m30s (never negative)",
}
_SIZE: dict[str, Any] = {
    "oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": SIZE_PATTERN}],
    "x-expected": "a size like 256KiB, 1MiB or 65536",
}
_COUNT = {"type": "integer", "minimum": 0}
_POSITIVE = {"type": "integer", "minimum": 1}
_ADDRESS = {"type": "string", "minLength": 1}
_HEADERS = {"type": "object", "additionalProperties": {"type": "string"}}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_TLS = _object(
    {
        "cert": {"type": "string", "description": "PEM certificate chain presented"},
        "key": {"type": "string", "description": "PEM private key of cert"},
        "ca": {"type": "string", "description": "PEM bundle of authorities to trust"},
        "insecure": {"type": "boolean", "description": "skip verification (explicit opt-out)"},
        "server_name": {"type": "string", "description": "name to verify the server against"},
    }
)
_SSH = _object(
    {
        "host_key": {"type": "string"},
        "authorized_keys": {"type": "string"},
        "identity": {"type": "string"},
        "known_hosts": {"type": "string"},
        "user": {"type": "string"},
    }
)
_SETTINGS = {
    "type": "object",
    "description": "backend settings by name (window sizes, keepalive, limits)",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}
_ENDPOINT = {
    "x-expected": "an address HOST:PORT, or a mapping with address and weight",
    "oneOf": [
        _ADDRESS,
        _object(
            {"address": _ADDRESS, "weight": {"type": "integer", "minimum": 1}},
            required=("address",),
        ),
    ],
}
_GROUP = _object(
    {
        "name": _NAME,
        "endpoints": {"type": "array", "items": _ENDPOINT, "minItems": 1},
        "resolve": _object(
            {"host": _ADDRESS, "port": {"type": "integer", "minimum": 1, "maximum": 65535},
             "interval": _DURATION},
            required=("host", "port"),
        ),
    }
)  # fmt: skip

_UPSTREAM = _object(
    {
        "name": _NAME,
        "backend": {"enum": list(BACKEND_NAMES)},
        "tls": _TLS,
        "ssh": _SSH,
        "raw": {"type": "boolean"},
        "spdy_no_flow_control": {"type": "boolean"},
        "settings": _SETTINGS,
        "groups": {"type": "array", "items": _GROUP, "minItems": 1},
        "pool": _object(
            {
                "min_connections": _COUNT,
                "max_connections_per_endpoint": _POSITIVE,
                "max_connections": _POSITIVE,
                "max_streams_per_connection": _POSITIVE,
                "idle_timeout": _DURATION,
                "open_timeout": _DURATION,
                "max_pending_opens": _COUNT,
                "connect_timeout": _DURATION,
                "backoff_initial": _DURATION,
                "backoff_max": _DURATION,
            }
        ),
        "balance": _object(
            {
                "policy": {
                    "enum": [
                        "round_robin",
                        "least_active",
                        "power_of_two",
                        "random",
                        "weighted_round_robin",
                    ]
                }
            }
        ),
        "health_check": _object(
            {
                "interval": _DURATION,
                "timeout": _DURATION,
                "healthy_threshold": _POSITIVE,
                "unhealthy_threshold": _POSITIVE,
                "kind": {"enum": ["ping", "stream"]},
                "headers": _HEADERS,
            }
        ),
        "outlier_detection": _object(
            {
                "consecutive_failures": _POSITIVE,
                "base_ejection_time": _DURATION,
                "max_ejection_time": _DURATION,
                "max_ejection_percent": {"type": "integer", "minimum": 0, "maximum": 100},
            }
        ),
        "retries": _object(
            {
                "attempts": _POSITIVE,
                "budget_percent": {"type": "number", "minimum": 0, "maximum": 100},
                "min_retries_per_second": {"type": "number", "minimum": 0},
            }
        ),
        "circuit_breaker": _object(
            {
                "max_active_streams": _POSITIVE,
                "max_pending_opens": _POSITIVE,
                "max_concurrent_retries": _POSITIVE,
            }
        ),
        "failover": _object(
            {
                "overprovisioning_factor": {"type": "number", "minimum": 1},
                "failback_hold_down": _DURATION,
            }
        ),
        "metrics": {"type": "boolean"},
        "debug": {"type": "boolean"},
    },
    required=("name", "backend", "groups"),
)

_SERVER = _object(
    {
        "name": _NAME,
        "backend": {"enum": list(BACKEND_NAMES)},
        "listen": _ADDRESS,
        "tls": _TLS,
        "ssh": _SSH,
        "raw": {"type": "boolean"},
        "spdy_no_flow_control": {"type": "boolean"},
        "settings": _SETTINGS,
        "action": {"enum": ["echo", "forward"]},
        "forward": _object(
            {
                "targets": {
                    "type": "object",
                    "description": "the allowlist: target name -> HOST:PORT",
                    "additionalProperties": _ADDRESS,
                    "minProperties": 1,
                },
                "header": {"type": "string", "minLength": 1},
            },
            required=("targets",),
        ),
        "metrics": {"type": "boolean"},
        "debug": {"type": "boolean"},
    },
    required=("name", "backend", "listen"),
)

_TUNNEL = _object(
    {
        "name": _NAME,
        "listen": _ADDRESS,
        "upstream": _NAME,
        "headers": _HEADERS,
    },
    required=("name", "listen", "upstream"),
)

TOPOLOGY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://streams.invalid/schema/topology-1.json",
    "title": "streams topology",
    "description": "Upstreams, servers, tunnels and the admin endpoint of one streams process.",
    **_object(
        {
            "version": {"const": 1},
            "admin": _object(
                {"listen": _ADDRESS, "allow_remote": {"type": "boolean"}}, required=("listen",)
            ),
            "metrics": _object(
                {
                    "namespace": _NAME,
                    "header_label": {"type": "string", "minLength": 1},
                    "header_label_limit": _POSITIVE,
                }
            ),
            "upstreams": {"type": "array", "items": _UPSTREAM},
            "servers": {"type": "array", "items": _SERVER},
            "tunnels": {"type": "array", "items": _TUNNEL},
        },
        required=("version",),
    ),
}
