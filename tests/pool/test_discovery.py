"""Resolvers: a fixed set that tests can change, and DNS through anyio.getaddrinfo."""

import socket

import anyio
import pytest

from streams import ConfigError
from streams._core.backend import Dialer
from streams.backends import memory
from streams.wrappers.discovery import DNSResolver, ResolveError, Resolver, StaticResolver
from streams.wrappers.pool import Pool, PoolOptions
from tests.pool.helpers import connections, farm, wait_for

pytestmark = pytest.mark.anyio


async def test_static_resolver_updates_and_fails_on_demand() -> None:
    resolver = StaticResolver(["memory:a"])
    assert isinstance(resolver, Resolver)
    assert await resolver.resolve() == {"memory:a"}
    resolver.update(["memory:b", "memory:c"])
    assert await resolver.resolve() == {"memory:b", "memory:c"}
    resolver.fail("down")
    with pytest.raises(ResolveError, match="down"):
        await resolver.resolve()


async def test_dns_resolver_gives_every_address_with_the_port() -> None:
    with anyio.fail_after(10):
        found = await DNSResolver("localhost", 7001, family=socket.AF_INET).resolve()
    assert "127.0.0.1:7001" in found
    template = DNSResolver("127.0.0.1", 7002, template="tcp://{host}:{port}")
    with anyio.fail_after(10):
        assert await template.resolve() == {"tcp://127.0.0.1:7002"}
    with anyio.fail_after(10):
        v6 = await DNSResolver("::1", 7003, family=socket.AF_INET6).resolve()
    assert v6 == {"[::1]:7003"}


async def test_dns_resolver_failure_is_a_resolve_error_not_an_oserror_leak() -> None:
    resolver = DNSResolver("no-such-host.invalid", 80, timeout=3)
    with anyio.fail_after(10), pytest.raises(ResolveError) as caught:
        await resolver.resolve()
    assert caught.value.name == "no-such-host.invalid"
    assert isinstance(caught.value.__cause__, OSError) or "no answer" in str(caught.value)


def test_dns_resolver_validates_itself() -> None:
    with pytest.raises(ConfigError, match="port"):
        DNSResolver("localhost", 0)
    with pytest.raises(ConfigError, match="host"):
        DNSResolver("", 80)


async def test_a_pool_fed_by_dns_dials_each_resolved_address() -> None:
    # each resolved "ip:port" is served in memory under that name
    def make_dialer(address: str) -> Dialer:
        return memory.BACKEND.dialer(f"memory:{address}")

    resolver = DNSResolver("localhost", 7004, family=socket.AF_INET)
    options = PoolOptions(min_connections=1, resolve_interval=0.05)
    with anyio.fail_after(10):
        async with farm("memory:127.0.0.1:7004") as servers:
            pool = Pool(options=options, resolver=resolver, make_dialer=make_dialer)
            async with pool:
                await wait_for(lambda: connections(pool) == {"memory:127.0.0.1:7004": 1})
                stream = await pool.open_stream()
                await stream.aclose()
    assert servers.counts["memory:127.0.0.1:7004"] == 1
