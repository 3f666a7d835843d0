"""The event loop's scheduling primitives, looked up once per provider instead of per call.

Every call of ``anyio.lowlevel.checkpoint()``, ``anyio.Event()`` or
``anyio.current_time()`` first asks sniffio which event loop runs, which on asyncio costs an
``asyncio.current_task()`` and, before Python 3.12, a ``getpid()`` system call. A stream's
hot path makes a dozen such calls per open-echo-close; a provider resolves them once (it is
created inside its event loop) and its streams call the backend's own functions directly.
The semantics are anyio's: these are the very functions anyio dispatches to.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections.abc import Awaitable, Callable, Generator
from typing import Any, cast

import anyio
import anyio.lowlevel

__all__ = ["LoopOps", "current_loop_ops"]


class LoopOps:
    """The running event loop's checkpoint, event and clock functions."""

    __slots__ = (
        "cancel_shielded_checkpoint",
        "checkpoint",
        "checkpoint_if_cancelled",
        "current_time",
        "event",
        "is_asyncio",
    )

    def __init__(
        self,
        *,
        checkpoint: Callable[[], Awaitable[None]],
        checkpoint_if_cancelled: Callable[[], Awaitable[None]],
        cancel_shielded_checkpoint: Callable[[], Awaitable[None]],
        event: Callable[[], anyio.Event],
        current_time: Callable[[], float],
        is_asyncio: bool = False,
    ) -> None:
        #: check for cancellation and let other tasks run (``anyio.lowlevel.checkpoint``)
        self.checkpoint = checkpoint
        #: raise if cancelled, without yielding
        self.checkpoint_if_cancelled = checkpoint_if_cancelled
        #: let other tasks run without being cancellable
        self.cancel_shielded_checkpoint = cancel_shielded_checkpoint
        #: create an :class:`anyio.Event`
        self.event = event
        #: the event loop's clock (``anyio.current_time``)
        self.current_time = current_time
        #: ``True`` on asyncio (and uvloop), whose transports buffer what the socket did
        #: not take at once: code whose best write size depends on that asks
        self.is_asyncio = is_asyncio


_cache: dict[Any, LoopOps] = {}


def current_loop_ops() -> LoopOps:
    """The primitives of the event loop running in this thread.

    :raises RuntimeError: if no event loop runs (anyio's ``NoEventLoopError``)
    """
    current_token = getattr(anyio.lowlevel, "current_token", None)
    if current_token is None:  # anyio before 4.11: dispatch on every call, as anyio does
        return _GENERIC
    backend = current_token().backend_class
    ops = _cache.get(backend)
    if ops is None:
        ops = _cache[backend] = _resolve(backend)
    return ops


def _resolve(backend: Any) -> LoopOps:
    module = backend.__module__
    checkpoint = backend.checkpoint
    checkpoint_if_cancelled = backend.checkpoint_if_cancelled
    cancel_shielded_checkpoint = backend.cancel_shielded_checkpoint
    # where anyio's function only forwards to the loop's own, call that directly and save
    # a coroutine frame per checkpoint (the writer and every stream call take several)
    if module.endswith("._trio"):
        import trio.lowlevel

        checkpoint = trio.lowlevel.checkpoint
        checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
        cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint
    elif module.endswith("._asyncio"):
        checkpoint = _asyncio_checkpoint
        checkpoint_if_cancelled = (
            _asyncio_checkpoint_if_cancelled(sys.modules[module]) or checkpoint_if_cancelled
        )
    event_type = type(backend.create_event())
    event: Callable[[], anyio.Event] = event_type
    if module.endswith("._asyncio") and _FutureEvent.fits(event_type):
        event = _FutureEvent
    elif module.endswith("._trio") and "__original" in getattr(event_type, "__slots__", ()):
        import trio

        # anyio's trio event only forwards to trio's, one coroutine frame per wait more;
        # trio's has the same methods and the same semantics
        event = cast("Callable[[], anyio.Event]", trio.Event)
    return LoopOps(
        checkpoint=checkpoint,
        checkpoint_if_cancelled=checkpoint_if_cancelled,
        cancel_shielded_checkpoint=cancel_shielded_checkpoint,
        event=event,
        current_time=backend.current_time,
        is_asyncio=module.endswith("._asyncio"),
    )


def _asyncio_checkpoint() -> Awaitable[None]:
    # what anyio's asyncio checkpoint awaits, without its frame around it
    return asyncio.sleep(0)


class _Done:
    """An awaitable that is already done: ``await`` on it returns at once."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        yield from ()


_DONE = _Done()


def _asyncio_checkpoint_if_cancelled(backend: Any) -> Callable[[], Awaitable[None]] | None:
    """anyio's asyncio ``checkpoint_if_cancelled`` without its coroutine frame and its
    property calls: a stream operation that need not wait makes one on every call, and
    it walks the task's cancel scopes each time. ``None`` if anyio's internals are not
    the ones this was written against (then anyio's own function is used).

    :param backend: anyio's asyncio backend module
    """
    try:
        # the dictionary behind the WeakKeyDictionary: its get() is a Python call
        states: dict[Any, Any] = backend._task_states.data
        probe = backend.CancelScope()
        for name in ("_cancel_called", "_shield", "_parent_scope"):
            getattr(probe, name)
    except AttributeError:
        return None
    current_task = asyncio.current_task
    ref = weakref.ref
    sleep = asyncio.sleep

    def checkpoint_if_cancelled() -> Awaitable[None]:
        task = current_task()
        state = states.get(ref(task)) if task is not None else None
        if state is not None:
            scope = state.cancel_scope
            while scope is not None:
                if scope._cancel_called:
                    # anyio delivers the cancellation at the task's next yield
                    return sleep(0)
                if scope._shield:
                    break
                scope = scope._parent_scope
        return _DONE

    return checkpoint_if_cancelled


class _FutureEvent(anyio.Event):
    """anyio's event on asyncio, whose waiter awaits a bare future.

    anyio's asyncio event wraps an ``asyncio.Event``: a wait is two coroutine frames and a
    future, a set two method calls and a walk of a waiter list, and making one makes two
    objects. The streams wait on events many times per open-echo-close, nearly always one
    task on one event, so this one keeps one future for its first waiter (a list only for
    more) and ``wait()`` returns that future to await. The semantics are anyio's: waiting
    on a set event is a checkpoint; a cancelled waiter's future is cancelled (asyncio does
    that), and :meth:`set` passes it by. One difference: ``wait()`` returns an awaitable,
    not a coroutine, so ``await event.wait()`` works and ``start_soon(event.wait)`` does
    not (nothing here does that).
    """

    __slots__ = ("_flag", "_others", "_waiter")

    def __new__(cls) -> _FutureEvent:
        return object.__new__(cls)

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None
        self._others: list[asyncio.Future[None]] | None = None

    @staticmethod
    def fits(event_type: type) -> bool:
        """``True`` if anyio's asyncio event is the kind this one replaces (its wait a
        coroutine function over an ``asyncio.Event``), as in the anyio versions this was
        written against."""
        return "_event" in getattr(event_type, "__slots__", ())

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
            others = self._others
            if others is not None:
                self._others = None
                for future in others:
                    if not future.done():
                        future.set_result(None)

    def is_set(self) -> bool:
        return self._flag

    def wait(self) -> Awaitable[None]:  # type: ignore[override]
        if self._flag:
            return asyncio.sleep(0)
        future: asyncio.Future[None] = asyncio.Future(loop=asyncio.get_running_loop())
        waiter = self._waiter
        if waiter is None or waiter.done():
            self._waiter = future
        elif self._others is None:
            self._others = [future]
        else:
            # waiters cancelled meanwhile leave, so a wait in a loop of timeouts stays small
            others = self._others = [other for other in self._others if not other.done()]
            others.append(future)
        return future

    def statistics(self) -> anyio.EventStatistics:
        waiting = [self._waiter, *(self._others or ())]
        return anyio.EventStatistics(
            sum(1 for future in waiting if future is not None and not future.done())
        )


_GENERIC = LoopOps(
    checkpoint=anyio.lowlevel.checkpoint,
    checkpoint_if_cancelled=anyio.lowlevel.checkpoint_if_cancelled,
    cancel_shielded_checkpoint=anyio.lowlevel.cancel_shielded_checkpoint,
    event=anyio.Event,
    current_time=anyio.current_time,
)
