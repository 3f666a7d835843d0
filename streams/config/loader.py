"""Loading topology files: YAML with the line of every value, JSON Schema validation, and
one clear error that names the file, the line, the path of the bad value and what was
expected."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match

from .._core.errors import ConfigError
from .._core.headers import is_sensitive_header
from .._core.transport import LOOPBACK_HOSTS, Address
from .model import (
    AdminSpec,
    EndpointSpec,
    GroupSpec,
    MetricsSpec,
    ServerSpec,
    Topology,
    TunnelSpec,
    UpstreamSpec,
    backend_options,
)
from .schema import TOPOLOGY_SCHEMA
from .units import parse_duration

__all__ = ["load_topology", "parse_topology"]

PathKey = tuple[str | int, ...]

_VALIDATOR = jsonschema.Draft202012Validator(TOPOLOGY_SCHEMA)

#: option sections whose durations are converted to seconds
_DURATION_FIELDS = {
    "idle_timeout",
    "open_timeout",
    "connect_timeout",
    "backoff_initial",
    "backoff_max",
    "interval",
    "timeout",
    "base_ejection_time",
    "max_ejection_time",
    "failback_hold_down",
}


class _Positions:
    """The line of every value in the document, by path."""

    def __init__(self) -> None:
        self.lines: dict[PathKey, int] = {}

    def line(self, path: PathKey) -> int | None:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)


#: the most values a topology may expand to; aliases can make a short file expand to
#: billions (found by fuzzing)
_MAX_VALUES = 100_000


def _build(node: yaml.Node, path: PathKey, positions: _Positions, source: str) -> Any:
    positions.lines[path] = node.start_mark.line + 1
    if len(positions.lines) > _MAX_VALUES:
        raise ConfigError(
            f"the topology expands to more than {_MAX_VALUES} values (aliases repeated?)",
            path=_format_path(path),
            file=source,
            line=node.start_mark.line + 1,
        )
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if not isinstance(key, str):
                raise ConfigError(
                    f"keys must be strings, got {key!r}",
                    path=_format_path(path),
                    file=source,
                    line=key_node.start_mark.line + 1,
                )
            if key in result:
                raise ConfigError(
                    f"duplicate key {key!r}",
                    path=_format_path((*path, key)),
                    file=source,
                    line=key_node.start_mark.line + 1,
                )
            result[key] = _build(value_node, (*path, key), positions, source)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, index), positions, source) for index, item in enumerate(node.value)
        ]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _format_path(path: PathKey) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _describe(error: ValidationError) -> tuple[PathKey, str]:
    """The path of the bad value and a sentence for people."""
    path: PathKey = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    expected = schema.get("x-expected")
    instance = error.instance
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return path, f"missing required field {missing!r}"
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(instance) - set(allowed)) if isinstance(instance, Mapping) else []
        name = extra[0] if extra else "?"
        return (*path, name), f"unknown field {name!r}; expected one of: {', '.join(allowed)}"
    if error.validator == "enum":
        choices = ", ".join(str(choice) for choice in schema.get("enum", ()))
        what = "backend" if path and path[-1] == "backend" else "value"
        return path, f"unknown {what} {instance!r}; expected one of: {choices}"
    if error.validator == "const":
        return path, f"unsupported value {instance!r}; expected {schema.get('const')!r}"
    if expected is not None:
        return path, f"expected {expected}, got {instance!r}"
    if error.validator == "type":
        wanted = schema.get("type")
        wanted_text = " or ".join(wanted) if isinstance(wanted, list) else str(wanted)
        return path, f"expected {wanted_text}, got {_json_type(instance)} ({instance!r})"
    if error.validator in ("minimum", "maximum"):
        return path, f"{instance!r} is out of range ({error.validator} {error.validator_value})"
    if error.validator == "minItems":
        return path, f"needs at least {error.validator_value} item(s)"
    return path, error.message


def parse_topology(text: str, *, source: str = "<topology>") -> Topology:
    """Parse and validate a topology from YAML *text*.

    :raises ~streams.ConfigError: for the first problem, with file, line and path
    """
    positions = _Positions()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            raise ConfigError("the topology is empty", file=source, line=1)
        document = _build(node, (), positions, source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"not valid YAML: {exc.problem}", file=source, line=line) from None
    except yaml.YAMLError as exc:
        # a ReaderError (a character YAML does not allow) has no mark (found by fuzzing)
        raise ConfigError(f"not valid YAML: {exc}", file=source) from None
    except RecursionError:
        # both the YAML composer and _build recurse once per nesting level
        raise ConfigError("the topology is nested too deeply", file=source) from None

    error = best_match(_VALIDATOR.iter_errors(document), key=_relevance)
    if error is not None:
        path, message = _describe(error)
        raise ConfigError(
            message, path=_format_path(path), file=source, line=positions.line(path)
        ) from None

    def fail(path: PathKey, message: str) -> ConfigError:
        return ConfigError(message, path=_format_path(path), file=source, line=positions.line(path))

    return _to_model(document, fail, source)


def _relevance(error: ValidationError) -> tuple[int, int]:
    # prefer the deepest error, and one phrased by our own x-expected
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    return (-len(error.absolute_path), 0 if "x-expected" in schema else 1)


def load_topology(path: str | Path) -> Topology:
    """Load and validate the topology file at *path*.

    :raises ~streams.ConfigError: if it cannot be read or is invalid
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the topology: {exc.strerror}", file=str(path)) from None
    return parse_topology(text, source=str(path))


def _convert(section: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: parse_duration(value) if key in _DURATION_FIELDS else value
        for key, value in section.items()
    }


def _to_model(document: Mapping[str, Any], fail: Any, source: str) -> Topology:
    for kind in ("upstreams", "servers", "tunnels"):
        seen: dict[str, int] = {}
        for index, item in enumerate(document.get(kind, [])):
            if item["name"] in seen:
                raise fail(
                    (kind, index, "name"),
                    f"duplicate name {item['name']!r} (also {kind}[{seen[item['name']]}])",
                )
            seen[item["name"]] = index
    upstream_names = {item["name"] for item in document.get("upstreams", [])}

    server_names = {item["name"] for item in document.get("servers", [])}

    def address(path: PathKey, text: str) -> str:
        if text.startswith("server:") and path[0] == "upstreams":
            # an endpoint that is one of this topology's own servers, wherever it listens
            if text[7:] not in server_names:
                known = ", ".join(sorted(server_names)) or "none"
                raise fail(path, f"no server named {text[7:]!r} (servers: {known})")
            return text
        try:
            return str(Address.parse(text))
        except ConfigError as exc:
            raise fail(path, exc.message) from None

    upstreams = []
    for index, item in enumerate(document.get("upstreams", [])):
        groups = []
        for number, group in enumerate(item["groups"]):
            endpoints = tuple(
                EndpointSpec(
                    address=address(
                        ("upstreams", index, "groups", number, "endpoints", position),
                        entry if isinstance(entry, str) else entry["address"],
                    ),
                    weight=1 if isinstance(entry, str) else int(entry.get("weight", 1)),
                )
                for position, entry in enumerate(group.get("endpoints", []))
            )
            resolve = group.get("resolve")
            if not endpoints and resolve is None:
                raise fail(
                    ("upstreams", index, "groups", number),
                    "a group needs endpoints or resolve",
                )
            groups.append(
                GroupSpec(
                    name=group.get("name", f"priority-{number}"),
                    endpoints=endpoints,
                    resolve=(
                        (
                            resolve["host"],
                            resolve["port"],
                            parse_duration(resolve.get("interval", "30s")),
                        )
                        if resolve
                        else None
                    ),
                )
            )
        upstreams.append(
            UpstreamSpec(
                name=item["name"],
                backend=item["backend"],
                options=backend_options(item),
                groups=tuple(groups),
                pool=_convert(item.get("pool", {})),
                balance=item.get("balance", {}).get("policy", "round_robin"),
                health_check=_convert(item["health_check"]) if "health_check" in item else None,
                outlier_detection=(
                    _convert(item["outlier_detection"]) if "outlier_detection" in item else None
                ),
                retries=_convert(item.get("retries", {})),
                circuit_breaker=_convert(item.get("circuit_breaker", {})),
                failover=_convert(item.get("failover", {})),
                metrics=item.get("metrics", True),
                debug=item.get("debug", True),
            )
        )

    servers = []
    for index, item in enumerate(document.get("servers", [])):
        action = item.get("action", "echo")
        forward = item.get("forward", {})
        if action == "forward" and not forward:
            raise fail(("servers", index, "action"), "action forward needs a forward section")
        targets = {
            name: address(("servers", index, "forward", "targets", name), target)
            for name, target in forward.get("targets", {}).items()
        }
        servers.append(
            ServerSpec(
                name=item["name"],
                backend=item["backend"],
                listen=address(("servers", index, "listen"), item["listen"]),
                options=backend_options(item),
                action=action,
                forward_targets=targets,
                forward_header=forward.get("header", "x-target"),
                metrics=item.get("metrics", True),
                debug=item.get("debug", True),
            )
        )

    tunnels = []
    for index, item in enumerate(document.get("tunnels", [])):
        if item["upstream"] not in upstream_names:
            known = ", ".join(sorted(upstream_names)) or "none"
            raise fail(
                ("tunnels", index, "upstream"),
                f"no upstream named {item['upstream']!r} (upstreams: {known})",
            )
        tunnels.append(
            TunnelSpec(
                name=item["name"],
                listen=address(("tunnels", index, "listen"), item["listen"]),
                upstream=item["upstream"],
                headers=dict(item.get("headers", {})),
            )
        )

    admin = document.get("admin")
    if admin and not admin.get("allow_remote", False):
        host = Address.parse(admin["listen"]).host
        if host not in LOOPBACK_HOSTS:
            raise fail(
                ("admin", "listen"),
                "the admin endpoint exposes internals and binds to loopback only; "
                "set allow_remote: true to expose it",
            )
    metrics = document.get("metrics", {})
    label = metrics.get("header_label")
    if label is not None and is_sensitive_header(label):
        raise fail(
            ("metrics", "header_label"),
            f"{label!r} carries credentials; its values must not become a metric label",
        )
    return Topology(
        upstreams=tuple(upstreams),
        servers=tuple(servers),
        tunnels=tuple(tunnels),
        admin=(
            AdminSpec(
                listen=address(("admin", "listen"), admin["listen"]),
                allow_remote=admin.get("allow_remote", False),
            )
            if admin
            else None
        ),
        metrics=MetricsSpec(**metrics),
        source=source,
    )
