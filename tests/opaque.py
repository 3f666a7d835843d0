"""A provider whose streams do not come from the shared stream machinery (nor from a
delegating wrapper): the wrappers must then measure them through a wrapper of their own."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from streams import ErrorCode, Headers, Stream
from streams._core.headers import HeadersLike
from streams.wrappers._delegate import DelegatingProvider


class OpaqueStream(Stream):
    """Forwards everything to *inner*, but is neither a MuxStream nor a DelegatingStream."""

    def __init__(self, inner: Stream) -> None:
        self._inner = inner

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


class OpaqueProvider(DelegatingProvider):
    """Hands out every opened stream as an :class:`OpaqueStream`; the lifecycle stays the
    wrapped provider's."""

    async def open_stream(
        self, headers: HeadersLike | None = None, *, wait_accept: bool = True
    ) -> Stream:
        return OpaqueStream(await self.inner.open_stream(headers, wait_accept=wait_accept))

    async def __aenter__(self) -> OpaqueProvider:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self.inner.__aexit__(*exc_info)
