"""Running asyncssh (asyncio only) under whichever loop anyio runs on.

On asyncio, asyncssh's coroutines are awaited directly. On trio, an asyncio loop runs
inside trio through ``trio-asyncio`` for the provider's lifetime, and asyncssh's coroutines
are awaited through it (``trio_asyncio.aio_as_trio``). asyncssh's callbacks (data arrived,
channel closed) run in that loop's task, which is a trio task, so they may set anyio events
and start tasks in the provider's task group directly.

One detail makes this work on both: anyio finds its backend with ``sniffio``, and inside an
asyncio callback sniffio's answer depends on what else is imported (``trio_asyncio``
marks the thread as asyncio while it runs a callback; a plain asyncio callback has no
task to look at). :attr:`Bridge.pin` pins the answer to the loop the provider runs
on while a callback touches the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from ..._core.errors import ConfigError

try:
    import sniffio
except ImportError:  # then anyio assumes asyncio, and so does the bridge (trio needs sniffio)
    sniffio = None  # type: ignore[assignment]

__all__ = ["Bridge", "open_bridge"]

T = TypeVar("T")


class Bridge:
    """How the provider calls into asyncssh and how asyncssh's callbacks call back.

    :param library: ``"asyncio"`` or ``"trio"``: the loop the provider runs on
    :param adapt: turns an asyncio coroutine function into one awaitable here
    """

    def __init__(
        self,
        library: str,
        adapt: Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]] | None,
    ) -> None:
        self.library = library
        self._adapt = adapt
        #: makes anyio see the provider's loop while an asyncssh callback runs (a ``with``
        #: block; one object, entered by every callback)
        self.pin: contextlib.AbstractContextManager[None]
        if sniffio is None:
            self.pin = contextlib.nullcontext()
        elif library == "asyncio":
            self.pin = _AsyncioPin()
        else:
            self.pin = _Pin(library)

    async def run(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await the asyncio coroutine function *function* with *args*."""
        if self._adapt is None:
            return await function(*args, **kwargs)
        result: T = await self._adapt(function)(*args, **kwargs)
        return result


class _Pin:
    """Pins sniffio's answer for a ``with`` block (one object per bridge, reused: every
    asyncssh callback enters it, so it is a plain class, not a generator). Blocks nest
    strictly (a callback never awaits), which the stack of saved values relies on."""

    __slots__ = ("_library", "_saved")

    def __init__(self, library: str) -> None:
        self._library = library
        self._saved: list[tuple[str | None, contextvars.Token[str | None]]] = []

    def __enter__(self) -> None:
        # sniffio consults its thread-local name first, then its context variable; the
        # variable is what a task started in the block inherits
        local = sniffio.thread_local
        self._saved.append((local.name, sniffio.current_async_library_cvar.set(self._library)))
        local.name = self._library

    def __exit__(self, *exc_info: object) -> None:
        name, token = self._saved.pop()
        sniffio.current_async_library_cvar.reset(token)
        sniffio.thread_local.name = name


class _AsyncioPin:
    """:class:`_Pin` on asyncio, where sniffio's thread-local name is enough: a task
    started in the block is an asyncio task, which sniffio recognises by itself, so the
    context variable (for what such a task inherits) is left alone. Every asyncssh
    callback enters it; blocks nest strictly, and only the outermost sets and restores."""

    __slots__ = ("_depth", "_saved")

    def __init__(self) -> None:
        self._depth = 0
        self._saved: str | None = None

    def __enter__(self) -> None:
        self._depth += 1
        if self._depth == 1:
            local = sniffio.thread_local
            self._saved = local.name
            local.name = "asyncio"

    def __exit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if not self._depth:
            sniffio.thread_local.name = self._saved


def _import_trio_asyncio() -> Any:
    """Import ``trio_asyncio``, undoing the one patch of its import that reaches beyond trio.

    Importing it replaces ``asyncio.new_event_loop`` so that every asyncio loop created
    afterwards, anywhere in the process, is a trio-asyncio loop running trio in a thread:
    plain asyncio code (an asyncio service beside a trio one, the other half of a test
    suite) becomes several times slower and keeps every cancelled timer until it would
    have fired. The bridge only uses ``open_loop()`` inside trio, which does not need that
    patch, so the standard factory is put back.

    :raises ~streams.ConfigError: when ``trio-asyncio`` is not installed
    """
    try:
        import trio_asyncio  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigError(
            "the ssh backend runs on trio through trio-asyncio: pip install trio-asyncio"
        ) from exc
    original = getattr(getattr(trio_asyncio, "_loop", None), "_orig_loop_new", None)
    if original is not None and asyncio.new_event_loop is not original:
        asyncio.new_event_loop = original
        asyncio.events.new_event_loop = original
    return trio_asyncio


@contextlib.asynccontextmanager
async def open_bridge() -> AsyncIterator[Bridge]:
    """A :class:`Bridge` for the running loop, valid for the block.

    :raises ~streams.ConfigError: on trio when ``trio-asyncio`` is not installed, or on a
        loop asyncssh cannot run on
    """
    library = sniffio.current_async_library() if sniffio is not None else "asyncio"
    if library == "asyncio":
        yield Bridge("asyncio", None)
        return
    if library != "trio":
        raise ConfigError(f"the ssh backend runs on asyncio or trio, not on {library}")
    trio_asyncio = _import_trio_asyncio()
    try:
        async with trio_asyncio.open_loop() as loop:
            # bound to this loop: a task started from another provider's context (whose
            # current loop is a different one) must still reach this provider's connection
            yield Bridge("trio", functools.partial(trio_asyncio.aio_as_trio, loop=loop))
    except BaseExceptionGroup as group:
        # trio-asyncio's loop is a nursery: it wraps whatever the block raised. The block's
        # own error (the caller's, or ours such as HostKeyNotVerified) is what to raise.
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if error is group:
            raise
        raise error from error.__cause__
