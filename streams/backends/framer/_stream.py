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

    async def send_eof(self) -> None:
        # both ways raise Cancelled only if the end was not sent, and both let the end
        # leave in the same send as the data before it instead of after a turn of the
        # writer; which is cheaper depends on the event loop
        if self._sending:
            raise anyio.BusyResourceError("sending to")
        ops = self._ops
        if ops.shield_is_costly:
            # yield first, telling the writer the end is coming
            out = self._provider.output
            out.expected += 1
            try:
                await ops.checkpoint()
            finally:
                out.expected -= 1
            self._write_eof()
        else:
            # trio's idiom: give up only if already cancelled, queue the end, then yield
            # without being cancellable
            await ops.checkpoint_if_cancelled()
            self._write_eof()
            await ops.cancel_shielded_checkpoint()

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
