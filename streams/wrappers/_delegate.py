"""Building blocks for wrappers: a stream and a listener that delegate to the wrapped ones,
and a way to observe a handler's decision without making a plain handler asynchronous."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from anyio.abc import TaskGroup

from .._core.abc import Handler, HandlerResult, Listener, Stream, StreamProvider
from .._core.errors import ErrorCode
from .._core.headers import Headers, HeadersLike
from .._core.stream import MuxStream

__all__ = [
    "MUX_TYPES",
    "DelegatingListener",
    "DelegatingProvider",
    "DelegatingStream",
    "mux_core",
    "observe_handler",
    "serve_wrapped",
    "wrap_handler",
]


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

    # plain methods returning the inner stream's awaitable: a layer that adds nothing
    # costs no coroutine frame of its own on every call (subclasses that add behaviour
    # override these with ``async def``)

    def accepted(self) -> Coroutine[Any, Any, Headers]:
        return self._inner.accepted()

    def receive(self, max_bytes: int = 65536) -> Coroutine[Any, Any, bytes]:
        return self._inner.receive(max_bytes)

    def send(self, item: bytes) -> Coroutine[Any, Any, None]:
        return self._inner.send(item)

    def send_eof(self) -> Coroutine[Any, Any, None]:
        return self._inner.send_eof()

    def reset(self, code: int = ErrorCode.CANCEL) -> Coroutine[Any, Any, None]:
        return self._inner.reset(code)

    def aclose(self) -> Coroutine[Any, Any, None]:
        return self._inner.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._inner!r}>"


#: the stream types found to be :class:`MuxStream` subclasses: a caller tests
#: ``type(stream) in MUX_TYPES`` (no call) before it asks :func:`mux_core`
MUX_TYPES: set[type] = set()
# every other type :func:`mux_core` has seen: True if it delegates (look inside), else False
_OTHER_TYPES: dict[type, bool] = {}


def mux_core(stream: Stream) -> MuxStream | None:
    """The :class:`MuxStream` under *stream* and any delegating wrappers, or ``None``.

    A stream of the shared machinery counts its bytes and calls its close callbacks, so an
    observer (metrics, failover) hooks a callback there instead of wrapping every call.
    """
    while True:
        kind = type(stream)
        if kind in MUX_TYPES:
            return stream  # type: ignore[return-value]
        delegating = _OTHER_TYPES.get(kind)
        if delegating is None:
            # isinstance on these ABCs costs an __instancecheck__; the answer per type
            # never changes
            if issubclass(kind, MuxStream):
                MUX_TYPES.add(kind)
                return stream  # type: ignore[return-value]
            delegating = _OTHER_TYPES[kind] = issubclass(kind, DelegatingStream)
        if not delegating:
            return None
        stream = stream.inner  # type: ignore[attr-defined]


class DelegatingListener(Listener):
    """A :class:`Listener` that passes each accepted stream through *wrap*."""

    def __init__(self, inner: Listener, wrap: Callable[[Stream], Stream]) -> None:
        self._inner = inner
        self._wrap = wrap

    async def accept(self) -> Stream:
        return self._wrap(await self._inner.accept())

    async def serve(
        self, handler: Callable[[Stream], Any], task_group: TaskGroup | None = None
    ) -> None:
        """Serve through the wrapped listener's own :meth:`~Listener.serve` (which may
        start each handler without a turn of an accept loop), wrapping each stream in its
        handler's task."""
        if type(self).accept is not DelegatingListener.accept:
            # a subclass that accepts in its own way must see every stream
            await super().serve(handler, task_group)
            return
        await self._inner.serve(wrap_handler(self._wrap, handler), task_group)

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes


def wrap_handler(
    wrap: Callable[[Stream], Stream], handler: Callable[[Stream], Any]
) -> Callable[[Stream], Awaitable[Any]]:
    """*handler* for the wrapped listener's streams: it gets each stream wrapped, and a
    wrapper is closed through itself (closing the stream under it again costs nothing).

    A plain function that returns the handler's own awaitable: a stream that needs no
    wrapper costs no coroutine of this layer.
    """

    def wrapped(stream: Stream) -> Awaitable[Any]:
        outer = wrap(stream)
        if outer is stream:
            return handler(stream)  # type: ignore[no-any-return]
        return serve_wrapped(outer, handler)

    return wrapped


async def serve_wrapped(stream: Stream, handler: Callable[[Stream], Any]) -> None:
    """Run *handler* on *stream*, a wrapper, and close it through itself."""
    async with stream:
        await handler(stream)


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


class DelegatingProvider(StreamProvider):
    """A :class:`StreamProvider` that forwards everything to *inner*; wrappers override what
    they add. The wrapped provider's lifecycle stays its owner's (entering this one does not
    enter it)."""

    def __init__(self, inner: StreamProvider) -> None:
        self.inner = inner
        self.backend_name = inner.backend_name

    def open_stream(
        self, headers: HeadersLike | None = None, *, wait_accept: bool = True
    ) -> Coroutine[Any, Any, Stream]:
        return self.inner.open_stream(headers, wait_accept=wait_accept)

    def listen(self, handler: Handler | None = None) -> Listener:
        return self.inner.listen(handler)

    async def aclose(self, *, grace: float | None = None) -> None:
        await self.inner.aclose(grace=grace)

    async def wait_closed(self) -> None:
        await self.inner.wait_closed()

    @property
    def is_closing(self) -> bool:
        return self.inner.is_closing

    @property
    def active_streams(self) -> int:
        return self.inner.active_streams

    @property
    def max_streams(self) -> int | None:
        return self.inner.max_streams

    @property
    def rtt(self) -> float | None:
        return self.inner.rtt

    async def ping(self) -> float:
        return await self.inner.ping()

    def describe(self) -> Mapping[str, Any]:
        """The wrapped provider's description, if it has one."""
        describe = getattr(self.inner, "describe", None)
        return describe() if callable(describe) else {}
