"""Building blocks for wrappers: a stream and a listener that delegate to the wrapped ones,
and a way to observe a handler's decision without making a plain handler asynchronous."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .._core.abc import Handler, HandlerResult, Listener, Stream
from .._core.errors import ErrorCode
from .._core.headers import Headers

__all__ = ["DelegatingListener", "DelegatingStream", "observe_handler"]


class DelegatingStream(Stream):
    """A :class:`Stream` that forwards everything to *inner*; subclasses add behaviour.

    It keeps the wrapped stream's extra attributes, as anyio's wrappers do.
    """

    __slots__ = ("_inner",)

    def __init__(self, inner: Stream) -> None:
        self._inner = inner

    @property
    def inner(self) -> Stream:
        """The wrapped stream."""
        return self._inner

    @property
    def headers(self) -> Headers:
        return self._inner.headers

    @property
    def response_headers(self) -> Headers | None:
        return self._inner.response_headers

    @property
    def stream_id(self) -> int:
        return self._inner.stream_id

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes

    async def accepted(self) -> Headers:
        return await self._inner.accepted()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._inner.send(item)

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def reset(self, code: int = ErrorCode.CANCEL) -> None:
        await self._inner.reset(code)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._inner!r}>"


class DelegatingListener(Listener):
    """A :class:`Listener` that passes each accepted stream through *wrap*."""

    def __init__(self, inner: Listener, wrap: Callable[[Stream], Stream]) -> None:
        self._inner = inner
        self._wrap = wrap

    async def accept(self) -> Stream:
        return self._wrap(await self._inner.accept())

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes


def observe_handler(
    handler: Handler | None,
    on_decision: Callable[[Headers, bool], None],
    on_error: Callable[[Headers, Exception], None],
) -> Handler:
    """Wrap *handler* so that each decision (or exception) is reported.

    A plain handler stays plain, so the provider can decide without starting a task.
    """

    def observed(headers: Headers) -> HandlerResult | Awaitable[HandlerResult]:
        if handler is None:
            on_decision(headers, True)
            return None, True
        try:
            result = handler(headers)
        except Exception as exc:
            on_error(headers, exc)
            raise
        if inspect.isawaitable(result):
            return _observe_async(headers, result, on_decision, on_error)
        on_decision(headers, bool(result[1]) if isinstance(result, tuple) else False)
        return result

    return observed


async def _observe_async(
    headers: Headers,
    pending: Awaitable[HandlerResult],
    on_decision: Callable[[Headers, bool], None],
    on_error: Callable[[Headers, Exception], None],
) -> HandlerResult:
    try:
        result = await pending
    except Exception as exc:
        on_error(headers, exc)
        raise
    on_decision(headers, bool(result[1]) if isinstance(result, tuple) else False)
    return result
