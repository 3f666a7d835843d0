"""Task groups for providers that own background work.

A provider used as ``async with provider:`` must not enter its task group around the
caller's block directly: cancelling that group on close would cancel the caller's code too,
silently skipping whatever follows ``await provider.aclose()``. :class:`TaskHost` runs the
group inside a task of its own, so closing the provider cancels only the provider's tasks.
"""

from __future__ import annotations

from types import TracebackType

import anyio
import anyio.abc

__all__ = ["TaskHost"]


class TaskHost:
    """An async context manager giving a task group that lives in its own task.

    Exceptions from the hosted tasks still propagate out of the ``async with`` block.
    """

    def __init__(self) -> None:
        self._outer: anyio.abc.TaskGroup | None = None
        self._group: anyio.abc.TaskGroup | None = None

    @property
    def group(self) -> anyio.abc.TaskGroup:
        """The hosted task group (once entered)."""
        if self._group is None:
            raise RuntimeError("the task host has not been entered")
        return self._group

    async def __aenter__(self) -> anyio.abc.TaskGroup:
        outer = anyio.create_task_group()
        await outer.__aenter__()
        self._outer = outer
        try:
            self._group = await outer.start(self._host)
        except BaseException as exc:
            outer.cancel_scope.cancel()
            await outer.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self._group

    async def _host(self, *, task_status: anyio.abc.TaskStatus[anyio.abc.TaskGroup]) -> None:
        async with anyio.create_task_group() as group:
            task_status.started(group)
            await anyio.sleep_forever()

    def cancel(self) -> None:
        """Cancel every hosted task (and the host); the caller's code is not affected."""
        if self._group is not None:
            self._group.cancel_scope.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        self.cancel()
        assert self._outer is not None
        return await self._outer.__aexit__(exc_type, exc_val, exc_tb)
