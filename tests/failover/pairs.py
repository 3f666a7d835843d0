"""Failover over two pools as a conformance pair, for any backend: both priority groups
dial the same server, so the server side sees every stream whichever group carries it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from streams._core.backend import Backend
from streams.testing import ProviderPair
from streams.wrappers.failover import Failover
from streams.wrappers.health import FailoverOptions, HealthCheckOptions
from streams.wrappers.pool import Pool
from tests.pool.pairs import CONFORMANCE_OPTIONS, BreakLink, ServerSide

OPTIONS = FailoverOptions(health_check=HealthCheckOptions(interval=0.5, timeout=2.0))


@asynccontextmanager
async def failover_pair(
    backend: Backend, address: str, *, break_link: BreakLink | None = None
) -> AsyncIterator[ProviderPair]:
    """Serve *backend* on *address*; a failover of two single-endpoint pools dials it."""
    side = ServerSide()
    async with backend.serve(address, handler=side.decide) as server:
        side.server = server
        groups = [
            [
                (
                    f"{name}:{server.address}",
                    Pool([backend.dialer(server.address)], options=CONFORMANCE_OPTIONS),
                )
            ]
            for name in ("primary", "secondary")
        ]
        async with Failover(groups, OPTIONS, name="conformance") as failover:
            with anyio.fail_after(10):
                while len(server.connections) < 2:
                    await anyio.sleep(0.005)

            async def break_connection() -> None:
                assert break_link is not None
                for provider in server.connections:
                    await break_link(provider)
                await server.aclose(grace=0)

            yield ProviderPair(
                client=failover,
                server=side,
                break_connection=break_connection if break_link is not None else None,
            )
