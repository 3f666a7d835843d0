"""A debug view of any provider: a lifecycle log of its streams through :mod:`logging`,
with structured fields, and a live table of the open streams, as data and as text.

Header values that usually carry secrets (authorization, cookies, tokens, keys,
passwords) are redacted everywhere this module reports headers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import anyio
from anyio.abc import SocketAttribute

from .._core.abc import Handler, Listener, Stream, StreamProvider
from .._core.errors import ErrorCode, StreamReset
from .._core.headers import Headers, HeadersLike
from ._delegate import DelegatingListener, DelegatingProvider, DelegatingStream

__all__ = ["DebugProvider", "StreamInfo", "redact_headers"]

logger = logging.getLogger("streams.debug")


def redact_headers(headers: Headers | None) -> list[tuple[str, str]]:
    """*headers* as pairs, with the values of sensitive names replaced by ``<redacted>``."""
    return [] if headers is None else headers.redacted()


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamInfo:
    """One row of the live table."""

    #: the provider's name (the upstream or server it belongs to)
    provider: str
    #: the protocol's stream id
    stream_id: int
    #: ``outbound`` (opened here) or ``inbound`` (opened by the peer)
    direction: str
    #: the opener's headers, redacted
    headers: list[tuple[str, str]]
    #: seconds since the stream opened
    age: float
    bytes_sent: int
    bytes_received: int
    #: ``open``, ``half-closed (local)``, ``half-closed (remote)``, ``reset`` or ``closed``
    state: str
    #: the remote address of the connection carrying the stream, when known
    connection: str


class DebugStream(DelegatingStream):
    """A stream that keeps its own counts and state for the live table."""

    def __init__(self, inner: Stream, owner: DebugProvider, direction: str) -> None:
        super().__init__(inner)
        self.owner = owner
        self.direction = direction
        self.opened_at = time.monotonic()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.eof_sent = False
        self.eof_received = False
        self.state_override: str | None = None

    @property
    def state(self) -> str:
        if self.state_override is not None:
            return self.state_override
        if self.eof_sent and self.eof_received:
            return "closed"
        if self.eof_sent:
            return "half-closed (local)"
        if self.eof_received:
            return "half-closed (remote)"
        return "open"

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            data = await self._inner.receive(max_bytes)
        except anyio.EndOfStream:
            self.eof_received = True
            raise
        except StreamReset as exc:
            self._on_reset(exc)
            raise
        self.bytes_received += len(data)
        return data

    async def send(self, item: bytes) -> None:
        try:
            await self._inner.send(item)
        except StreamReset as exc:
            self._on_reset(exc)
            raise
        self.bytes_sent += len(item)

    async def send_eof(self) -> None:
        await self._inner.send_eof()
        self.eof_sent = True

    async def reset(self, code: int = ErrorCode.CANCEL) -> None:
        self._on_reset(StreamReset(code, remote=False))
        await self._inner.reset(code)

    async def aclose(self) -> None:
        self.owner._closed(self)
        if self.state_override is None:
            self.state_override = "closed"
        await self._inner.aclose()

    def _on_reset(self, error: StreamReset) -> None:
        if self.state_override != "reset":
            self.state_override = "reset"
            self.owner._log(
                "stream reset",
                self,
                code=getattr(error.code, "name", str(error.code)),
                side="remote" if error.remote else "local",
            )

    def connection(self) -> str:
        try:
            address = self.extra(SocketAttribute.remote_address)
        except anyio.TypedAttributeLookupError:
            return ""
        if isinstance(address, tuple):
            return f"{address[0]}:{address[1]}"
        return str(address)

    def info(self, now: float) -> StreamInfo:
        return StreamInfo(
            provider=self.owner.name,
            stream_id=self.stream_id,
            direction=self.direction,
            headers=redact_headers(self.headers),
            age=round(now - self.opened_at, 3),
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            state=self.state,
            connection=self.connection(),
        )


class DebugProvider(DelegatingProvider):
    """Wraps *inner*, logging every stream's life and keeping a live table of open streams.

    :param inner: the provider to watch
    :param name: how the log and the table name this provider
    :param log: where the lifecycle log goes (``streams.debug`` by default)
    """

    def __init__(
        self, inner: StreamProvider, *, name: str, log: logging.Logger | None = None
    ) -> None:
        super().__init__(inner)
        self.name = name
        self._log_to = log or logger
        self._open: dict[int, DebugStream] = {}

    def _log(self, message: str, stream: DebugStream, **fields: Any) -> None:
        if not self._log_to.isEnabledFor(logging.INFO):
            return
        record = {
            "event": message.replace(" ", "_"),
            "provider": self.name,
            "stream_id": stream.stream_id,
            "direction": stream.direction,
            "headers": redact_headers(stream.headers),
            **fields,
        }
        details = " ".join(f"{key}={value}" for key, value in record.items() if key != "event")
        self._log_to.info("%s: %s", message, details, extra={"stream": record})

    def _opened(self, stream: Stream, direction: str) -> DebugStream:
        wrapped = DebugStream(stream, self, direction)
        self._open[id(wrapped)] = wrapped
        self._log("stream opened", wrapped, response=redact_headers(stream.response_headers))
        return wrapped

    def _closed(self, stream: DebugStream) -> None:
        if self._open.pop(id(stream), None) is not None:
            self._log(
                "stream closed",
                stream,
                state=stream.state,
                bytes_sent=stream.bytes_sent,
                bytes_received=stream.bytes_received,
                seconds=round(time.monotonic() - stream.opened_at, 3),
            )

    def streams(self) -> list[StreamInfo]:
        """The open streams, oldest first."""
        now = time.monotonic()
        rows = [stream.info(now) for stream in self._open.values()]
        return sorted(rows, key=lambda row: -row.age)

    def table(self) -> list[dict[str, Any]]:
        """The open streams as plain data (for JSON)."""
        return [asdict(row) for row in self.streams()]

    def render(self) -> str:
        """The open streams as a text table for people."""
        return render_streams(self.streams())

    async def open_stream(
        self, headers: HeadersLike | None = None, *, wait_accept: bool = True
    ) -> Stream:
        request = Headers.coerce(headers)
        try:
            stream = await self.inner.open_stream(request, wait_accept=wait_accept)
        except Exception as exc:
            self._log_to.info(
                "stream open failed: provider=%s headers=%s error=%r",
                self.name,
                redact_headers(request),
                exc,
                extra={"stream": {"event": "stream_open_failed", "provider": self.name}},
            )
            raise
        return self._opened(stream, "outbound")

    def listen(self, handler: Handler | None = None) -> Listener:
        return DelegatingListener(
            self.inner.listen(handler), lambda stream: self._opened(stream, "inbound")
        )


def render_streams(rows: list[StreamInfo]) -> str:
    """A fixed-width text table of *rows*."""
    titles = (
        "provider",
        "id",
        "dir",
        "state",
        "age s",
        "sent",
        "received",
        "connection",
        "headers",
    )
    lines = [
        (
            row.provider,
            str(row.stream_id),
            row.direction,
            row.state,
            f"{row.age:.1f}",
            str(row.bytes_sent),
            str(row.bytes_received),
            row.connection,
            ", ".join(f"{name}={value}" for name, value in row.headers),
        )
        for row in rows
    ]
    widths = [max(len(t), *(len(line[i]) for line in lines)) for i, t in enumerate(titles)]
    out = ["  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip()]
    out += [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]
    return "\n".join(out) + "\n"
