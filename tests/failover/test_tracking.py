"""How failover follows its streams: a stream of the shared machinery carries a close
callback (no wrapper), which counts it and learns from the way it ended whether the endpoint
failed it; any other stream is wrapped in a FailoverStream that does the same."""

from __future__ import annotations

import anyio
import pytest

from streams import StreamReset
from streams.testing import read_all
from streams.wrappers.failover import Failover, FailoverStream
from streams.wrappers.health import FailoverOptions
from tests.failover.test_failover import resetting_server, single
from tests.opaque import OpaqueProvider
from tests.pool.helpers import farm, unique

pytestmark = pytest.mark.anyio

# no ejection: the tests read the run of failures itself
OPTIONS = FailoverOptions(outlier_detection=None)


def endpoint_state(failover: Failover) -> dict[str, object]:
    endpoint: dict[str, object] = failover.describe()["groups"][0]["endpoints"][0]
    return endpoint


async def exchange(failover: Failover) -> FailoverStream | None:
    stream = await failover.open_stream()
    assert failover.active_streams == 1
    assert endpoint_state(failover)["active_streams"] == 1
    await stream.send(b"x" * 10)
    await stream.send_eof()
    assert await read_all(stream) == b"x" * 10
    await stream.aclose()
    assert failover.active_streams == 0
    assert endpoint_state(failover)["active_streams"] == 0
    return stream if isinstance(stream, FailoverStream) else None


async def test_a_stream_of_the_shared_machinery_is_tracked_without_a_wrapper() -> None:
    address = unique("plain")
    with anyio.fail_after(10):
        async with farm(address):
            async with Failover([[single(address)[:2]]], OPTIONS, name="api") as failover:
                for _ in range(3):
                    assert await exchange(failover) is None
                assert endpoint_state(failover)["consecutive_failures"] == 0


async def test_any_other_stream_is_wrapped_and_tracked_the_same() -> None:
    address = unique("opaque")
    with anyio.fail_after(10):
        async with farm(address):
            name, pool = single(address)[:2]
            groups = [[(name, OpaqueProvider(pool))]]
            async with Failover(groups, OPTIONS, name="api") as failover:
                for _ in range(3):
                    assert await exchange(failover) is not None


@pytest.mark.parametrize("wrapped", [False, True])
async def test_a_remote_reset_fails_the_endpoint_and_a_clean_stream_ends_the_run(
    wrapped: bool,
) -> None:
    bad, good = unique("resetting"), unique("good")
    with anyio.fail_after(10):
        async with resetting_server(bad), farm(good):
            name, pool = single(bad)[:2]
            provider = OpaqueProvider(pool) if wrapped else pool
            async with Failover([[(name, provider)]], OPTIONS, name="api") as failover:
                for count in (1, 2):
                    stream = await failover.open_stream()
                    with pytest.raises(StreamReset):
                        await read_all(stream)
                    await stream.aclose()
                    state = endpoint_state(failover)
                    assert state["consecutive_failures"] == count
                    assert state["active_streams"] == 0
                    assert state["last_error"]
                # a stream this side resets is no failure of the endpoint: like any stream
                # the endpoint did not fail, it ends the run
                stream = await failover.open_stream()
                await stream.reset()
                await stream.aclose()
                assert endpoint_state(failover)["consecutive_failures"] == 0
            name, pool = single(good)[:2]
            async with Failover([[(name, pool)]], OPTIONS, name="api") as failover:
                assert await exchange(failover) is None
                assert endpoint_state(failover)["consecutive_failures"] == 0
