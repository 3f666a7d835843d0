"""No file descriptors, tasks or memory are left behind by framer connections and streams
that were opened and closed (the soak, ``python -m tests.hardening.soak``, runs the
issue's full counts)."""

from __future__ import annotations

import anyio
import pytest

from tests.hardening import hygiene

#: what may remain after thousands of repetitions: a cache entry or a free list, not a
#: per-connection or per-stream leak (which would be thousands of objects)
MAX_FDS = 2
MAX_TASKS = 2
MAX_MEMORY = 256 * 1024


def _assert_clean(result: hygiene.Result) -> None:
    assert result.fd_growth <= MAX_FDS, result
    assert result.task_growth <= MAX_TASKS, result
    assert result.memory_growth <= MAX_MEMORY, result


@pytest.mark.anyio
async def test_2000_connections_leave_nothing_behind() -> None:
    with anyio.fail_after(60):
        result = await hygiene.connections(2000)
    _assert_clean(result)


@pytest.mark.anyio
async def test_20000_streams_on_one_connection_leave_nothing_behind() -> None:
    with anyio.fail_after(60):
        result = await hygiene.streams(20000)
    _assert_clean(result)
