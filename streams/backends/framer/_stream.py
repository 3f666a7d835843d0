"""The framer's stream and its coalescing writer; see :mod:`.driver`."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel

from ..._core.errors import ConnectionLost, ErrorCode, StreamReset
from ..._core.headers import Headers
from ..._core.stream import MuxStream
from ..._core.transport import OutboundBuffer

if TYPE_CHECKING:
    from .driver import FramerProvider

__all__ = ["CoalescingBuffer", "FramerStream"]

#: how many turns the writer lets other tasks take while they keep queueing frames
_COALESCE_TURNS = 6
#: payloads at least this large are handed to the transport without being joined
_DIRECT_SEND = 64 * 1024
#: turns without a new frame after which the writer stops waiting for more
_QUIET_TURNS = 1


class CoalescingBuffer(OutboundBuffer):
    """An :class:`OutboundBuffer` whose writer, once woken, lets the other ready tasks run
    while they keep queueing frames before it takes the queue: an open, its data and its
    end of stream, or an answer and its echo, then leave in one ``send`` (and arrive in
    one ``receive``) instead of several.

    Writers past the high-water mark wait their turn in arrival order (:meth:`drain`), so
    many streams sending at once share the connection evenly.

    :param turn_bytes: about how much one writer queues per turn (a data frame), so that
        each time the queue is taken, enough writers are let in to refill it
    """

    def __init__(self, stream: anyio.abc.ByteStream, high_water: int, *, turn_bytes: int) -> None:
        super().__init__(stream, high_water)
        self._turns: deque[anyio.Event] = deque()
        self._batch = max(1, high_water // turn_bytes)

    @property
    def must_wait(self) -> bool:
        """``True`` if a writer should :meth:`drain` now."""
        return self.queued > self._high_water or bool(self._turns)

    async def drain(self) -> None:
        """Wait for this writer's turn while the queue is full or others wait already.

        A plain event would wake every waiting writer at once, in whatever order the loop
        picks (trio's is random), and the first few would take the whole queue each time.

        :raises ~streams.ConnectionLost: if the transport failed
        """
        if self.error is None and not self._closing and self.must_wait:
            turn = anyio.Event()
            self._turns.append(turn)
            try:
                await turn.wait()
            finally:
                if not turn.is_set():
                    self._turns.remove(turn)
            if self.queued <= self._high_water:
                # there is room: keep the line moving even if this writer has no more
                self._wake(1)
            if self.error is not None:
                raise ConnectionLost(f"writing failed: {self.error}") from self.error
            return
        await super().drain()

    def _wake(self, count: int) -> None:
        while self._turns and count > 0:
            self._turns.popleft().set()
            count -= 1

    def close(self) -> None:
        super().close()
        self._wake(len(self._turns))

    async def run(self, on_error: Callable[[BaseException], None]) -> None:
        try:
            while True:
                await self._has_data.wait()
                # while the ready tasks keep adding frames, let them (a few turns at most)
                quiet = 0
                for _ in range(_COALESCE_TURNS):
                    queued = len(self._chunks)
                    if not queued or self._closing or self.queued >= self._high_water:
                        break
                    await anyio.lowlevel.checkpoint()
                    quiet = quiet + 1 if len(self._chunks) == queued else 0
                    if quiet == _QUIET_TURNS:
                        break
                if not self._chunks:
                    if self._closing:
                        return
                    self._has_data = anyio.Event()
                    continue
                chunks, self._chunks = self._chunks, []
                self.queued = 0
                self._has_data = anyio.Event()
                if self._closing:
                    self._has_data.set()
                self._drained.set()
                self._wake(self._batch)
                # small frames are joined into one send; a large payload is sent as it is,
                # which costs a send but saves copying it
                pending: list[bytes | bytearray | memoryview] = []
                for chunk in chunks:
                    if len(chunk) < _DIRECT_SEND:
                        pending.append(chunk)
                        continue
                    if pending:
                        await self._stream.send(b"".join(pending))
                        pending = []
                    await self._stream.send(chunk)  # type: ignore[arg-type]
                if pending:
                    await self._stream.send(b"".join(pending))
        except (
            OSError,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            anyio.EndOfStream,
        ) as exc:
            self.error = exc
            self._drained.set()
            self._wake(len(self._turns))
            on_error(exc)


class FramerStream(MuxStream):
    """A :class:`MuxStream` that adds the framer's write timeout and buffer accounting."""

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
        with anyio.CancelScope(deadline=anyio.current_time() + timeout) as scope:
            self._write_scope = scope
            try:
                await super().send(item)
            finally:
                self._write_scope = None
        if scope.cancelled_caught:
            self._local_reset(ErrorCode.CANCEL)
            raise StreamReset(ErrorCode.CANCEL, remote=False)

    async def send_eof(self) -> None:
        # as trio's streams do it: give up only if already cancelled, queue the end of
        # stream, then yield without being cancellable. The end then leaves in the same
        # send as the data before it, instead of after a turn of the writer.
        if self._sending:
            raise anyio.BusyResourceError("sending to")
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._write_eof()
        await anyio.lowlevel.cancel_shielded_checkpoint()

    def progressed(self) -> None:
        """A send made progress: push the write timeout back."""
        scope = self._write_scope
        timeout = self._provider.settings.write_timeout
        if scope is not None and timeout is not None:
            scope.deadline = anyio.current_time() + timeout

    def on_window_update(self, increment: int) -> None:
        super().on_window_update(increment)
        if self._write_scope is not None:
            self.progressed()

    def _take(self, max_bytes: int) -> bytes:
        data = super()._take(max_bytes)
        self._provider.consumed(len(data))
        return data
