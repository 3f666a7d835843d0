from streams import ConnectionLost, StreamProvider
from streams.backends import memory
from streams.testing import ConformanceOptions, ProviderConformance
from tests.failover.pairs import failover_pair
from tests.pool.helpers import unique


async def cut(provider: StreamProvider) -> None:
    assert isinstance(provider, memory.MemoryProvider)
    provider._break(ConnectionLost("cut by the test"))


class TestFailoverOverMemoryPools(ProviderConformance):
    options = ConformanceOptions(max_buffered_per_stream=512 * 1024)

    def provider_pair(self):  # type: ignore[no-untyped-def]
        return failover_pair(memory.BACKEND, unique("failover"), break_link=cut)
