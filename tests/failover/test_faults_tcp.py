"""Failover over the framer on TCP, with faults injected by the loopback proxy while load
runs: a killed primary, a black-holed primary, every endpoint down; and the conformance
suite through failover over two framer pools."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

from streams import Headers, StreamProvider
from streams._core.backend import BackendOptions
from streams.backends import framer
from streams.cli.echo import echo_handler, echo_stream
from streams.testing import ConformanceOptions, ProviderConformance
from streams.wrappers.failover import Failover, NoEndpointAvailable
from streams.wrappers.health import FailoverOptions, HealthCheckOptions
from streams.wrappers.pool import Pool, PoolOptions
from tests.failover.pairs import failover_pair
from tests.failover.test_failover import load_running
from tests.faults import FaultProxy, fault_proxy

# keepalive and open timeouts short enough that a silent peer is noticed within a second
FRAMER = BackendOptions(
    settings={"keepalive_interval": 0.2, "ping_timeout": 0.5, "open_timeout": 1.0}
)
POOL = PoolOptions(min_connections=1, backoff_initial=0.05, backoff_max=0.3, idle_timeout=None)
OPTIONS = FailoverOptions(
    health_check=HealthCheckOptions(
        interval=0.1, timeout=0.3, healthy_threshold=1, unhealthy_threshold=1
    ),
    failback_hold_down=0.3,
)


@asynccontextmanager
async def echo_server(name: str) -> AsyncIterator[int]:
    """A framer echo server that names itself in its response headers; yields its port."""

    def handler(headers: Headers) -> tuple[Headers, bool]:
        response, accept = echo_handler(headers)
        response["x-server"] = name
        return response, accept

    async with (
        framer.BACKEND.serve("127.0.0.1:0", FRAMER, handler) as server,
        anyio.create_task_group() as group,
    ):
        group.start_soon(server.listener.serve, echo_stream, group)
        yield int(server.address.rsplit(":", 1)[1])
        group.cancel_scope.cancel()


@asynccontextmanager
async def two_behind_proxies() -> AsyncIterator[tuple[FaultProxy, FaultProxy, Failover]]:
    async with (
        echo_server("primary") as primary_port,
        echo_server("secondary") as secondary_port,
        fault_proxy("127.0.0.1", primary_port) as primary,
        fault_proxy("127.0.0.1", secondary_port) as secondary,
    ):
        groups: list[list[tuple[str, StreamProvider]]] = []
        for proxy in (primary, secondary):
            address = f"127.0.0.1:{proxy.port}"
            groups.append([(address, Pool([framer.BACKEND.dialer(address, FRAMER)], options=POOL))])
        async with Failover(groups, OPTIONS, name="api") as failover:
            yield primary, secondary, failover


async def test_killed_primary_loses_no_open_and_fails_back() -> None:
    with anyio.fail_after(40):
        async with two_behind_proxies() as (primary, _secondary, failover):
            async with load_running(failover, rate=250) as load:
                await anyio.sleep(0.6)
                killed = anyio.current_time()
                await primary.refuse()
                await primary.reset_all()
                await anyio.sleep(1.2)
                restarted = anyio.current_time()
                await primary.accept_again()
                await anyio.sleep(2.5)
                ended = anyio.current_time()
    assert load.failures == [], load.failures[:3]
    assert len(load.served) >= 0.8 * 250 * 4.3
    assert load.servers_between(0, killed) == {"primary"}
    assert load.servers_between(killed + 0.25, restarted) == {"secondary"}
    # back once the pool reconnected (backoff up to 0.3 s), a check passed and the
    # hold-down (0.3 s) passed; how soon depends on a busy machine, so look at the end
    assert load.servers_between(ended - 0.8, ended) == {"primary"}
    assert restarted < ended - 0.8
    assert failover.failovers == 1


async def test_black_holed_primary_is_detected_and_traffic_moves() -> None:
    with anyio.fail_after(40):
        async with two_behind_proxies() as (primary, _secondary, failover):
            async with load_running(failover, rate=250) as load:
                await anyio.sleep(0.5)
                silenced = anyio.current_time()
                primary.black_hole = True
                primary.stalled = True
                await anyio.sleep(2.5)
                ended = anyio.current_time()
                primary.stalled = False
    # health check timeout + interval, and the open timeout for opens caught in flight
    moved_by = silenced + 0.3 + 0.1 + 0.2
    assert load.servers_between(moved_by, ended) == {"secondary"}
    late = [(at - silenced, error) for at, error in load.failures if at >= moved_by]
    assert late == [], (
        f"{len(late)} opens failed after the primary was known to be silent "
        f"(primary proxy {primary.port}, secondary proxy {_secondary.port}): {late[:2]}"
    )
    assert all(at >= silenced - 0.1 for at, _ in load.failures)


async def test_every_endpoint_down_fails_fast_and_counts_dials() -> None:
    with anyio.fail_after(30):
        async with two_behind_proxies() as (primary, secondary, failover):
            stream = await failover.open_stream()
            await stream.aclose()
            for proxy in (primary, secondary):
                await proxy.refuse()
                await proxy.reset_all()
            await anyio.sleep(0.3)
            before = primary.accepted + secondary.accepted
            errors: list[NoEndpointAvailable] = []
            started = anyio.current_time()
            for _ in range(100):
                with contextlib.suppress(NoEndpointAvailable):
                    await failover.open_stream()
                    raise AssertionError("an open succeeded with every endpoint down")
                errors.append(NoEndpointAvailable("api", {}))
            elapsed = anyio.current_time() - started
            try:
                await failover.open_stream()
            except NoEndpointAvailable as exc:
                last = exc
            attempts = primary.accepted + secondary.accepted - before
    assert elapsed < 3, f"100 failing opens took {elapsed:.1f} s"
    assert f"127.0.0.1:{primary.port}" in str(last) and f"127.0.0.1:{secondary.port}" in str(last)
    # refused connections never reach the proxy; what gets through is bounded by backoff
    assert attempts == 0


async def abort_framer(provider: StreamProvider) -> None:
    transport: Any = provider._transport  # type: ignore[attr-defined]
    with contextlib.suppress(anyio.TypedAttributeLookupError, OSError):
        raw = transport.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await anyio.aclose_forcefully(transport)


class TestFailoverOverFramerPools(ProviderConformance):
    options = ConformanceOptions(max_buffered_per_stream=4 * 1024 * 1024)

    def provider_pair(self):  # type: ignore[no-untyped-def]
        return failover_pair(framer.BACKEND, "127.0.0.1:0", break_link=abort_framer)


pytestmark = pytest.mark.anyio
