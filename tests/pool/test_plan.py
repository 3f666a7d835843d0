"""The pool's decisions over plain state, without connections or I/O (time is an argument)."""

from typing import Any

import pytest

from streams import ProviderClosed, StreamProvider
from streams.backends import memory
from streams.wrappers._pool_state import ConnectionRecord, EndpointRecord, PoolState
from streams.wrappers.balance import LeastActive, RoundRobin
from streams.wrappers.pool import Endpoint, EndpointsUnavailable, PoolOptions

pytestmark = pytest.mark.anyio


class FakeProvider(StreamProvider):
    """Only what the pool reads."""

    def __init__(self, active: int = 0, peer_limit: int | None = None) -> None:
        self.active = active
        self.peer_limit = peer_limit
        self.closing = False

    @property
    def active_streams(self) -> int:
        return self.active

    @property
    def max_streams(self) -> int | None:
        return self.peer_limit

    @property
    def is_closing(self) -> bool:
        return self.closing

    async def open_stream(self, headers: Any = None, *, wait_accept: bool = True) -> Any:
        raise NotImplementedError

    def listen(self, handler: Any = None) -> Any:
        raise NotImplementedError

    async def aclose(self, *, grace: float | None = None) -> None:
        raise NotImplementedError

    async def wait_closed(self) -> None:
        raise NotImplementedError


def state(*names: str, policy: Any = None, **options: Any) -> PoolState:
    pool = PoolState(PoolOptions(**options), policy or LeastActive())
    for name in names:
        pool.endpoints[name] = EndpointRecord(Endpoint(dialer=memory.BACKEND.dialer(name)))
    return pool


def connect(pool: PoolState, name: str, provider: FakeProvider) -> ConnectionRecord:
    record = pool.endpoints[name]
    conn = ConnectionRecord(record, now=0.0)
    conn.provider = provider
    conn.state = "ready"
    record.connections.append(conn)
    return conn


def clock() -> float:
    return 100.0


async def test_a_lazy_pool_dials_the_first_endpoint_and_waits() -> None:
    pool = state("memory:a")
    plan = pool.plan(clock)
    assert plan.use is None
    assert plan.dial is pool.endpoints["memory:a"]


async def test_an_unconnected_endpoint_competes_without_making_the_caller_wait() -> None:
    pool = state("memory:a", "memory:b")
    conn = connect(pool, "memory:a", FakeProvider(active=3))
    plan = pool.plan(clock)
    # least active prefers the endpoint with no streams: dial it, but use what is there now
    assert plan.dial is pool.endpoints["memory:b"]
    assert plan.use is conn


async def test_the_peer_limit_and_the_configured_limit_both_hold() -> None:
    pool = state("memory:a", max_streams_per_connection=10, max_connections_per_endpoint=1)
    connect(pool, "memory:a", FakeProvider(active=4, peer_limit=4))
    assert pool.plan(clock).use is None  # full by the peer's limit, and no room to grow
    pool = state("memory:a", max_streams_per_connection=4)
    connect(pool, "memory:a", FakeProvider(active=4))
    plan = pool.plan(clock)
    assert plan.use is None
    assert plan.dial is pool.endpoints["memory:a"]  # grows


async def test_growth_waits_for_dials_under_way_that_cover_the_demand() -> None:
    pool = state("memory:a", max_streams_per_connection=2)
    connect(pool, "memory:a", FakeProvider(active=2))
    record = pool.endpoints["memory:a"]
    record.connections.append(ConnectionRecord(record, now=0.0))  # a dial under way
    pool.waiting = 2
    assert pool.plan(clock).dial is None
    pool.waiting = 3
    assert pool.plan(clock).dial is record


async def test_draining_connections_take_no_streams() -> None:
    pool = state("memory:a", "memory:b", policy=RoundRobin())
    draining = FakeProvider()
    connect(pool, "memory:a", draining)
    kept = connect(pool, "memory:b", FakeProvider())
    draining.closing = True  # a Go Away arrived
    for _ in range(4):
        assert pool.plan(clock).use is kept


async def test_every_endpoint_in_backoff_is_an_error_naming_each() -> None:
    pool = state("memory:a", "memory:b")
    for record in pool.endpoints.values():
        record.failures = 3
        record.last_error = "nothing listens"
        record.retry_at = 101.5
    error = pool.plan(clock).error
    assert isinstance(error, EndpointsUnavailable)
    assert set(error.reasons) == {"memory:a", "memory:b"}
    assert "3 failed dials, last: nothing listens; next try in 1.50 s" in str(error)
    pool.closing = True
    assert isinstance(pool.plan(clock).error, ProviderClosed)


async def test_the_total_connection_cap_holds() -> None:
    pool = state("memory:a", "memory:b", max_connections=1, max_streams_per_connection=1)
    connect(pool, "memory:a", FakeProvider(active=1))
    assert pool.plan(clock).dial is None


async def test_upkeep_keeps_the_minimum_and_retires_idle_and_drained() -> None:
    pool = state("memory:a", min_connections=1, idle_timeout=10)
    upkeep = pool.upkeep(now=0.0)
    assert upkeep.dial == [pool.endpoints["memory:a"]]
    first = connect(pool, "memory:a", FakeProvider())
    second = connect(pool, "memory:a", FakeProvider())
    assert pool.upkeep(now=5.0).retire == []
    # one idle connection above the minimum goes, the oldest idle first
    second.idle_since = 1.0
    assert pool.upkeep(now=10.5).retire == [first]
    gone_away = FakeProvider()
    third = connect(pool, "memory:a", gone_away)
    gone_away.closing = True
    assert third in pool.upkeep(now=10.6).retire
