"""Running the SSH backend on trio must not change asyncio for the rest of the process."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from streams.backends.ssh._bridge import open_bridge


def _new_loop_kind() -> str:
    loop = asyncio.new_event_loop()
    try:
        return f"{type(loop).__module__}.{type(loop).__qualname__}"
    finally:
        loop.close()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_the_trio_bridge_leaves_asyncio_loops_alone(anyio_backend: str) -> None:
    with anyio.fail_after(10):
        async with open_bridge() as bridge:
            assert bridge.library == "trio"
            # from a plain thread, as an asyncio service or test beside us would
            kind = await anyio.to_thread.run_sync(_new_loop_kind)
    assert not kind.startswith("trio_asyncio"), kind
