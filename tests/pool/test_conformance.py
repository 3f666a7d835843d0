"""The conformance suite through the pool, around the memory backend."""

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from itertools import count

from streams import ConnectionLost, StreamProvider
from streams.backends import memory
from streams.testing import ConformanceOptions, ProviderConformance, ProviderPair
from tests.pool.pairs import pool_pair

_names = count()


async def break_memory_link(provider: StreamProvider) -> None:
    assert isinstance(provider, memory.MemoryProvider)
    provider._break(ConnectionLost("link cut by the test"))


@asynccontextmanager
async def memory_pool_pair() -> AsyncIterator[ProviderPair]:
    address = f"memory:pool-conformance-{next(_names)}"
    async with pool_pair(memory.BACKEND, address, break_link=break_memory_link) as pair:
        yield pair


class TestPoolOverMemory(ProviderConformance):
    options = ConformanceOptions(max_buffered_per_stream=512 * 1024)

    def provider_pair(self) -> AbstractAsyncContextManager[ProviderPair]:
        return memory_pool_pair()
