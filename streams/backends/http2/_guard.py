"""What the HTTP/2 driver does when a peer goes over a limit: name the limit, send a
``GOAWAY`` ahead of what waits for the peer, linger so that the peer can read it, and log
refused streams once per connection. The limits themselves are in ``_codec_limits``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import h2.exceptions
from hyperframe.frame import GoAwayFrame

from ..._core.errors import ErrorCode, LimitExceeded
from ..._core.transport import CoalescingBuffer
from ._codec_limits import LimitBreach
from .settings import Http2Settings

__all__ = [
    "LINGER_BYTES",
    "LINGER_SECONDS",
    "Outbound",
    "RefusalLog",
    "WatchedSend",
    "goaway_for",
    "limit_exceeded",
    "linger",
    "peer_name",
]

#: seconds, and bytes read and dropped, that a connection closed for a limit waits for its
#: peer to read the GOAWAY (within the provider's own bound on closing)
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024 * 1024
#: bytes asked of the transport per read while lingering
_READ_SIZE = 256 * 1024


class WatchedSend(anyio.abc.ByteStream):
    """The transport as the writer sees it, telling whether a ``send`` is under way: one
    that never ends means a peer that does not read."""

    def __init__(self, transport: anyio.abc.ByteStream) -> None:
        self._transport = transport
        self.sending = False

    async def send(self, item: bytes) -> None:
        self.sending = True
        try:
            await self._transport.send(item)
        finally:
            self.sending = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._transport.receive(max_bytes)

    async def send_eof(self) -> None:
        await self._transport.send_eof()

    async def aclose(self) -> None:
        await self._transport.aclose()


class Outbound(CoalescingBuffer):
    """The connection's writer, telling whether it is backed up."""

    @property
    def backed_up(self) -> bool:
        """``True`` while more than the high-water mark waits to be taken by the writer."""
        return self.queued > self._high_water


def limit_exceeded(exc: BaseException, settings: Http2Settings) -> LimitExceeded | None:
    """The limit behind an error h2 raised, if a limit is what it was."""
    if isinstance(exc, LimitBreach):
        return exc.exceeded
    if isinstance(exc, h2.exceptions.DenialOfServiceError):
        # HPACK stopped decoding at the first field past the limit: a bomb never inflates
        error = LimitExceeded(
            "max_header_list_size",
            f"a header list decoded beyond {settings.max_header_list_size} bytes",
            ErrorCode.ENHANCE_YOUR_CALM,
        )
        error.__cause__ = exc
        return error
    return None


def goaway_for(error: LimitExceeded, last_stream_id: int) -> bytes:
    """The ``GOAWAY`` that ends a connection for *error*; its debug data names the limit."""
    frame = GoAwayFrame(0)
    frame.last_stream_id = last_stream_id
    frame.error_code = error.code
    frame.additional_data = error.limit.encode()
    return bytes(frame.serialize())


def peer_name(transport: anyio.abc.ByteStream) -> str:
    """``host:port`` of the peer, for log lines."""
    address = transport.extra(anyio.abc.SocketAttribute.remote_address, None)
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address) if address else "the peer"


async def linger(
    transport: anyio.abc.ByteStream,
    out: CoalescingBuffer,
    writer_done: anyio.Event,
    *,
    discard: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    """After a ``GOAWAY`` for a limit: drop what the peer still sends while our last
    frames go out, then half-close, for at most :data:`LINGER_SECONDS` and
    :data:`LINGER_BYTES`.

    Closing a socket with unread input resets the connection, and a reset destroys
    whatever the kernel had not delivered yet, the ``GOAWAY`` included: the peer would
    never learn why (Go's server lingers after a ``GOAWAY`` too).

    :param discard: waits while something else drops the peer's input (the event loop's
        callbacks) until the peer's end (then returns ``False``) or :data:`LINGER_BYTES`
        (``True``); by default the input is read from *transport* and dropped here
    """

    async def read_and_drop() -> bool:
        dropped = 0
        while dropped < LINGER_BYTES:
            try:
                dropped += len(await transport.receive(_READ_SIZE))
            except (
                anyio.EndOfStream,
                OSError,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ):
                return False
        return True

    async def dropping() -> None:
        if await (discard or read_and_drop)():
            # a peer that keeps sending gets no more of our time
            group.cancel_scope.cancel()

    with anyio.move_on_after(LINGER_SECONDS):
        async with anyio.create_task_group() as group:
            group.start_soon(dropping)
            await writer_done.wait()
            if out.error is None:
                # TLS cannot half-close: the peer then sees the close itself
                with contextlib.suppress(OSError, NotImplementedError, anyio.BrokenResourceError):
                    await transport.send_eof()


class RefusalLog:
    """Logs a stream refused for a limit, once per limit and connection, so that a flood
    of refusals writes one line."""

    __slots__ = ("_logged", "_peer")

    def __init__(self, peer: str) -> None:
        self._peer = peer
        self._logged: set[str] = set()

    def log(self, log: logging.Logger, stream_id: int, limit: str, why: str) -> None:
        """Log that stream *stream_id* went over *limit* (with the same structured fields
        as :func:`~streams._core.limits.log_limit_exceeded`), unless *limit* was logged."""
        if limit in self._logged:
            return
        self._logged.add(limit)
        log.warning(
            "refusing stream %s from %s: limit %s exceeded (%s); later refusals on this "
            "connection are not logged",
            stream_id,
            self._peer,
            limit,
            why,
            extra={"limit": limit, "peer": self._peer},
        )
