"""A :class:`~streams._core.mux.MuxProvider` whose ``aclose()`` stops only its own tasks.

``MuxProvider.aclose()`` cancels the scope of ``self.task_group``. When that group is the
one entered by ``async with provider:``, closing the provider inside its block also
cancels the rest of the block, and every provider entered after it in the same task (as in
``async with client, server:``). Here the provider's tasks run in an inner task group,
owned by a task of the outer one. (A candidate for ``streams._core.mux`` itself.)
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import anyio
import anyio.abc
from anyio.abc import TaskGroup

from ..._core.mux import MuxProvider

__all__ = ["InnerTaskGroupProvider"]


class InnerTaskGroupProvider(MuxProvider):
    """Runs the provider's tasks in a task group that closing it may cancel safely."""

    _outer_group: TaskGroup

    async def __aenter__(self) -> Self:
        outer = anyio.create_task_group()
        await outer.__aenter__()
        self._outer_group = outer
        try:
            inner: TaskGroup = await outer.start(self._run_tasks)
            self._task_group = inner
            await self._start(inner)
        except BaseException as exc:
            outer.cancel_scope.cancel()
            await outer.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        self.task_group.cancel_scope.cancel()
        return await self._outer_group.__aexit__(exc_type, exc_val, exc_tb)

    @staticmethod
    async def _run_tasks(*, task_status: anyio.abc.TaskStatus[TaskGroup]) -> None:
        async with anyio.create_task_group() as inner:
            task_status.started(inner)
            await anyio.sleep_forever()
