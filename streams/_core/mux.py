"""What every multiplexing provider shares: the stream table, the listener and its
handler, opening with a timeout, Go Away, graceful close and failure.

A backend subclasses :class:`MuxProvider`, starts its connection's tasks in
:meth:`MuxProvider._start`, implements the ``write_*`` hooks to put frames on its wire,
and calls the ``on_*``/``incoming`` methods as frames arrive.
"""

from __future__ import annotations

import inspect
import logging
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup

from .abc import Handler, Listener, Stream, StreamProvider
from .errors import (
    ConfigError,
    ConnectionLost,
    ErrorCode,
    GoingAway,
    OpenTimeout,
    ProviderClosed,
    StreamRejected,
)
from .headers import Headers, HeadersLike
from .limits import FLOOD_LIMITS
from .loopops import LoopOps, current_loop_ops
from .queue_listener import QueueListener
from .stream import AcceptState, MuxStream
from .tasks import TaskHost

__all__ = ["MuxListener", "MuxProvider", "MuxSettings"]

logger = logging.getLogger("streams")

#: how long closing the transport itself may take before it is abandoned
TRANSPORT_CLOSE_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MuxSettings:
    """Settings every multiplexing backend shares."""

    #: the receive window each stream starts with, in bytes
    receive_window: int = 256 * 1024
    #: how far a stream's receive window may grow with the measured bandwidth-delay
    #: product; equal to ``receive_window`` to disable auto-tuning
    max_receive_window: int = 16 * 1024 * 1024
    #: the largest data frame written, in bytes
    max_frame_size: int = 64 * 1024
    #: accepted streams waiting for :meth:`Listener.accept`, plus those being decided;
    #: more are refused (retryably)
    accept_backlog: int = 1024
    #: streams the peer may have open at once on this connection; more are refused
    max_incoming_streams: int = 4096
    #: seconds :meth:`StreamProvider.open_stream` waits for the peer's answer (``None``:
    #: forever)
    open_timeout: float | None = 30.0
    #: seconds :meth:`StreamProvider.aclose` lets open streams finish
    close_grace: float = 5.0
    #: headers one header block may carry; a stream whose block has more is refused (the
    #: block's size in bytes is limited by each backend's own setting)
    max_headers: int = 128
    #: new streams the peer may open per second, on average (``0``: unlimited). High
    #: enough for any real workload; concurrency is bounded by ``max_incoming_streams``
    streams_per_second: float = 10_000.0
    #: streams the peer may reset per second, on average: the rapid-reset attack opens
    #: and cancels streams faster than a server can notice (``0``: unlimited)
    resets_per_second: float = 100.0
    #: pings the peer may send per second, on average (``0``: unlimited)
    pings_per_second: float = 10.0
    #: settings frames the peer may send per second, on average, where the protocol has
    #: them (``0``: unlimited)
    settings_per_second: float = 10.0
    #: frames without payload or effect (empty data or header frames without an end of
    #: stream) the peer may send per second, on average (``0``: unlimited)
    empty_frames_per_second: float = 100.0
    #: how many seconds' worth of each rate may arrive at once
    flood_burst_seconds: float = 10.0
    #: answers (ping and settings acknowledgements, resets) queued for a peer that does
    #: not read them; one more closes the connection, since such a peer would otherwise
    #: make us buffer without bound
    max_queued_control_frames: int = 1000

    def __post_init__(self) -> None:
        if self.receive_window < 1024 or self.receive_window > 0x7FFFFFFF:
            raise ConfigError("must be between 1024 and 2**31-1", path="receive_window")
        if self.max_receive_window < self.receive_window or self.max_receive_window > 0x7FFFFFFF:
            raise ConfigError(
                "must be at least receive_window and at most 2**31-1", path="max_receive_window"
            )
        if self.max_frame_size < 512:
            raise ConfigError("must be at least 512", path="max_frame_size")
        if self.accept_backlog < 1:
            raise ConfigError("must be at least 1", path="accept_backlog")
        if self.max_incoming_streams < 1:
            raise ConfigError("must be at least 1", path="max_incoming_streams")
        if self.open_timeout is not None and self.open_timeout <= 0:
            raise ConfigError("must be positive", path="open_timeout")
        if self.close_grace < 0:
            raise ConfigError("must not be negative", path="close_grace")
        if self.max_headers < 1:
            raise ConfigError("must be at least 1", path="max_headers")
        for name in FLOOD_LIMITS:
            if getattr(self, name) < 0:
                raise ConfigError("must not be negative (0 disables the limit)", path=name)
        if self.flood_burst_seconds <= 0:
            raise ConfigError("must be positive", path="flood_burst_seconds")
        if self.max_queued_control_frames < 1:
            raise ConfigError("must be at least 1", path="max_queued_control_frames")


class MuxListener(QueueListener):
    """The listener of a :class:`MuxProvider`: a bounded queue of accepted streams."""

    def __init__(self, provider: MuxProvider, handler: Handler | None) -> None:
        super().__init__()
        self._provider = provider
        self.handler = handler
        self._deciding = 0

    def has_room(self) -> bool:
        """``True`` if one more stream fits in the accept backlog."""
        backlog = self._provider.settings.accept_backlog
        return not self.closed and len(self._items) + self._deciding < backlog

    def offer(self, item: MuxStream | BaseException) -> None:
        """Queue an accepted stream, or an error to raise from :meth:`accept`."""
        self._put(item)

    def _end_error(self) -> BaseException | None:
        return self._provider.listener_error()

    async def _discard(self, stream: Stream) -> None:
        assert isinstance(stream, MuxStream)
        stream.close_now()

    async def aclose(self) -> None:
        if not self.closed:
            self._provider.listener_closed(self)
        await super().aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._provider.stream_extra_attributes()


class MuxProvider(StreamProvider):
    """Base of the providers that multiplex :class:`MuxStream` objects on one connection.

    Create it inside the event loop that runs it.
    """

    #: ``True`` if :meth:`write_open` is always a checkpoint; otherwise an open that does
    #: not wait for the peer's answer adds one
    write_open_checkpoints = True

    def __init__(self, settings: MuxSettings | None = None) -> None:
        self.settings = settings if settings is not None else MuxSettings()
        #: the event loop's primitives, for this provider and its streams
        self.loop_ops: LoopOps = current_loop_ops()
        self.streams: dict[int, MuxStream] = {}
        self._task_group: TaskGroup | None = None
        self._host: TaskHost | None = None
        self._listener: MuxListener | None = None
        self._listener_closed = False
        self._unheard: deque[MuxStream] = deque()
        self._incoming_count = 0
        self._close_started = False
        self._closed_locally = False
        self._failure: ConnectionLost | None = None
        self._going_away: GoingAway | None = None
        self._closed_event = anyio.Event()
        self._drained: anyio.Event | None = None
        self._rtt: float | None = None
        # opens waiting for the peer's answer, oldest first, with their deadlines
        # (time.monotonic()); one watcher task times them all out (see _watch_opens)
        self._opening: deque[tuple[float, MuxStream]] = deque()
        self._timed_out: set[MuxStream] = set()
        self._watching_opens = False
        self._compact_opening_at = 64

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        host = self._host = TaskHost()
        task_group = await host.__aenter__()
        self._task_group = task_group
        try:
            await self._start(task_group)
        except BaseException as exc:
            await host.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        assert self._host is not None
        return await self._host.__aexit__(exc_type, exc_val, exc_tb)

    async def _start(self, task_group: TaskGroup) -> None:
        """Start the connection's tasks (reader, writer, keepalive) in *task_group*."""

    @property
    def task_group(self) -> TaskGroup:
        """The provider's own task group; exists once it was entered."""
        if self._task_group is None:
            raise RuntimeError(f"{type(self).__name__} must be used as 'async with provider:'")
        return self._task_group

    async def aclose(self, *, grace: float | None = None) -> None:
        if self._close_started:
            with anyio.CancelScope(shield=True), anyio.move_on_after(TRANSPORT_CLOSE_TIMEOUT):
                await self._closed_event.wait()
            return
        self._close_started = True
        if grace is None:
            grace = self.settings.close_grace
        with anyio.CancelScope(shield=True):
            if self._failure is None:
                self._closed_locally = True
                self.write_goaway()
                for stream in list(self._unheard):
                    self._refuse(stream)
                self._unheard.clear()
                if self.streams and grace > 0:
                    drained = self._drained = anyio.Event()
                    with anyio.move_on_after(grace):
                        await drained.wait()
            self._closed_locally = True
            self._fail_streams(ProviderClosed())
            with anyio.move_on_after(TRANSPORT_CLOSE_TIMEOUT):
                await self._close_transport()
            self._closed_event.set()
            if self._host is not None:
                self._host.cancel()

    async def abort(self, reason: str = "connection aborted") -> None:
        """Drop the connection at once, as a crash would: no Go Away, no grace. Every
        stream fails on both sides with :class:`~streams.ConnectionLost`."""
        self._close_started = True
        self.fail(ConnectionLost(reason))
        with anyio.CancelScope(shield=True), anyio.move_on_after(TRANSPORT_CLOSE_TIMEOUT):
            await self._close_transport()
        if self._host is not None:
            self._host.cancel()

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    @property
    def is_closing(self) -> bool:
        return self._close_started or self._failure is not None or self._going_away is not None

    @property
    def is_closed(self) -> bool:
        """``True`` once the provider has closed, by either side or by a failure."""
        return self._closed_event.is_set()

    @property
    def failure(self) -> ConnectionLost | None:
        """The error that ended the connection, if it failed."""
        return self._failure

    @property
    def active_streams(self) -> int:
        return len(self.streams)

    @property
    def rtt(self) -> float | None:
        return self._rtt

    # -- opening -------------------------------------------------------------------------

    async def open_stream(
        self, headers: HeadersLike | None = None, *, wait_accept: bool = True
    ) -> Stream:
        self.check_can_open()
        stream = self.create_local_stream(Headers.coerce(headers))
        self.streams[stream.stream_id] = stream
        timeout = self.settings.open_timeout
        if wait_accept:
            self.flush_follows()  # accepted() flushes before it waits
        try:
            await self.write_open(stream)
            if wait_accept:
                if timeout is None:
                    await stream.accepted()
                elif self._task_group is not None:
                    # one watcher for every pending open instead of a deadline scope per
                    # open (a timer registered and cancelled each time)
                    self._expect_answer(stream, timeout)
                    await stream.accepted()
                else:
                    with anyio.fail_after(timeout):
                        await stream.accepted()
            elif not self.write_open_checkpoints:
                await self.loop_ops.checkpoint_if_cancelled()
        except TimeoutError:
            stream.close_now()
            self.flush()
            raise OpenTimeout(f"the peer did not answer within {timeout} s") from None
        except BaseException as exc:
            if self._timed_out and stream in self._timed_out:
                self._timed_out.discard(stream)
                # the watcher closed it (the wait then fails with the close's reset); a
                # cancellation of the caller stays a cancellation
                if isinstance(exc, Exception):
                    raise OpenTimeout(f"the peer did not answer within {timeout} s") from None
            if stream.accept_state is AcceptState.PENDING:
                stream.close_now()
            self.flush()
            raise
        return stream

    def _expect_answer(self, stream: MuxStream, timeout: float) -> None:
        opening = self._opening
        # drop the answered opens at the front: with one open at a time the queue stays
        # one long
        while opening and opening[0][1].accept_state is not AcceptState.PENDING:
            opening.popleft()
        if len(opening) >= self._compact_opening_at:
            # answers came out of order behind an old open: keep only the pending ones,
            # so the queue holds no answered stream alive until that open's deadline
            pending = [entry for entry in opening if entry[1].accept_state is AcceptState.PENDING]
            opening = self._opening = deque(pending)
            self._compact_opening_at = max(64, 2 * len(pending))
        opening.append((time.monotonic() + timeout, stream))
        if not self._watching_opens:
            self._watching_opens = True
            self.task_group.start_soon(self._watch_opens, timeout)

    async def _watch_opens(self, longest_wait: float) -> None:
        """Time out opens the peer did not answer. Deadlines arrive in order (the timeout
        is the same for all), and a new one is never earlier than the watcher's wake-up:
        it sleeps at most *longest_wait* (the open timeout) past its last look."""
        while True:
            opening = self._opening  # replaced when compacted
            now = time.monotonic()
            while opening:
                deadline, stream = opening[0]
                if (
                    stream.accept_state is not AcceptState.PENDING
                    or stream.finished
                    or stream.is_closed
                ):
                    # answered, failed with its connection, or given up by its opener
                    opening.popleft()
                    continue
                if deadline > now:
                    break
                opening.popleft()
                self._timed_out.add(stream)
                stream.close_now()
            delay = opening[0][0] - now if opening else longest_wait
            await anyio.sleep(max(delay, 0.0))

    def check_can_open(self) -> None:
        """Raise the reason no stream can be opened now, if there is one."""
        if self._closed_locally:
            raise ProviderClosed()
        if self._failure is not None:
            raise self._failure
        if self._going_away is not None:
            raise self._going_away

    @abstractmethod
    def create_local_stream(self, headers: Headers) -> MuxStream:
        """Create the object for a stream this side opens (allocating its id)."""

    @abstractmethod
    async def write_open(self, stream: MuxStream) -> None:
        """Put the open of *stream* (with its headers) on the wire."""

    @abstractmethod
    def write_accept(self, stream: MuxStream, response_headers: Headers) -> None:
        """Put the acceptance of *stream* on the wire."""

    @abstractmethod
    def write_reject(self, stream: MuxStream, rejection: StreamRejected) -> None:
        """Put the refusal of *stream* on the wire."""

    @abstractmethod
    def write_goaway(self) -> None:
        """Tell the peer that no new streams will be accepted."""

    @abstractmethod
    async def _close_transport(self) -> None:
        """Close the connection under the provider."""

    # -- the stream owner interface ------------------------------------------------------

    def flush(self) -> None:
        """Write what the streams queued, if that can be done without waiting; see
        :class:`~streams._core.stream.StreamOwner`. Here: nothing (the writer task sends)."""

    def flush_follows(self) -> None:
        """The caller calls :meth:`flush` before it next yields: frames queued until then
        need not wake the writer. Here: nothing."""

    def stream_finished(self, stream: MuxStream) -> None:
        """Forget a finished stream; see :class:`~streams._core.stream.StreamOwner`."""
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
            if not stream.local:
                self._incoming_count -= 1
        if not self.streams and self._drained is not None:
            self._drained.set()

    def stream_extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """Attributes of the connection that its streams expose too."""
        return {}

    # -- the peer's streams --------------------------------------------------------------

    def listen(self, handler: Handler | None = None) -> Listener:
        if self._listener is not None and not self._listener.closed:
            raise anyio.BusyResourceError("listening on")
        listener = self._listener = MuxListener(self, handler)
        self._listener_closed = False
        unheard, self._unheard = self._unheard, deque()
        for stream in unheard:
            if not stream.finished:
                self._dispatch(stream, listener)
        return listener

    def listener_closed(self, listener: MuxListener) -> None:
        """Called by a listener as it closes: later streams are refused."""
        if self._listener is listener:
            self._listener = None
            self._listener_closed = True

    def listener_error(self) -> BaseException | None:
        """What :meth:`Listener.accept` raises once no stream can arrive any more."""
        if self._closed_locally:
            return ProviderClosed()
        if self._failure is not None:
            return self._failure
        if self._going_away is not None:
            return self._going_away
        return None

    def incoming(self, stream: MuxStream) -> None:
        """The peer opened *stream*: queue it for the handler, or refuse it."""
        self.streams[stream.stream_id] = stream
        self._incoming_count += 1
        if self._close_started or self._incoming_count > self.settings.max_incoming_streams:
            self._refuse(stream)
            return
        listener = self._listener
        if listener is None:
            if self._listener_closed or len(self._unheard) >= self.settings.accept_backlog:
                self._refuse(stream)
            else:
                self._unheard.append(stream)
            return
        self._dispatch(stream, listener)

    def _dispatch(self, stream: MuxStream, listener: MuxListener) -> None:
        if not listener.has_room():
            self._refuse(stream)
            return
        handler = listener.handler
        if handler is None:
            self._decide(stream, listener, (None, True))
            return
        listener._deciding += 1
        try:
            result = handler(stream.headers)
        except Exception as exc:
            listener._deciding -= 1
            self._handler_failed(stream, listener, exc)
            return
        # a plain handler's tuple first: isawaitable costs an ABC check (six calls) per stream
        if type(result) is not tuple and inspect.isawaitable(result):
            self.task_group.start_soon(self._await_handler, stream, listener, result)
        else:
            listener._deciding -= 1
            self._decide(stream, listener, result)

    async def _await_handler(
        self,
        stream: MuxStream,
        listener: MuxListener,
        pending: Awaitable[tuple[HeadersLike | None, bool]],
    ) -> None:
        try:
            result = await pending
        except Exception as exc:
            listener._deciding -= 1
            self._handler_failed(stream, listener, exc)
            return
        listener._deciding -= 1
        self._decide(stream, listener, result)

    def _decide(
        self, stream: MuxStream, listener: MuxListener, result: tuple[HeadersLike | None, bool]
    ) -> None:
        try:
            response, accept = result
            response_headers = Headers.coerce(response)
        except (TypeError, ValueError) as exc:
            error = TypeError(f"a handler must return (response_headers, accept), got {result!r}")
            self._handler_failed(stream, listener, error, cause=exc)
            return
        if stream.finished or self._close_started:
            self._refuse(stream)
            return
        if not accept:
            self._reject(stream, StreamRejected(response_headers, "rejected by the handler"))
            return
        if listener.closed:
            self._refuse(stream)
            return
        stream.on_accepted(response_headers)
        self.write_accept(stream, response_headers)
        listener.offer(stream)

    def _handler_failed(
        self,
        stream: MuxStream,
        listener: MuxListener,
        error: Exception,
        cause: BaseException | None = None,
    ) -> None:
        if cause is not None:
            error.__cause__ = cause
        logger.warning("stream handler failed for stream %s: %r", stream.stream_id, error)
        self._reject(
            stream,
            StreamRejected(Headers(), "the handler failed", code=ErrorCode.INTERNAL_ERROR),
        )
        if not listener.closed and len(listener._items) < self.settings.accept_backlog:
            listener.offer(error)

    def _refuse(self, stream: MuxStream) -> None:
        """Refuse *stream* in a way that tells the opener it is safe to retry."""
        self._reject(
            stream, StreamRejected(Headers(), "refused: not accepting streams", retryable=True)
        )

    def _reject(self, stream: MuxStream, rejection: StreamRejected) -> None:
        if stream.finished:
            return
        self.write_reject(stream, rejection)
        stream.on_rejected(rejection)

    # -- the end of the connection -------------------------------------------------------

    def on_goaway(self, error: GoingAway) -> None:
        """The peer sent Go Away: no new streams; the listener ends."""
        if self._going_away is None:
            self._going_away = error
            if self._listener is not None:
                self._listener.wake()

    def fail(self, error: ConnectionLost) -> None:
        """The connection failed: every stream and the listener fail with *error*."""
        if self._failure is not None or self._closed_event.is_set():
            return
        self._failure = error
        self._fail_streams(error)
        for stream in self._unheard:
            stream.on_connection_lost(error)
        self._unheard.clear()
        self._closed_event.set()

    def _fail_streams(self, error: BaseException) -> None:
        for stream in list(self.streams.values()):
            stream.on_connection_lost(error)
        self.streams.clear()
        if self._listener is not None:
            self._listener.wake()
        if self._drained is not None:
            self._drained.set()
