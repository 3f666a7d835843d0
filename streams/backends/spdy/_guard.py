"""The limits a SPDY session keeps against a peer that floods, bombs or does not read.

Rate limits (:class:`~streams._core.limits.FloodGuard`) count the frames that cost this
side work or an answer while costing the peer almost nothing: new streams, resets (the
peer's, and those its stream errors make us send), pings to answer, ``SETTINGS``, and
frames without payload or effect. Going over one closes the session.

Answers (pongs, resets, replies, window updates) are never held back, so a peer that stops
reading could make them pile up without bound. :class:`AnswerQueue` counts those queued
since the writer last handed bytes to the transport; past ``max_queued_control_frames``
frames or ``max_queued_control_bytes`` bytes, the reader waits a moment for the writer to
move, and closes the session if it does not (the answer of Go's net/http2 and Envoy to
CVE-2019-9512 and 9515).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from ..._core.errors import ErrorCode, LimitExceeded
from ..._core.limits import FloodGuard
from . import codec as spdy
from .settings import SpdySettings

__all__ = ["ANSWER_GRACE", "AnswerQueue", "SendCounter", "SessionGuard", "limit_error"]

#: seconds the reader waits for a stalled writer, once too many answers are queued, before
#: it decides that the peer does not read
ANSWER_GRACE = 1.0

#: the local error code of each limit the codec enforces (SPDY's ``GOAWAY`` can only say
#: ``PROTOCOL_ERROR``; the code is what the application sees)
_CODEC_LIMIT_CODES = {
    # the zlib context is lost once a block is cut short
    "max_header_block": ErrorCode.COMPRESSION_ERROR,
    "max_control_frame": ErrorCode.FRAME_SIZE_ERROR,
}


def limit_error(error: spdy.SessionError) -> LimitExceeded:
    """The :class:`~streams.LimitExceeded` for a session error the codec raised for one of
    its limits (``error.limit`` is set)."""
    assert error.limit is not None
    code = _CODEC_LIMIT_CODES.get(error.limit, ErrorCode.ENHANCE_YOUR_CALM)
    return LimitExceeded(error.limit, str(error), code)


class SendCounter(anyio.abc.ByteStream):
    """A transport that counts the sends started on it, so the reader can tell a writer
    that moves from one stuck behind a peer that does not read."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        self.inner = inner
        #: sends started so far
        self.sends = 0
        self._waiter: anyio.Event | None = None

    def started(self) -> None:
        """A send starts: from here, or written straight to the socket by the queue."""
        self.sends += 1
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.set()

    async def send(self, item: bytes) -> None:
        self.started()
        await self.inner.send(item)

    async def wait_send(self) -> None:
        """Wait until the next send starts."""
        waiter = self._waiter = self._waiter or anyio.Event()
        await waiter.wait()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


class AnswerQueue:
    """Counts the answers queued since the writer's last send started."""

    __slots__ = ("_epoch", "_max_bytes", "_max_frames", "_wire", "bytes", "frames")

    def __init__(self, wire: SendCounter, max_frames: int, max_bytes: int) -> None:
        self._wire = wire
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._epoch = wire.sends
        self.frames = 0
        self.bytes = 0

    def add(self, size: int) -> None:
        """One answer of *size* bytes was queued."""
        if self._wire.sends != self._epoch:
            # the writer took everything queued before: only what came since is waiting
            self._epoch = self._wire.sends
            self.frames = 0
            self.bytes = 0
        self.frames += 1
        self.bytes += size

    def over(self) -> str | None:
        """The name of the limit the queued answers exceed, if any."""
        if self._wire.sends != self._epoch:
            return None
        if self.frames > self._max_frames:
            return "max_queued_control_frames"
        if self.bytes > self._max_bytes:
            return "max_queued_control_bytes"
        return None

    async def wait_for_writer(self) -> None:
        """Give a stalled writer :data:`ANSWER_GRACE` seconds to start a send.

        :raises ~streams.LimitExceeded: if it does not: the peer is not reading
        """
        limit = self.over()
        if limit is None:
            return
        with anyio.move_on_after(ANSWER_GRACE):
            while self._wire.sends == self._epoch:
                await self._wire.wait_send()
            return
        raise LimitExceeded(
            limit,
            f"{self.frames} answers ({self.bytes} bytes) queued for a peer that does not read",
        )


class SessionGuard:
    """The per-session limits of :mod:`streams.backends.spdy.driver`, and their log lines.

    :param settings: the session's settings
    :param peer: how to name the peer in log lines
    :param now: the current time
    """

    def __init__(self, settings: SpdySettings, peer: str, now: float) -> None:
        self.flood = FloodGuard.from_settings(settings, now)
        self.peer = peer
        self._logged: set[str] = set()

    def check_event(self, event: spdy.Event, now: float, *, answered_ping: bool) -> None:
        """Count *event* against the rate limits.

        :param answered_ping: a ``PING`` event is the peer's own (we must answer it)
        :raises ~streams.LimitExceeded: if the peer went over one
        """
        match event:
            case spdy.DataReceived(data=b"", fin=False):
                self.flood.check("empty_frames_per_second", now)
            case spdy.HeadersReceived(headers=(), fin=False):
                self.flood.check("empty_frames_per_second", now)
            case spdy.StreamOpened():
                self.flood.check("streams_per_second", now)
            case spdy.ResetReceived() | spdy.StreamFailed():
                # a stream error of the peer's costs us a reset as much as its own does
                self.flood.check("resets_per_second", now)
            case spdy.SettingsReceived():
                self.flood.check("settings_per_second", now)
            case spdy.PingReceived() if answered_ping:
                self.flood.check("pings_per_second", now)
            case _:
                pass

    def stream_limit(
        self, limit: str, stream_id: int, detail: str, action: str, log: logging.Logger
    ) -> None:
        """Log that a stream of the peer's was *action* (refused, reset) for *limit*: the
        first time per session and limit as a warning, later ones at debug level (a flood
        of refusals must not flood the log)."""
        level = logging.DEBUG if limit in self._logged else logging.WARNING
        self._logged.add(limit)
        log.log(
            level,
            "stream %s from %s %s: limit %s exceeded (%s)",
            stream_id,
            self.peer,
            action,
            limit,
            detail,
            extra={"limit": limit, "peer": self.peer},
        )


def peer_name(transport: anyio.abc.ByteStream) -> str:
    """The peer's address, for log lines."""
    address = transport.extra(anyio.abc.SocketAttribute.remote_address, None)
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address) if address else "unknown peer"
