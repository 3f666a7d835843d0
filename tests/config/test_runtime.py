"""A topology running in process: servers, a failover upstream, a tunnel and the admin
endpoint, driven as a user would, and reloaded without dropping streams."""

from __future__ import annotations

import json
import urllib.request
from itertools import count

import anyio
import anyio.abc
import pytest

from streams.config import parse_topology
from streams.config.runtime import Runtime
from streams.testing import read_all

pytestmark = pytest.mark.anyio
_names = count()


def topology_text(suffix: str, *, servers: tuple[str, ...] = ("a", "b")) -> str:
    server_lines = "".join(
        f"  - name: echo-{name}\n    backend: memory\n    listen: memory:{name}-{suffix}\n"
        for name in servers
    )
    return f"""\
version: 1
admin:
  listen: 127.0.0.1:0
servers:
{server_lines}upstreams:
  - name: api
    backend: memory
    groups:
      - endpoints: [memory:a-{suffix}]
      - endpoints: [memory:b-{suffix}]
    health_check: {{interval: 100ms, timeout: 300ms, healthy_threshold: 1, unhealthy_threshold: 1}}
    failover: {{failback_hold_down: 200ms}}
    pool: {{backoff_initial: 50ms, backoff_max: 200ms}}
tunnels:
  - name: web
    listen: 127.0.0.1:0
    upstream: api
    headers: {{x-app: demo}}
"""


async def through_tunnel(address: str, payload: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    async with await anyio.connect_tcp(host, int(port)) as connection:
        await connection.send(payload)
        await connection.send_eof()
        received = b""
        while True:
            try:
                received += await connection.receive()
            except anyio.EndOfStream:
                return received


async def get_json(url: str) -> object:
    def fetch() -> object:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    return await anyio.to_thread.run_sync(fetch)


async def get_text(url: str) -> str:
    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    return await anyio.to_thread.run_sync(fetch)


async def test_a_topology_runs_and_fails_over() -> None:
    suffix = f"rt{next(_names)}"
    topology = parse_topology(topology_text(suffix))
    with anyio.fail_after(30):
        async with Runtime(topology) as runtime:
            tunnel = runtime.tunnel_addresses["web"]
            assert await through_tunnel(tunnel, b"hello") == b"hello"
            metrics = await get_text(f"http://{runtime.admin_address}/metrics")
            assert (
                'streams_opened_total{backend="memory",direction="outbound",outcome="accepted",upstream="api"}'
                in metrics
            )
            explained = await get_json(f"http://{runtime.admin_address}/explain?upstream=api")
            assert explained["endpoint"] == f"memory:a-{suffix}"  # type: ignore[index]

            # a connection held open through the tunnel while the primary dies
            host, port = tunnel.rsplit(":", 1)
            held = await anyio.connect_tcp(host, int(port))
            await held.send(b"ping")
            assert await held.receive() == b"ping"
            assert await runtime.kill_server("echo-a")
            with anyio.fail_after(5):
                while runtime.explain("api")["endpoint"] != f"memory:b-{suffix}":
                    await anyio.sleep(0.05)
            for _ in range(20):
                assert await through_tunnel(tunnel, b"again") == b"again"
            with pytest.raises((anyio.BrokenResourceError, OSError)):
                for _ in range(50):
                    await held.send(b"x")
                    await held.receive()
            await held.aclose()


async def test_reload_applies_changes_and_keeps_open_streams() -> None:
    suffix = f"rl{next(_names)}"
    topology = parse_topology(topology_text(suffix))
    with anyio.fail_after(30):
        async with Runtime(topology) as runtime:
            api = runtime.upstream("api")
            stream = await api.open_stream()
            await stream.send(b"before")
            changed = parse_topology(
                topology_text(suffix)
                .replace(f"- endpoints: [memory:a-{suffix}]", f"- endpoints: [memory:b-{suffix}]")
                .replace(f"      - endpoints: [memory:b-{suffix}]\n", "", 1)
            )
            changes = await runtime.reload(changed)
            assert "upstream api changed" in changes
            await stream.send(b" after")
            await stream.send_eof()
            assert await read_all(stream) == b"before after"
            await stream.aclose()
            fresh = await api.open_stream()
            assert fresh.response_headers is not None
            assert fresh.response_headers.get("x-echo-x-tunnel") is None
            await fresh.aclose()
            assert runtime.explain("api")["endpoint"] == f"memory:b-{suffix}"
