"""Topology files: the good ones load into typed data; each bad one gives one clear error
with the file, the line, the path of the bad value and what was expected."""

import json
import textwrap

import jsonschema
import pytest

from streams import ConfigError
from streams.config import TOPOLOGY_SCHEMA, parse_duration, parse_size, parse_topology

GOOD = """\
version: 1
admin:
  listen: 127.0.0.1:9901
metrics:
  header_label: x-tenant
upstreams:
  - name: api
    backend: framer
    groups:
      - endpoints: [127.0.0.1:7001, {address: "127.0.0.1:7003", weight: 3}]
      - name: backup
        endpoints: [127.0.0.1:7002]
    pool: {max_streams_per_connection: 100, idle_timeout: 1m30s}
    balance: {policy: weighted_round_robin}
    health_check: {interval: 1s, timeout: 250ms}
    settings: {receive_window: 262144}
servers:
  - name: echo
    backend: framer
    listen: 127.0.0.1:7001
  - name: gateway
    backend: http2
    listen: "[::1]:7443"
    tls: {cert: cert.pem, key: key.pem}
    action: forward
    forward:
      targets: {web: 127.0.0.1:8080}
tunnels:
  - name: web
    listen: 127.0.0.1:8000
    upstream: api
    headers: {x-target: web}
"""


def test_a_good_topology_loads_into_typed_data() -> None:
    topology = parse_topology(GOOD, source="t.yaml")
    api = topology.upstream("api")
    assert [g.name for g in api.groups] == ["priority-0", "backup"]
    assert [(e.address, e.weight) for e in api.groups[0].endpoints] == [
        ("127.0.0.1:7001", 1),
        ("127.0.0.1:7003", 3),
    ]
    assert api.pool == {"max_streams_per_connection": 100, "idle_timeout": 90.0}
    assert api.balance == "weighted_round_robin"
    assert api.health_check == {"interval": 1.0, "timeout": 0.25}
    assert api.options.settings == {"receive_window": 262144}
    gateway = topology.servers[1]
    assert gateway.listen == "[::1]:7443"
    assert gateway.options.tls is not None
    assert gateway.options.tls.cert == "cert.pem"
    assert gateway.forward_targets == {"web": "127.0.0.1:8080"}
    assert topology.tunnels[0].headers == {"x-target": "web"}
    assert topology.admin is not None
    assert topology.admin.listen == "127.0.0.1:9901"
    assert topology.metrics.header_label == "x-tenant"


def error_for(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_topology(textwrap.dedent(text), source="bad.yaml")
    return caught.value


BASE = """\
version: 1
upstreams:
  - name: api
    backend: framer
    groups:
      - endpoints: [127.0.0.1:7001]
"""


@pytest.mark.parametrize(
    ("text", "line", "path", "words"),
    [
        pytest.param(
            BASE.replace("- name: api", "- name: 5"),
            3, "upstreams[0].name", "expected a name", id="wrong-type",
        ),
        pytest.param(
            BASE.replace("      - endpoints: [127.0.0.1:7001]\n", "      - name: empty\n"),
            6, "upstreams[0].groups[0]", "needs endpoints", id="missing-endpoint",
        ),
        pytest.param(
            BASE.replace("backend: framer", "backend: carrier-pigeon"),
            4, "upstreams[0].backend", "unknown backend 'carrier-pigeon'", id="unknown-backend",
        ),
        pytest.param(
            BASE + "    pool: {open_timeout: -5s}\n",
            7, "upstreams[0].pool.open_timeout", "never negative", id="negative-timeout",
        ),
        pytest.param(
            BASE + BASE.split("upstreams:\n")[1],
            7, "upstreams[1].name", "duplicate name 'api'", id="duplicate-name",
        ),
        pytest.param(
            BASE + "tunnels:\n  - name: t\n    listen: 127.0.0.1:1\n    upstream: nowhere\n",
            10, "tunnels[0].upstream", "no upstream named 'nowhere'", id="tunnel-to-nothing",
        ),
        pytest.param(
            BASE.replace("    groups:", "    colour: blue\n    groups:"),
            5, "upstreams[0].colour", "unknown field 'colour'", id="unknown-field",
        ),
        pytest.param(
            BASE.replace("version: 1", "version: 2"),
            1, "version", "unsupported value 2", id="wrong-version",
        ),
        pytest.param(
            BASE.replace("127.0.0.1:7001", "127.0.0.1:http"),
            6, "upstreams[0].groups[0].endpoints[0]", "port must be a number", id="bad-address",
        ),
        pytest.param(
            BASE.replace("    groups:", "    backend: http2\n    groups:"),
            5, "upstreams[0].backend", "duplicate key", id="duplicate-key",
        ),
        pytest.param(
            "version: 1\nupstreams: [\n", 3, "", "not valid YAML", id="broken-yaml",
        ),
    ],
)  # fmt: skip
def test_bad_topologies_give_one_clear_error(text: str, line: int, path: str, words: str) -> None:
    error = error_for(text)
    assert error.file == "bad.yaml"
    assert error.line == line, str(error)
    assert error.path == path, str(error)
    assert words in error.message, str(error)
    assert str(error).startswith(f"bad.yaml:{line}: ")


def test_the_schema_is_valid_json_schema_and_serialisable() -> None:
    jsonschema.Draft202012Validator.check_schema(TOPOLOGY_SCHEMA)
    assert json.loads(json.dumps(TOPOLOGY_SCHEMA)) == TOPOLOGY_SCHEMA


@pytest.mark.parametrize(
    ("text", "seconds"), [("5s", 5.0), ("250ms", 0.25), ("1m30s", 90.0), ("2h", 7200.0), (3, 3.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"), [("256KiB", 262144), ("1MiB", 1048576), ("1MB", 10**6), ("512", 512), (7, 7)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["-1s", "5", "5 parsecs", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
