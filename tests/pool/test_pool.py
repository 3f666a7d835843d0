"""The pool against in-process memory servers: distribution, growth and shrink, Go Away,
reconnects with backoff, backpressure, listening, introspection and leaks."""

import os
import random
from collections import Counter

import anyio
import pytest

from streams import ConfigError, OpenTimeout, ProviderClosed, Stream
from streams.backends import memory
from streams.testing import read_all
from streams.wrappers.discovery import StaticResolver
from streams.wrappers.pool import (
    ConnectionEvent,
    Endpoint,
    EndpointsUnavailable,
    Pool,
    PoolOptions,
    PoolOverloaded,
    backoff_delay,
)
from tests.pool.helpers import connections, farm, unique, wait_for

pytestmark = pytest.mark.anyio

dial = memory.BACKEND.dialer


async def open_close(pool: Pool, count: int) -> None:
    for _ in range(count):
        stream = await pool.open_stream()
        await stream.aclose()


async def test_round_robin_spreads_1000_streams_evenly_over_4_connections() -> None:
    addresses = [unique("rr") for _ in range(4)]
    with anyio.fail_after(30):
        async with farm(*addresses) as servers:
            options = PoolOptions(min_connections=1)
            async with Pool(
                [dial(a) for a in addresses], options=options, policy="round_robin"
            ) as pool:
                await wait_for(lambda: sum(connections(pool).values()) == 4)
                await open_close(pool, 1000)
                await wait_for(lambda: sum(servers.counts.values()) == 1000)
    counts = [servers.counts[a] for a in addresses]
    assert max(counts) - min(counts) <= 1, counts


async def test_least_active_sends_new_streams_away_from_long_streams() -> None:
    busy, fresh = unique("busy"), unique("fresh")
    with anyio.fail_after(20):
        async with farm(busy, fresh) as servers:
            options = PoolOptions(min_connections=1)
            async with Pool([dial(busy)], options=options, policy="least_active") as pool:
                long_streams = [await pool.open_stream() for _ in range(10)]
                pool.add_endpoint(dial(fresh))
                await wait_for(lambda: connections(pool).get(fresh) == 1)
                short = []
                for _ in range(10):
                    stream = await pool.open_stream()
                    assert stream.response_headers is not None
                    assert stream.response_headers["x-server"] == fresh
                    short.append(stream)
                # now both hold ten: the next one may go either way, but must not pile up
                more = [await pool.open_stream() for _ in range(10)]
                for stream in [*long_streams, *short, *more]:
                    await stream.aclose()
    assert servers.counts[busy] == 10 + 5
    assert servers.counts[fresh] == 10 + 5


async def test_weighted_round_robin_honours_3_to_1_over_4000_streams() -> None:
    heavy, light = unique("heavy"), unique("light")
    with anyio.fail_after(60):
        async with farm(heavy, light) as servers:
            endpoints = [Endpoint(dialer=dial(heavy), weight=3), Endpoint(dialer=dial(light))]
            options = PoolOptions(min_connections=1)
            async with Pool(endpoints, options=options, policy="weighted_round_robin") as pool:
                await wait_for(lambda: sum(connections(pool).values()) == 2)
                await open_close(pool, 4000)
                await wait_for(lambda: sum(servers.counts.values()) == 4000)
    share = servers.counts[heavy] / 4000
    assert abs(share - 0.75) <= 0.02, servers.counts


async def test_grows_at_the_stream_limit_and_shrinks_when_idle() -> None:
    address = unique("grow")
    events: list[ConnectionEvent] = []
    options = PoolOptions(max_streams_per_connection=5, idle_timeout=0.2)
    with anyio.fail_after(20):
        async with farm(address), Pool([dial(address)], options=options) as pool:
            pool.subscribe(events.append)
            assert connections(pool) == {address: 0}
            held = [await pool.open_stream() for _ in range(12)]
            assert connections(pool)[address] == 3
            (endpoint,) = pool.describe()["endpoints"]
            per_connection = sorted(conn["active_streams"] for conn in endpoint["connection_list"])
            assert per_connection == [2, 5, 5]
            for stream in held:
                await stream.aclose()
            await wait_for(lambda: connections(pool) == {address: 0}, what="idle shrink")
    kinds = Counter(event.kind for event in events)
    assert kinds == {"opened": 3, "closed": 3}


async def test_min_connections_are_kept_when_idle() -> None:
    address = unique("min")
    options = PoolOptions(min_connections=2, max_streams_per_connection=1, idle_timeout=0.1)
    with anyio.fail_after(20):
        async with farm(address), Pool([dial(address)], options=options) as pool:
            await wait_for(lambda: connections(pool)[address] == 2)
            held = [await pool.open_stream() for _ in range(4)]
            assert connections(pool)[address] == 4
            for stream in held:
                await stream.aclose()
            await wait_for(lambda: connections(pool)[address] == 2)
            await anyio.sleep(0.3)
            assert connections(pool)[address] == 2


async def test_go_away_drains_the_connection_without_failing_a_stream() -> None:
    address = unique("goaway")
    with anyio.fail_after(20):
        async with farm(address) as servers, Pool([dial(address)]) as pool:
            old = [await pool.open_stream() for _ in range(5)]
            (server_side,) = servers.servers[address].connections
            async with anyio.create_task_group() as group:
                group.start_soon(lambda: server_side.aclose(grace=10))
                await wait_for(lambda: connections(pool, "draining")[address] == 1)
                # new streams go to a new connection, and succeed
                for _ in range(5):
                    stream = await pool.open_stream()
                    await stream.send(b"new")
                    await stream.send_eof()
                    assert await read_all(stream) == b"new"
                    await stream.aclose()
                # the old streams finish normally
                for index, stream in enumerate(old):
                    message = f"old {index}".encode()
                    await stream.send(message)
                    await stream.send_eof()
                    assert await read_all(stream) == message
                    await stream.aclose()
            await wait_for(lambda: connections(pool, "draining")[address] == 0)
            assert connections(pool)[address] == 1


async def test_resolver_changes_add_drain_and_survive_a_failed_lookup() -> None:
    a, b, c = unique("a"), unique("b"), unique("c")
    resolver = StaticResolver({a, b})
    options = PoolOptions(min_connections=1, resolve_interval=0.02)
    with anyio.fail_after(20):
        pool = Pool(options=options, resolver=resolver, make_dialer=dial)
        async with farm(a, b, c) as servers, pool:
            await wait_for(lambda: connections(pool) == {a: 1, b: 1})
            held = await pool.open_stream()
            assert held.response_headers is not None
            gone = held.response_headers["x-server"]
            stays = b if gone == a else a
            resolver.update({stays, c})
            await wait_for(lambda: set(pool.endpoints) == {stays, c})
            # the vanished endpoint drains: its open stream still works
            await held.send(b"still here")
            await held.send_eof()
            assert await read_all(held) == b"still here"
            await held.aclose()
            await wait_for(lambda: connections(pool) == {stays: 1, c: 1})
            resolver.fail("lookup timed out")
            await wait_for(lambda: pool.describe()["resolver_error"] is not None)
            await anyio.sleep(0.1)
            assert set(pool.endpoints) == {stays, c}
            before = sum(servers.counts.values())
            await open_close(pool, 4)
            assert sum(servers.counts.values()) == before + 4
            resolver.fail(None)
            await wait_for(lambda: pool.describe()["resolver_error"] is None)


async def test_reconnects_with_backoff_after_the_endpoint_is_killed() -> None:
    address = unique("killed")
    events: list[ConnectionEvent] = []
    options = PoolOptions(
        min_connections=1, backoff_initial=0.05, backoff_max=0.4, backoff_jitter=0.1
    )
    with anyio.fail_after(20):
        async with farm(address) as servers, Pool([dial(address)], options=options) as pool:
            pool.subscribe(events.append)
            await wait_for(lambda: connections(pool)[address] == 1)
            await servers.stop(address)
            await anyio.sleep(1.0)
            failed = sum(1 for event in events if event.kind == "failed")
            # 0.05, 0.1, 0.2, 0.4, 0.4 s apart: about five tries in a second, not a burst
            assert 2 <= failed <= 7, failed
            with pytest.raises(EndpointsUnavailable) as caught:
                await pool.open_stream()
            assert address in str(caught.value)
            assert "nothing listens" in caught.value.reasons[address]
            await servers.start(address)
            await wait_for(lambda: connections(pool)[address] == 1, within=2)
            await open_close(pool, 3)
    kinds = [event.kind for event in events]
    last_failure = len(kinds) - 1 - kinds[::-1].index("failed")
    assert "opened" in kinds[last_failure:], kinds


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    options = PoolOptions(backoff_initial=0.1, backoff_max=2.0, backoff_jitter=0.2)
    rng = random.Random(5)
    for failures, base in [(1, 0.1), (2, 0.2), (3, 0.4), (5, 1.6), (6, 2.0), (60, 2.0)]:
        delays = [backoff_delay(failures, options, rng) for _ in range(200)]
        assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
        assert max(delays) - min(delays) > base * 0.2


async def test_pending_opens_are_bounded_and_time_out() -> None:
    address = unique("pending")
    options = PoolOptions(
        max_streams_per_connection=1,
        max_connections_per_endpoint=1,
        max_pending_opens=2,
        open_timeout=0.3,
    )
    with anyio.fail_after(10):
        async with farm(address), Pool([dial(address)], options=options) as pool:
            held = await pool.open_stream()
            outcomes: list[BaseException | Stream] = []

            async def wait_open() -> None:
                try:
                    outcomes.append(await pool.open_stream())
                except OpenTimeout as exc:
                    outcomes.append(exc)

            async with anyio.create_task_group() as group:
                group.start_soon(wait_open)
                group.start_soon(wait_open)
                await wait_for(lambda: pool.describe()["pending_opens"] == 2)
                with pytest.raises(PoolOverloaded, match="max_pending_opens=2"):
                    await pool.open_stream()
            assert all(isinstance(outcome, OpenTimeout) for outcome in outcomes)
            # a slot that frees up is taken by the next waiter
            async with anyio.create_task_group() as group:
                group.start_soon(wait_open)
                await wait_for(lambda: pool.describe()["pending_opens"] == 1)
                await held.aclose()
            assert isinstance(outcomes[-1], Stream)
            await outcomes[-1].aclose()


async def test_listen_merges_streams_the_servers_open_on_every_connection() -> None:
    a, b = unique("la"), unique("lb")
    options = PoolOptions(min_connections=1)
    with anyio.fail_after(10):
        async with farm(a, b) as servers, Pool([dial(a), dial(b)], options=options) as pool:
            await wait_for(lambda: connections(pool) == {a: 1, b: 1})
            listener = pool.listen(lambda headers: ({"x-pool": "yes"}, "x-no" not in headers))
            for address in (a, b):
                (server_side,) = servers.servers[address].connections
                opened = await server_side.open_stream({"from": address})
                assert opened.response_headers is not None
                assert opened.response_headers["x-pool"] == "yes"
                accepted = await listener.accept()
                assert accepted.headers["from"] == address
                await opened.aclose()
                await accepted.aclose()
    await wait_for(lambda: True)


async def test_no_connection_task_or_descriptor_leaks_after_aclose() -> None:
    addresses = [unique("leak") for _ in range(3)]
    with anyio.fail_after(20):
        async with farm(*addresses) as servers:
            await anyio.wait_all_tasks_blocked()
            tasks_before = len(anyio.get_running_tasks())
            fds_before = len(os.listdir("/proc/self/fd"))
            options = PoolOptions(min_connections=1, max_streams_per_connection=4, close_grace=0.2)
            pool = Pool([dial(a) for a in addresses], options=options)
            async with pool:
                pool.listen()
                held = [await pool.open_stream() for _ in range(20)]
                assert pool.active_streams == 20
                for stream in held[:10]:
                    await stream.aclose()
            assert pool.is_closing
            assert pool.describe()["endpoints"][0]["connection_list"] == []
            assert pool.active_streams == 0
            with pytest.raises(ProviderClosed):
                await pool.open_stream()
            for stream in held[10:]:
                with pytest.raises(anyio.ClosedResourceError):
                    await stream.send(b"late")
            await anyio.wait_all_tasks_blocked()
            assert all(not server.connections for server in servers.servers.values())
            assert len(anyio.get_running_tasks()) <= tasks_before
            assert len(os.listdir("/proc/self/fd")) <= fds_before


async def test_describe_is_plain_data() -> None:
    address = unique("describe")
    with anyio.fail_after(10):
        async with farm(address), Pool([Endpoint(dialer=dial(address), weight=2)]) as pool:
            stream = await pool.open_stream()
            await pool.ping()
            view = pool.describe()
            await stream.aclose()
    assert view["policy"] == "least_active"
    (endpoint,) = view["endpoints"]
    assert endpoint["endpoint"] == address
    assert endpoint["weight"] == 2
    assert endpoint["state"] == "up"
    assert endpoint["connections"] == 1
    assert endpoint["connections_opened"] == 1
    assert endpoint["connection_failures"] == 0
    assert endpoint["active_streams"] == 1
    assert endpoint["rtt"] == 0.0
    (conn,) = endpoint["connection_list"]
    assert conn["state"] == "ready"
    assert conn["active_streams"] == 1
    assert conn["max_streams"] == 100
    assert conn["rtt"] == 0.0
    assert pool.backend_name == "memory"


def test_options_validate_themselves() -> None:
    with pytest.raises(ConfigError, match="max_connections_per_endpoint"):
        PoolOptions(min_connections=3, max_connections_per_endpoint=2)
    with pytest.raises(ConfigError, match="backoff_jitter"):
        PoolOptions(backoff_jitter=1.5)
    with pytest.raises(ConfigError, match="idle_timeout"):
        PoolOptions(idle_timeout=0)
    with pytest.raises(ConfigError, match="weight"):
        Endpoint(dialer=dial("memory:x"), weight=0)
    with pytest.raises(ConfigError, match="make_dialer"):
        Pool(resolver=StaticResolver())


async def test_a_pool_outside_its_block_says_how_to_use_it() -> None:
    pool = Pool([dial("memory:nowhere")])
    with pytest.raises(RuntimeError, match="async with pool"):
        await pool.open_stream()


async def test_pings_measure_the_rtt_and_close_a_connection_that_stops_answering() -> None:
    address = unique("ping")
    options = PoolOptions(min_connections=1, ping_interval=0.02, ping_timeout=0.1)
    with anyio.fail_after(10):
        async with farm(address), Pool([dial(address)], options=options) as pool:
            await wait_for(lambda: connections(pool)[address] == 1)
            (conn,) = pool._state.connections()
            provider = conn.provider
            assert isinstance(provider, memory.MemoryProvider)
            await wait_for(lambda: pool.rtt is not None)
            assert pool.describe()["endpoints"][0]["connection_list"][0]["rtt"] == 0.0

            async def silent() -> float:
                await anyio.sleep_forever()
                raise AssertionError

            provider.ping = silent  # type: ignore[method-assign]
            # the silent connection is closed, and the minimum is restored with a new one
            await wait_for(lambda: conn.state == "closed")
            await wait_for(lambda: connections(pool)[address] == 1)
            assert pool._state.connections()[0] is not conn


async def test_every_endpoint_down_is_one_error_naming_each_and_why() -> None:
    a, b = unique("down-a"), unique("down-b")
    events: list[ConnectionEvent] = []
    with anyio.fail_after(10):
        async with Pool([dial(a), dial(b)]) as pool:
            pool.subscribe(events.append)
            with pytest.raises(EndpointsUnavailable) as caught:
                await pool.open_stream()
            # while both back off, the next open fails at once, without a dial
            dials = len(events)
            with pytest.raises(EndpointsUnavailable):
                await pool.open_stream()
            assert len(events) == dials
    assert set(caught.value.reasons) == {a, b}
    for address in (a, b):
        assert f"{address}: 1 failed dials, last: nothing listens on {address}" in str(caught.value)
    assert caught.value.retryable
    assert [event.kind for event in events] == ["failed", "failed"]


async def test_describe_feeds_the_metrics_wrapper() -> None:
    from prometheus_client import CollectorRegistry

    from streams.wrappers.metrics import StreamMetrics

    up, down = unique("metrics-up"), unique("metrics-down")
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    with anyio.fail_after(10):
        async with farm(up), Pool([dial(up), dial(down)]) as pool:
            metrics.add_describer("api", pool.describe)
            # the endpoint that is down is tried once; the streams go to the other
            for _ in range(3):
                await (await pool.open_stream()).aclose()
            await wait_for(lambda: pool.describe()["endpoints"][1]["connection_failures"] == 1)

            def sample(name: str, endpoint: str) -> float | None:
                labels = {"upstream": "api", "endpoint": endpoint}
                return registry.get_sample_value(name, labels)

            assert sample("streams_connections_active", up) == 1
            assert sample("streams_connections_opened_total", up) == 1
            assert sample("streams_connection_failures_total", down) == 1
