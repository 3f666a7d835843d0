"""The SPDY stream: the shared :class:`~streams._core.stream.MuxStream`, plus what SPDY's
session window and docker/spdystream's habits need."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from ..._core.errors import StreamRejected
from ..._core.headers import Headers
from ..._core.stream import MuxStream

if TYPE_CHECKING:
    from .driver import SpdyProvider

__all__ = ["SpdyStream"]


class SpdyStream(MuxStream):
    """A :class:`MuxStream` that reports every byte leaving its buffer, read or dropped, so
    the session window (which spans all streams) can be credited back."""

    _owner: SpdyProvider

    #: ``False`` until the stream's open is on the wire (or if it never got there)
    on_wire = True
    #: the peer's headers that came with a refusal, before its ``RST_STREAM``
    rejection_headers: Headers | None = None
    #: ``send_eof`` before the stream was released: written once it is
    eof_pending = False
    #: data frames sent before the stream was released: written once it is
    held: list[bytes]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held = []
        self.held_bytes = 0
        #: data may go on the wire: the peer accepted the stream (and, for a peer like
        #: docker/spdystream, confirmed it with a ping); always true for the peer's streams
        self.released = not self.local
        #: the decompressed size of the peer's headers (for ``max_connection_headers``)
        self.header_bytes = 0
        self._release_waiter: anyio.Event | None = None

    async def wait_released(self) -> None:
        """Wait until the stream is released, or finished."""
        if self.released or self.finished:
            await anyio.lowlevel.checkpoint()
            return
        waiter = self._release_waiter = self._release_waiter or anyio.Event()
        await waiter.wait()

    def wake_released(self) -> None:
        waiter, self._release_waiter = self._release_waiter, None
        if waiter is not None:
            waiter.set()

    def _finish(self) -> None:
        super()._finish()
        self.wake_released()

    def _take(self, max_bytes: int) -> bytes:
        data = super()._take(max_bytes)
        self._owner.session_consumed(len(data))
        return data

    def _dropping(self, action: Callable[[], None]) -> None:
        before = self.buffered
        action()
        if before > self.buffered:
            self._owner.session_consumed(before - self.buffered)

    def close_now(self) -> None:
        self._dropping(super().close_now)

    def _local_reset(self, code: int) -> None:
        self._dropping(lambda: MuxStream._local_reset(self, code))

    def drop_held(self) -> None:
        """Forget the data held for the ``SYN_REPLY``, returning its session credit."""
        held, self.held = self.held, []
        self.held_bytes = 0
        if held:
            self._owner.session_credit_back(sum(len(frame) - 8 for frame in held))
        self.wake_released()

    def on_rejected(self, rejection: StreamRejected) -> None:
        self.drop_held()
        self._dropping(lambda: MuxStream.on_rejected(self, rejection))

    def on_data(self, data: bytes) -> None:
        before = self.buffered
        MuxStream.on_data(self, data)
        if self.buffered - before < len(data):
            self._owner.session_consumed(len(data) - (self.buffered - before))

    def abort(self, code: int) -> None:
        """Reset the stream from the driver (a stream error), waking every waiter."""
        self._local_reset(code)
