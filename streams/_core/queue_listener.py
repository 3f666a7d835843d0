"""The queue behind every listener: streams (or errors to raise) wait in order until a task
takes them with ``accept()``; closing wakes waiters and releases what was never taken."""

from __future__ import annotations

from collections import deque

import anyio
import anyio.lowlevel

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

    def _put(self, item: Stream | BaseException) -> None:
        self._items.append(item)
        self.wake()

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
