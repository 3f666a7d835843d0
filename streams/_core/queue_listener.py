"""The queue behind every listener: streams (or errors to raise) wait in order until a task
takes them with ``accept()``; closing wakes waiters and releases what was never taken."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from contextvars import copy_context
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from .abc import Listener, Stream
from .errors import StreamClosed
from .loopops import LoopOps, current_loop_ops

__all__ = ["QueueListener"]


#: handler tasks kept waiting for the next stream once their handler is done, per serve()
_IDLE_WORKERS = 16


class _Worker:
    """A handler task waiting for its next stream."""

    __slots__ = ("stream", "wakeup")

    def __init__(self) -> None:
        self.stream: Stream | None = None
        self.wakeup: anyio.Event


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
        # how many of serve()'s handler tasks may wait for a stream once their own is done
        self._idle_limit = _IDLE_WORKERS
        # while serve() runs: lets its idle handler tasks beyond a number go
        self._retire: Callable[[int], None] | None = None

    def limit_idle(self, limit: int) -> None:
        """Let at most *limit* handler tasks of :meth:`serve` wait for a stream (16 at most,
        the default); those beyond it end now. A server sets 0 while it has no connection,
        so that idle tasks do not outlive the traffic that needed them."""
        self._idle_limit = min(limit, _IDLE_WORKERS)
        if self._retire is not None:
            self._retire(self._idle_limit)

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
        # A stream accepted while this runs starts its handler at once, from the task
        # that accepted it, instead of waking this one to start it a turn later. And a
        # handler's task, once done, waits for the next stream instead of ending: starting
        # a task (anyio's handle, cancel scope and done event, the loop's task) costs about
        # three times what handing a stream to a waiting one does, and one task per stream
        # was most of what a served open-echo-close cost beyond its round trips.
        ops = self._ops
        if ops is None:
            ops = self._ops = current_loop_ops()
        idle: list[_Worker] = []
        ended = False

        async def work(stream: Stream | None) -> None:
            # a handler that changed a context variable retires its task, so no handler
            # sees another's context (a new task starts with a copy of its starter's)
            context = copy_context()
            worker: _Worker | None = None
            while stream is not None:
                async with stream:
                    await handler(stream)
                if ended or len(idle) >= self._idle_limit or copy_context() != context:
                    return
                if worker is None:
                    worker = _Worker()
                worker.stream = None
                wakeup = worker.wakeup = ops.event()
                idle.append(worker)
                try:
                    await wakeup.wait()
                except BaseException:
                    if worker.stream is None:
                        if worker in idle:  # not yet let go by serve's end
                            idle.remove(worker)
                    else:  # handed over as this was cancelled: close it as a new task would
                        async with worker.stream:
                            pass
                    raise
                stream = worker.stream

        async with anyio.create_task_group() as own_group:
            group = task_group if task_group is not None else own_group

            def hand_over(stream: Stream) -> bool:
                if idle:
                    worker = idle.pop()
                    worker.stream = stream
                    worker.wakeup.set()
                    return True
                return False

            def start(stream: Stream) -> bool:
                if not hand_over(stream):
                    try:
                        group.start_soon(work, stream)
                    except RuntimeError:  # the group is closing: leave it to the queue
                        return False
                return True

            def retire(keep: int) -> None:
                # the longest idle go first (the front of the stack)
                while len(idle) > keep:
                    idle.pop(0).wakeup.set()

            outer, self._serving = self._serving, start
            outer_retire, self._retire = self._retire, retire
            try:
                async for stream in self:
                    if not hand_over(stream):
                        group.start_soon(work, stream)
            finally:
                self._serving = outer
                self._retire = outer_retire
                ended = True
                retire(0)

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
