"""The framer's stream and its coalescing writer; see :mod:`.driver`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel

from ..._core.errors import ErrorCode, StreamReset
from ..._core.headers import Headers
from ..._core.stream import MuxStream

if TYPE_CHECKING:
    from .driver import FramerProvider

__all__ = ["FramerStream"]


class FramerStream(MuxStream):
    """A :class:`MuxStream` that adds the framer's write timeout and buffer accounting."""

    __slots__ = ("_provider", "_write_scope", "open_block")

    def __init__(self, provider: FramerProvider, *args: Any, **kwargs: Any) -> None:
        super().__init__(provider, *args, **kwargs)
        self._provider = provider
        self._write_scope: anyio.CancelScope | None = None
        #: the OPEN header block, until it is written
        self.open_block = b""

    def set_headers(self, headers: Headers) -> None:
        """Set the opener's headers once its header block arrived."""
        self._headers = headers

    async def send(self, item: bytes) -> None:
        timeout = self._provider.settings.write_timeout
        if timeout is None or not item:
            await super().send(item)
            return
        with anyio.CancelScope(deadline=self._ops.current_time() + timeout) as scope:
            self._write_scope = scope
            try:
                await super().send(item)
            finally:
                self._write_scope = None
        if scope.cancelled_caught:
            self._local_reset(ErrorCode.CANCEL)
            raise StreamReset(ErrorCode.CANCEL, remote=False)

    def opener_went_ahead(self) -> bool:
        """``True`` if the opener's data or end of stream arrived (it did not wait for the
        acceptance), or the stream ended."""
        return self.buffered > 0 or self._recv_eof or self._finished

    def progressed(self) -> None:
        """A send made progress: push the write timeout back."""
        scope = self._write_scope
        timeout = self._provider.settings.write_timeout
        if scope is not None and timeout is not None:
            scope.deadline = self._ops.current_time() + timeout

    def on_window_update(self, increment: int) -> None:
        super().on_window_update(increment)
        if self._write_scope is not None:
            self.progressed()

    def _take(self, max_bytes: int) -> bytes:
        data = super()._take(max_bytes)
        self._provider.consumed(len(data))
        return data
