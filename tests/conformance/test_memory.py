from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from streams._core.errors import ConnectionLost
from streams.backends import memory
from streams.testing import ConformanceOptions, ProviderConformance, ProviderPair


@asynccontextmanager
async def memory_pair() -> AsyncIterator[ProviderPair]:
    async with memory.pair() as (client, server):

        async def break_connection() -> None:
            client._break(ConnectionLost("link cut by the test"))

        yield ProviderPair(client=client, server=server, break_connection=break_connection)


class TestMemory(ProviderConformance):
    options = ConformanceOptions(max_buffered_per_stream=512 * 1024)

    def provider_pair(self):  # type: ignore[no-untyped-def]
        return memory_pair()
