"""The queue behind every listener: streams (or errors to raise) wait in order until a task
takes them with ``accept()``; closing wakes waiters and releases what was never taken."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from .abc import Listener, Stream
from .errors import StreamClosed
from .loopops import LoopOps, current_loop_ops

__all__ = ["QueueListener"]


class QueueListener(Listener):
    """A :class:`Listener` fed by its owner; subclasses say when no stream can come any
    more (:meth:`_end_error`) and how to release an untaken stream (:meth:`_discard`)."""

    def __init__(self) -> None:
        self._items: deque[Stream | BaseException] = deque()
        self._waiter: anyio.Event | None = None
        self.closed = False
        #: resolved on the first accept (a listener may be built outside its event loop)
        self._ops: LoopOps | None = None
        #: while :meth:`serve` runs (or :meth:`forward_to` is set): takes a stream as it is
        #: accepted, instead of the queue; ``False`` if it cannot (the queue takes it then)
        self._serving: Callable[[Stream], bool] | None = None

    def forward_to(self, take: Callable[[Stream], bool] | None) -> None:
        """Hand each stream accepted from now on to *take* as it is accepted (from the
        task that accepted it), rather than queueing it for :meth:`accept`, whenever
        nothing waits in the queue; a stream that *take* refuses (``False``), and errors,
        are queued as before. ``None`` stops forwarding."""
        self._serving = take

    def _put(self, item: Stream | BaseException) -> None:
        serving = self._serving
        # an exception is a BaseException; isinstance on the Stream ABC would cost more
        if (
            serving is not None
            and not self._items
            and not isinstance(item, BaseException)
            and serving(item)
        ):
            return
        self._items.append(item)
        self.wake()

    async def serve(
        self, handler: Callable[[Stream], Any], task_group: TaskGroup | None = None
    ) -> None:
        # a stream accepted while this runs starts its handler's task at once, from the
        # task that accepted it, instead of waking this one to start it a turn later
        async def run(stream: Stream) -> None:
            async with stream:
                await handler(stream)

        async with anyio.create_task_group() as own_group:
            group = task_group if task_group is not None else own_group

            def start(stream: Stream) -> bool:
                try:
                    group.start_soon(run, stream)
                except RuntimeError:  # the group is closing: leave it to the queue
                    return False
                return True

            outer, self._serving = self._serving, start
            try:
                async for stream in self:
                    group.start_soon(run, stream)
            finally:
                self._serving = outer

    def wake(self) -> None:
        """Wake a task waiting in :meth:`accept` (to look at the queue or the end again)."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.set()

    def _end_error(self) -> BaseException | None:
        """What :meth:`accept` raises once the queue is empty and nothing more will come."""
        return None

    async def _discard(self, stream: Stream) -> None:
        """Release a stream that was queued but never accepted."""
        await stream.aclose()

    async def accept(self) -> Stream:
        ops = self._ops
        if ops is None:
            ops = self._ops = current_loop_ops()
        waited = False
        while True:
            if self.closed:
                raise StreamClosed("listener is closed")
            if self._items:
                if not waited:
                    # yield before taking: a cancellation here loses nothing; once this
                    # call has blocked, that was its checkpoint
                    await ops.checkpoint()
                    waited = True
                    continue
                item = self._items.popleft()
                if isinstance(item, BaseException):
                    raise item
                return item
            error = self._end_error()
            if error is not None:
                raise error
            waiter = self._waiter = ops.event()
            await waiter.wait()
            waited = True

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True):
            while self._items:
                item = self._items.popleft()
                if isinstance(item, Stream):
                    await self._discard(item)
        self.wake()
        await anyio.lowlevel.cancel_shielded_checkpoint()
