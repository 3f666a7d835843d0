"""The stream of the HTTP/2 backend: :class:`MuxStream` plus trailers, the request it
was opened with, and the connection-level credit of what its reader consumed."""

from __future__ import annotations

from typing import Any, Protocol, cast

from ..._core.headers import Headers
from ..._core.stream import MuxStream, StreamOwner
from ..._core.transport import CoalescingBuffer

__all__ = ["Http2Stream"]

#: DATA payloads below this size are joined to the chunk before them while it is small
SMALL_FRAME = 1024
#: how large a chunk of joined small payloads grows
JOINED_CHUNK = 16 * 1024


class _CreditSink(StreamOwner, Protocol):
    @property
    def output(self) -> CoalescingBuffer:
        """The connection's outbound queue."""

    def return_connection_credit(self, size: int) -> None:
        """Give the peer back *size* bytes of connection-level window."""


class Http2Stream(MuxStream):
    """A stream carried by one HTTP/2 request and its response.

    :ivar trailers: the trailing header block the peer sent, if it sent one
    """

    # as MuxStream's: an idle stream's memory, and slot reads on the hot path
    __slots__ = (
        "_provider",
        "data_arrived",
        "data_credited",
        "ended_with_headers",
        "request",
        "trailers",
    )

    def __init__(self, provider: _CreditSink, *args: Any, **kwargs: Any) -> None:
        super().__init__(provider, *args, **kwargs)
        self._provider = provider
        self.trailers: Headers | None = None
        #: the request header list, on the side that opened the stream
        self.request: list[tuple[str, str]] = []
        # END_STREAM went out with the request's HEADERS (a GET or HEAD)
        self.ended_with_headers = False
        # data bytes that arrived, and those whose connection-level credit went back
        self.data_arrived = 0
        self.data_credited = 0

    def end_with_headers(self) -> None:
        """Record that the request's HEADERS carried END_STREAM: no more to send."""
        self.ended_with_headers = True
        self._write_eof()

    def on_data(self, data: bytes) -> None:
        super().on_data(data)
        chunks = self._chunks
        if len(data) < SMALL_FRAME and len(chunks) > 1 and chunks[-1] is data:
            # a peer dribbling tiny frames would otherwise make us keep one object (some
            # 40 bytes) per byte of window: small frames are joined as they arrive
            last: object = chunks[-2]
            assert isinstance(last, (bytes, bytearray))
            if len(last) < JOINED_CHUNK:
                chunks.pop()
                if isinstance(last, bytearray):
                    last += data
                else:
                    # the chunk queue holds bytes-like objects; _take hands out bytes
                    chunks[-1] = cast(bytes, bytearray(last) + data)

    def _take(self, max_bytes: int) -> bytes:
        chunks = self._chunks
        if len(chunks) > 1 and len(chunks[0]) < max_bytes:
            # peers send small frames (16 KiB is common): one read takes as many whole
            # frames as fit, so that an echo or a copy loop runs once, not once per frame
            parts = [chunks.popleft()]
            size = len(parts[0])
            while chunks and size + len(chunks[0]) <= max_bytes:
                size += len(chunks[0])
                parts.append(chunks.popleft())
            chunks.appendleft(b"".join(parts) if len(parts) > 1 else parts[0])
        data = super()._take(max_bytes)
        if type(data) is not bytes:
            data = bytes(data)
        # the connection's credit follows every read; the stream's is batched by its window
        self.data_credited += len(data)
        self._provider.return_connection_credit(len(data))
        return data
