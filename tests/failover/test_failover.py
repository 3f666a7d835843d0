"""Failover under scripted faults with load running, over the memory backend (the same
scenarios run over the framer on TCP with the fault proxy in test_faults_tcp.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import pytest

from streams import ConnectionLost, ErrorCode, Headers, Stream, StreamProvider
from streams._core.backend import Dialer
from streams.backends import memory
from streams.testing import read_all
from streams.wrappers.failover import Failover, FailoverEvent, NoEndpointAvailable
from streams.wrappers.health import FailoverOptions, HealthCheckOptions, OutlierOptions
from streams.wrappers.pool import Pool, PoolOptions
from tests.pool.helpers import farm, unique

pytestmark = pytest.mark.anyio

# failover endpoints keep a warm connection: a ping health check needs one to ping
POOL = PoolOptions(min_connections=1, backoff_initial=0.05, backoff_max=0.3, idle_timeout=None)
FAST = FailoverOptions(
    health_check=HealthCheckOptions(
        interval=0.1, timeout=0.3, healthy_threshold=1, unhealthy_threshold=1
    ),
    failback_hold_down=0.3,
    outlier_detection=OutlierOptions(consecutive_failures=3, base_ejection_time=0.5),
)


class CountingDialer(Dialer):
    """Counts connection attempts, to show there is no retry storm."""

    def __init__(self, inner: Dialer) -> None:
        self.inner = inner
        self.endpoint = inner.endpoint
        self.attempts = 0

    def dial(self) -> AbstractAsyncContextManager[StreamProvider]:
        self.attempts += 1
        return self.inner.dial()


def single(address: str) -> tuple[str, Pool, CountingDialer]:
    dialer = CountingDialer(memory.BACKEND.dialer(address))
    return address, Pool([dialer], options=POOL), dialer


@dataclass
class Load:
    """Opens streams at a steady rate, each echoing data; records who served them."""

    provider: StreamProvider
    served: list[tuple[float, str]] = field(default_factory=list)
    failures: list[tuple[float, BaseException]] = field(default_factory=list)

    async def one(self) -> None:
        started = anyio.current_time()
        try:
            stream = await self.provider.open_stream({"x-load": "1"})
            async with stream:
                payload = b"p" * 200
                await stream.send(payload)
                await stream.send_eof()
                assert await read_all(stream) == payload
            server = (stream.response_headers or Headers()).get("x-server", "?")
            self.served.append((started, server))
        except Exception as exc:
            self.failures.append((started, exc))

    async def run(self, rate: float, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as group:
            task_status.started()
            started = anyio.current_time()
            for sent in range(1_000_000):
                # paced by the clock, not by sleep's granularity, so the rate holds
                await anyio.sleep_until(started + sent / rate)
                group.start_soon(self.one)

    def servers_between(self, start: float, end: float) -> set[str]:
        return {server for at, server in self.served if start <= at < end}


@asynccontextmanager
async def load_running(provider: StreamProvider, rate: float = 300) -> AsyncIterator[Load]:
    load = Load(provider)
    async with anyio.create_task_group() as group:
        await group.start(load.run, rate)
        yield load
        group.cancel_scope.cancel()


async def test_killing_the_primary_loses_no_open_and_traffic_fails_back() -> None:
    primary, secondary = unique("primary"), unique("secondary")
    events: list[FailoverEvent] = []
    with anyio.fail_after(30):
        async with farm(primary, secondary) as servers:
            p, s = single(primary), single(secondary)
            async with Failover([[p[:2]], [s[:2]]], FAST, name="api") as failover:
                failover.subscribe(events.append)
                async with load_running(failover) as load:
                    await anyio.sleep(0.5)
                    killed = anyio.current_time()
                    await servers.stop(primary)
                    await anyio.sleep(1.0)
                    restarted = anyio.current_time()
                    await servers.start(primary)
                    await anyio.sleep(1.5)
                    ended = anyio.current_time()
    assert load.failures == [], load.failures[:3]
    assert len(load.served) >= 0.8 * 300 * 3, "the load generator did not keep its rate"
    assert load.servers_between(0, killed) == {primary}
    # within one health-check interval (plus the time an open takes) traffic has moved
    assert load.servers_between(killed + 0.15, restarted) == {secondary}
    # it moves back once the primary passed its checks and the hold-down
    assert load.servers_between(restarted + 0.3 + 0.4, ended) == {primary}
    kinds = [event.kind for event in events]
    assert "failed_over" in kinds
    assert "failed_back" in kinds
    assert kinds.index("failed_over") < kinds.index("failed_back")
    assert failover.failovers == 1


async def test_every_endpoint_down_fails_fast_naming_each_without_a_retry_storm() -> None:
    first, second = unique("down-a"), unique("down-b")
    with anyio.fail_after(20):
        async with farm(first, second) as servers:
            a, b = single(first), single(second)
            async with Failover([[a[:2]], [b[:2]]], FAST, name="api") as failover:
                stream = await failover.open_stream()
                await stream.aclose()
                await servers.stop(first)
                await servers.stop(second)
                dials_before = a[2].attempts + b[2].attempts
                errors = []
                started = anyio.current_time()
                for _ in range(200):
                    try:
                        await failover.open_stream()
                    except NoEndpointAvailable as exc:
                        errors.append(exc)
                    await anyio.sleep(0.005)
                elapsed = anyio.current_time() - started
                dials = a[2].attempts + b[2].attempts - dials_before
    assert len(errors) == 200
    message = str(errors[-1])
    assert first in message and second in message, message
    assert set(errors[-1].reasons) == {first, second}
    assert elapsed < 5, f"failing opens took {elapsed:.1f} s: they should fail fast"
    # exponential backoff: a handful of dials per endpoint, not one per open
    assert dials < 30, f"{dials} connection attempts for 200 failed opens"


def resetting_server(address: str) -> Any:
    """A server that accepts every stream and resets it at once (an unhealthy backend)."""

    @asynccontextmanager
    async def serve() -> AsyncIterator[None]:
        async def reset(stream: Stream) -> None:
            await stream.reset(ErrorCode.INTERNAL_ERROR)

        async with (
            memory.BACKEND.serve(address) as server,
            anyio.create_task_group() as group,
        ):
            group.start_soon(server.listener.serve, reset, group)
            yield
            group.cancel_scope.cancel()

    return serve()


async def drive(failover: Failover, count: int) -> None:
    for _ in range(count):
        try:
            stream = await failover.open_stream()
            async with stream:
                await stream.send(b"x")
                await stream.send_eof()
                await read_all(stream)
        except Exception:
            pass
        await anyio.sleep(0.01)


async def test_a_flapping_endpoint_is_ejected_for_growing_times() -> None:
    bad, good = unique("flappy"), unique("steady")
    options = FailoverOptions(
        outlier_detection=OutlierOptions(
            consecutive_failures=2, base_ejection_time=0.2, max_ejection_time=2.0
        ),
        failback_hold_down=0.0,
    )
    events: list[FailoverEvent] = []
    with anyio.fail_after(30):
        async with resetting_server(bad), farm(good):
            group = [single(bad)[:2], single(good)[:2]]
            async with Failover([group], options, name="api") as failover:
                failover.subscribe(events.append)
                await drive(failover, 150)
    ejections = [event.detail["seconds"] for event in events if event.kind == "ejected"]
    assert [event.endpoint for event in events if event.kind == "ejected"] == [bad] * len(ejections)
    assert len(ejections) >= 3, events
    assert ejections[:3] == pytest.approx([0.2, 0.4, 0.8], rel=0.05)
    assert any(event.kind == "restored" for event in events)


async def test_never_more_than_the_maximum_share_of_a_group_is_ejected() -> None:
    addresses = [unique("bad") for _ in range(4)]
    options = FailoverOptions(
        outlier_detection=OutlierOptions(
            consecutive_failures=1, base_ejection_time=5, max_ejection_percent=50
        )
    )
    with anyio.fail_after(30):
        async with (
            resetting_server(addresses[0]),
            resetting_server(addresses[1]),
            resetting_server(addresses[2]),
            resetting_server(addresses[3]),
        ):
            group = [single(address)[:2] for address in addresses]
            async with Failover([group], options, name="api") as failover:
                await drive(failover, 40)
                ejected = [
                    e["endpoint"]
                    for e in failover.describe()["groups"][0]["endpoints"]
                    if e["ejected"]
                ]
    assert len(ejected) == 2, ejected


async def test_a_stream_cut_mid_transfer_errors_on_both_sides_without_duplicates() -> None:
    address = unique("cut")
    seen: dict[str, Any] = {}

    async def record(stream: Stream) -> None:
        received = bytearray()
        try:
            while True:
                received += await stream.receive()
                if len(received) > 100_000 and "cut" not in seen:
                    seen["cut"] = True
                    for provider in server.connections:
                        assert isinstance(provider, memory.MemoryProvider)
                        provider._break(ConnectionLost("the connection died"))
        except (anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            seen["server error"] = exc
        seen["server bytes"] = bytes(received)

    with anyio.fail_after(20):
        async with (
            memory.BACKEND.serve(address) as server,
            anyio.create_task_group() as group,
        ):
            group.start_soon(server.listener.serve, record, group)
            async with Failover([[single(address)[:2]]], FAST) as failover:
                stream = await failover.open_stream()
                sent = bytearray()
                client_error: BaseException | None = None
                try:
                    for index in range(10_000):
                        chunk = index.to_bytes(4, "big") * 256
                        await stream.send(chunk)
                        sent += chunk
                except anyio.BrokenResourceError as exc:
                    client_error = exc
                await stream.aclose()
                with anyio.fail_after(5):
                    while "server bytes" not in seen:
                        await anyio.sleep(0.01)
            group.cancel_scope.cancel()
    assert isinstance(client_error, anyio.BrokenResourceError), client_error
    assert isinstance(seen["server error"], anyio.BrokenResourceError), seen["server error"]
    assert bytes(sent).startswith(seen["server bytes"]), "bytes were duplicated or reordered"


async def test_explain_says_where_the_next_stream_goes_and_why() -> None:
    primary, secondary = unique("explain-p"), unique("explain-s")
    with anyio.fail_after(20):
        async with farm(primary, secondary) as servers:
            async with Failover([[single(primary)[:2]], [single(secondary)[:2]]], FAST) as failover:
                assert failover.explain()["endpoint"] == primary
                await servers.stop(primary)
                with anyio.fail_after(5):
                    while failover.explain()["endpoint"] != secondary:
                        await anyio.sleep(0.05)
                explained = failover.explain()
    assert "failing health checks" in "\n".join(explained["reasons"])
    assert explained["verdict"].startswith(f"the next stream goes to {secondary}")
