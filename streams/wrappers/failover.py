"""Failover: new streams go to the highest-priority group of endpoints that is healthy
enough, spill to the next when it degrades, and fail back after a hold-down.

Each endpoint is a provider of its own (typically a :class:`~streams.wrappers.pool.Pool`
over that one endpoint), so failover knows exactly which endpoint served or failed a
stream. Active health checks (a ping or a health stream), passive outlier detection,
retries of ``open_stream`` on another endpoint within a budget, and circuit breaking sit on
top. The decisions are pure functions in :mod:`streams.wrappers.health` and
:mod:`streams.wrappers.balance`; this module does the I/O they imply.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence, Set
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc

from .._core.abc import Handler, Listener, Stream, StreamProvider
from .._core.errors import (
    ConnectionLost,
    ErrorCode,
    OpenTimeout,
    ProviderClosed,
    StreamError,
    StreamRejected,
    StreamReset,
)
from .._core.headers import Headers, HeadersLike
from .._core.server import MergedListener
from .._core.stream import MuxStream
from .._core.tasks import TaskHost
from ._delegate import MUX_TYPES, DelegatingStream, mux_core
from .balance import Candidate, Policy, make_policy
from .health import EndpointState, FailoverOptions, group_loads

__all__ = ["CircuitOpen", "Failover", "FailoverEvent", "NoEndpointAvailable"]

logger = logging.getLogger("streams.failover")


class NoEndpointAvailable(ConnectionLost):
    """No endpoint of the upstream could take the stream.

    :ivar reasons: each endpoint and why it could not
    """

    def __init__(self, upstream: str, reasons: Mapping[str, str]) -> None:
        detail = "; ".join(f"{name}: {why}" for name, why in reasons.items()) or "no endpoints"
        super().__init__(f"no endpoint of {upstream} is available ({detail})")
        self.reasons = dict(reasons)


class CircuitOpen(StreamError, anyio.WouldBlock):
    """A circuit breaker limit was reached; the open failed fast. Nothing was sent."""

    retryable = True

    def __init__(self, upstream: str, limit: str, value: int) -> None:
        super().__init__(f"{upstream}: circuit breaker {limit} ({value}) reached")
        self.limit = limit


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverEvent:
    """A state change: ``ejected``, ``restored``, ``unhealthy``, ``healthy``,
    ``failed_over`` or ``failed_back``."""

    kind: str
    upstream: str
    endpoint: str | None = None
    group: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: float = 0.0


class _Member:
    """One endpoint: its state, its provider, and the close callback its streams carry."""

    __slots__ = ("on_close", "owner", "provider", "state")

    def __init__(self, state: EndpointState, provider: StreamProvider, owner: Failover) -> None:
        self.state = state
        self.provider = provider
        self.owner = owner
        #: bound once: every stream of the shared machinery served here carries it
        self.on_close: Callable[[MuxStream, StreamReset | None], None] = self.closed

    def track(self, stream: Stream) -> Stream:
        """Count *stream*, just opened here, as served here until it closes; returns what
        the caller hands on.

        A stream of the shared machinery says when it closes and why, so it needs no
        wrapper (see :func:`~streams.wrappers._delegate.mux_core`); any other stream is
        wrapped in a :class:`FailoverStream`.
        """
        core: MuxStream | None = (
            stream  # type: ignore[assignment]
            if type(stream) in MUX_TYPES
            else mux_core(stream)
        )
        if core is None:
            return FailoverStream(stream, self.owner, self)
        # straight from the endpoint's open_stream: nobody can have closed it yet
        callbacks = core.close_callbacks
        if callbacks is None:
            core.close_callbacks = [self.on_close]
        else:
            callbacks.append(self.on_close)
        self.state.active_streams += 1
        self.owner._active += 1
        return stream

    def closed(self, stream: MuxStream, reset: StreamReset | None) -> None:
        """A stream served here closed: a failure if the endpoint broke it (the same rule
        as :meth:`FailoverStream._failed`), else the success that ends a run of failures."""
        error: BaseException | None = reset if reset is not None else stream.failure
        if error is not None and _endpoint_failed(error):
            self.owner._record_failure(self, error)
        elif self.state.consecutive_failures:
            self.state.succeeded()
        self.state.active_streams -= 1
        self.owner._active -= 1


def _endpoint_failed(error: BaseException) -> bool:
    """Did the endpoint (not this side) break the stream with *error*?"""
    if isinstance(error, StreamReset):
        return error.remote and error.code != ErrorCode.CANCEL
    return isinstance(error, ConnectionLost)


def _retryable(error: BaseException) -> bool:
    """Did the peer provably not process the stream? Then opening it elsewhere is safe."""
    if isinstance(error, OpenTimeout):
        return False
    if isinstance(error, (ConnectionLost, StreamRejected, CircuitOpen)):
        return error.retryable or isinstance(error, ConnectionLost)
    return bool(getattr(error, "retryable", False))


class FailoverStream(DelegatingStream):
    """A stream that tells failover when it ends and whether the endpoint failed it."""

    def __init__(self, inner: Stream, owner: Failover, member: _Member) -> None:
        super().__init__(inner)
        self._owner = owner
        self._member = member
        self._done = False
        self._broken = False
        member.state.active_streams += 1
        owner._active += 1

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            return await self._inner.receive(max_bytes)
        except (StreamReset, ConnectionLost) as exc:
            self._failed(exc)
            raise

    async def send(self, item: bytes) -> None:
        try:
            await self._inner.send(item)
        except (StreamReset, ConnectionLost) as exc:
            self._failed(exc)
            raise

    async def aclose(self) -> None:
        self._release()
        await self._inner.aclose()

    def _failed(self, error: StreamReset | ConnectionLost) -> None:
        if self._broken or not _endpoint_failed(error):
            return
        self._broken = True
        self._owner._record_failure(self._member, error)

    def _release(self) -> None:
        if not self._done:
            self._done = True
            if not self._broken:
                # a stream that ended without the endpoint failing it: the success that
                # resets the endpoint's run of failures (an accepted open alone is not)
                self._member.state.succeeded()
            self._member.state.active_streams -= 1
            self._owner._active -= 1


_FIRST_ONLY = (0,)

Endpoints = Sequence[Sequence["tuple[str, StreamProvider] | tuple[str, StreamProvider, int]"]]


class Failover(StreamProvider):
    """A provider over priority groups of endpoints.

    :param groups: the groups in priority order, each a list of ``(name, provider)`` or
        ``(name, provider, weight)``; failover enters and closes the providers
    :param options: health checks, outlier detection, retries, circuit breaking
    :param name: the upstream's name, for errors, events and metrics
    :param backend_name: the protocol under the endpoints, for labels (by default what the
        first endpoint's provider reports)
    :param rng: the random generator that splits traffic between groups (seed it in tests)
    """

    def __init__(
        self,
        groups: Endpoints,
        options: FailoverOptions | None = None,
        *,
        name: str = "upstream",
        backend_name: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options if options is not None else FailoverOptions()
        self.name = name
        self._rng = rng if rng is not None else random.Random()
        self._groups: list[list[_Member]] = []
        for index, group in enumerate(groups):
            members = []
            for entry in group:
                weight = entry[2] if len(entry) == 3 else 1
                state = EndpointState(name=entry[0], group=index, weight=weight)
                members.append(_Member(state, entry[1], self))
            self._groups.append(members)
        if not any(self._groups):
            raise ValueError("failover needs at least one endpoint")
        first = next(member for group in self._groups for member in group)
        self.backend_name = backend_name or first.provider.backend_name
        self._policies: list[Policy] = [make_policy(self.options.policy) for _ in self._groups]
        self._subscribers: list[Callable[[FailoverEvent], None]] = []
        self._exit_stack = AsyncExitStack()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._host: TaskHost | None = None
        self._closing = False
        self._closed = anyio.Event()
        self._active = 0
        self._pending = 0
        self._retrying = 0
        self._main_group: int | None = 0
        # what _refresh decided, valid until _fresh_until (the next ejection end or
        # hold-down end); every state change that moves loads calls _refresh itself
        self._loads: list[float] = []
        self._available: list[list[_Member]] = []
        self._fresh_until = -math.inf
        self.failovers = 0
        self.retries = 0
        self._listener: MergedListener | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._exit_stack.__aenter__()
        try:
            for member in self._members():
                await self._exit_stack.enter_async_context(member.provider)
            self._host = TaskHost()
            group = await self._exit_stack.enter_async_context(self._host)
            self._task_group = group
            if self.options.health_check is not None:
                for member in self._members():
                    group.start_soon(self._health_loop, member)
        except BaseException as exc:
            await self._exit_stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return await self._exit_stack.__aexit__(exc_type, exc_val, exc_tb)

    async def aclose(self, *, grace: float | None = None) -> None:
        if self._closing:
            return
        self._closing = True
        with anyio.CancelScope(shield=True):
            if self._host is not None:
                self._host.cancel()
            async with anyio.create_task_group() as group:
                for member in self._members():
                    group.start_soon(_close, member.provider, grace)
            if self._listener is not None:
                self._listener.end(ProviderClosed())
            self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def is_closing(self) -> bool:
        return self._closing

    @property
    def active_streams(self) -> int:
        return self._active

    @property
    def rtt(self) -> float | None:
        rtts = [m.provider.rtt for m in self._members() if m.provider.rtt is not None]
        return min(rtts) if rtts else None

    async def ping(self) -> float:
        member = self._pick(time.monotonic(), set())
        if member is None:
            raise NoEndpointAvailable(self.name, self._reasons({}))
        return await member.provider.ping()

    def subscribe(self, callback: Callable[[FailoverEvent], None]) -> Callable[[], None]:
        """Call *callback* with every :class:`FailoverEvent`; returns the unsubscriber."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    # -- choosing --------------------------------------------------------------------------

    def _members(self) -> list[_Member]:
        return [member for group in self._groups for member in group]

    def _refresh(self, now: float) -> list[float]:
        """Restore ejections whose time is up, recompute the groups' loads and the main
        group (emitting what changed), and note until when that holds."""
        members = self._members()
        for member in members:
            if member.state.maybe_restore(now):
                self._emit("restored", member)
        hold_down = self.options.failback_hold_down
        loads = group_loads(
            [[m.state for m in group] for group in self._groups],
            now,
            overprovisioning_factor=self.options.overprovisioning_factor,
            hold_down=hold_down,
        )
        # nothing time-driven changes before an ejection ends or a hold-down ends (tested
        # with the very expression settled() uses, so the boundary cannot be missed)
        fresh_until = math.inf
        for member in members:
            state = member.state
            if state.ejected_until is not None:
                fresh_until = min(fresh_until, state.ejected_until)
            if state.healthy and now - state.healthy_since < hold_down:
                fresh_until = min(fresh_until, state.healthy_since + hold_down)
        self._loads = loads
        self._available = [[m for m in group if m.state.available(now)] for group in self._groups]
        self._fresh_until = fresh_until
        main = next((index for index, load in enumerate(loads) if load >= 0.5), None)
        if main is None and any(loads):
            main = max(range(len(loads)), key=loads.__getitem__)
        if main != self._main_group and main is not None:
            previous = self._main_group
            self._main_group = main
            if previous is not None:
                kind = "failed_over" if main > previous else "failed_back"
                if kind == "failed_over":
                    self.failovers += 1
                self._emit(kind, None, group=main, detail={"from": previous, "loads": loads})
        return loads

    def _pick(
        self, now: float, tried: Set[str] = frozenset(), *, peek: bool = False
    ) -> _Member | None:
        loads = self._refresh(now) if now >= self._fresh_until else self._loads
        if len(loads) == 1:
            order: Sequence[int] = _FIRST_ONLY
        else:
            draw = self._rng.random() if not peek else 0.0
            order = list(range(len(self._groups)))
            cumulative = 0.0
            for index, load in enumerate(loads):
                cumulative += load
                if draw < cumulative:
                    order.remove(index)
                    order.insert(0, index)
                    break
        for index in order:
            candidates = self._available[index]
            if tried:
                candidates = [member for member in candidates if member.state.name not in tried]
            if len(candidates) == 1:
                # no choice to make: the policy is not asked (nor its state moved)
                return candidates[0]
            if not candidates:
                continue
            policy = self._policies[index]
            if peek:
                policy = copy.deepcopy(policy)
            chosen = policy.pick([self._candidate(member) for member in candidates])
            return next(m for m in candidates if m.state.name == chosen.endpoint)
        return None

    def _candidate(self, member: _Member) -> Candidate:
        return Candidate(
            key=member.state.name,
            endpoint=member.state.name,
            weight=member.state.weight,
            active_streams=member.state.active_streams,
            rtt=member.provider.rtt,
        )

    def _reasons(self, errors: Mapping[str, str]) -> dict[str, str]:
        now = time.monotonic()
        return {
            member.state.name: errors.get(member.state.name) or member.state.why_unavailable(now)
            for member in self._members()
        }

    # -- opening ---------------------------------------------------------------------------

    async def open_stream(
        self, headers: HeadersLike | None = None, *, wait_accept: bool = True
    ) -> Stream:
        if self._closing:
            raise ProviderClosed()
        breaker = self.options.circuit_breaker
        if breaker.max_active_streams is not None and self._active >= breaker.max_active_streams:
            raise CircuitOpen(self.name, "max_active_streams", breaker.max_active_streams)
        if breaker.max_pending_opens is not None and self._pending >= breaker.max_pending_opens:
            raise CircuitOpen(self.name, "max_pending_opens", breaker.max_pending_opens)
        if headers is not None and not isinstance(headers, Headers):
            # once: an iterable of pairs could not be read again for a retry
            headers = Headers.coerce(headers)
        # a set of its own only after a failure: most opens succeed at once
        tried: Set[str] = frozenset()
        errors: dict[str, str] = {}
        self._pending += 1
        try:
            attempt = 0
            while True:
                member = self._pick(time.monotonic(), tried)
                if member is None:
                    raise NoEndpointAvailable(self.name, self._reasons(errors))
                attempt += 1
                retrying = attempt > 1
                if retrying:
                    self.retries += 1
                    self._retrying += 1
                try:
                    stream = await member.provider.open_stream(headers, wait_accept=wait_accept)
                except Exception as exc:
                    tried = {*tried, member.state.name}
                    errors[member.state.name] = str(exc) or type(exc).__name__
                    if not isinstance(exc, (StreamRejected, CircuitOpen)):
                        self._record_failure(member, exc)
                    if not (_retryable(exc) and self._may_retry(attempt)):
                        if isinstance(exc, ConnectionLost) and len(tried) > 1:
                            raise NoEndpointAvailable(self.name, self._reasons(errors)) from exc
                        raise
                    continue
                finally:
                    if retrying:
                        self._retrying -= 1
                return member.track(stream)
        finally:
            self._pending -= 1

    def _may_retry(self, attempt: int) -> bool:
        options = self.options
        if attempt >= options.retries.attempts:
            return False
        limit = options.circuit_breaker.max_concurrent_retries
        if limit is not None and self._retrying >= limit:
            return False
        return options.retries.allows(self._retrying, self._active + self._pending)

    def _record_failure(self, member: _Member, error: BaseException) -> None:
        now = time.monotonic()
        group = [m.state for m in self._groups[member.state.group]]
        if member.state.failed(
            str(error) or type(error).__name__, now, self.options.outlier_detection, group
        ):
            assert member.state.ejected_until is not None
            self._emit(
                "ejected",
                member,
                detail={
                    "seconds": member.state.ejected_until - now,
                    "ejections": member.state.ejections,
                },
            )
            self._refresh(now)

    # -- health checks ---------------------------------------------------------------------

    async def _health_loop(self, member: _Member) -> None:
        options = self.options.health_check
        assert options is not None
        kind = options.kind
        while True:
            error: str | None = None
            try:
                with anyio.fail_after(options.timeout):
                    if kind == "ping":
                        try:
                            await member.provider.ping()
                        except NotImplementedError:
                            kind = "stream"
                    if kind == "stream":
                        stream = await member.provider.open_stream(options.headers)
                        await stream.aclose()
            except TimeoutError:
                error = f"no answer within {options.timeout} s"
            except Exception as exc:
                error = str(exc) or type(exc).__name__
            now = time.monotonic()
            if error is None:
                if member.state.health_passed(now, options):
                    self._emit("healthy", member)
            elif member.state.health_failed(error, options):
                self._emit("unhealthy", member, detail={"error": error})
            self._refresh(now)
            await anyio.sleep(options.interval)

    def _emit(
        self,
        kind: str,
        member: _Member | None,
        *,
        group: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        event = FailoverEvent(
            kind=kind,
            upstream=self.name,
            endpoint=member.state.name if member else None,
            group=member.state.group if member else group,
            detail=detail or {},
            at=time.monotonic(),
        )
        logger.info("%s: %s %s %s", self.name, kind, event.endpoint or "", dict(event.detail))
        for callback in list(self._subscribers):
            callback(event)

    # -- the peer's streams ----------------------------------------------------------------

    def listen(self, handler: Handler | None = None) -> Listener:
        if self._task_group is None:
            raise RuntimeError("Failover must be used as 'async with failover:'")
        merged = self._listener = MergedListener()
        for member in self._members():
            self._task_group.start_soon(_pump, member.provider.listen(handler), merged)
        return merged

    # -- introspection ---------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Groups, endpoints and their states, traffic shares and totals, as plain data."""
        now = time.monotonic()
        loads = self._refresh(now)
        groups = []
        for index, group in enumerate(self._groups):
            endpoints = []
            for member in group:
                state = member.state
                inner: Mapping[str, Any] = {}
                describe = getattr(member.provider, "describe", None)
                if callable(describe):
                    inner = describe()
                endpoints.append(
                    {
                        "endpoint": state.name,
                        "weight": state.weight,
                        "healthy": state.healthy,
                        "ejected": state.ejected(now),
                        "available": state.available(now),
                        "why": state.why_unavailable(now),
                        "active_streams": state.active_streams,
                        "consecutive_failures": state.consecutive_failures,
                        "ejections": state.ejections,
                        "last_error": state.last_error,
                        "rtt": member.provider.rtt,
                        "provider": inner,
                    }
                )
            groups.append(
                {"priority": index, "load": round(loads[index], 4), "endpoints": endpoints}
            )
        return {
            "upstream": self.name,
            "policy": self.options.policy,
            "main_group": self._main_group,
            "active_streams": self._active,
            "pending_opens": self._pending,
            "failovers": self.failovers,
            "retries": self.retries,
            "groups": groups,
        }

    def explain(self) -> dict[str, Any]:
        """Which endpoint the next stream would go to, and why."""
        now = time.monotonic()
        description = self.describe()
        choice = self._pick(now, set(), peek=True)
        if choice is None:
            verdict = "no endpoint is available: the next open fails"
        else:
            verdict = (
                f"the next stream goes to {choice.state.name} (priority {choice.state.group}, "
                f"policy {self.options.policy})"
            )
        reasons = []
        for group in description["groups"]:
            share = f"{group['load'] * 100:.0f}% of new streams"
            available = [e["endpoint"] for e in group["endpoints"] if e["available"]]
            names = ", ".join(available) or "none"
            reasons.append(f"priority {group['priority']}: {share}; available: {names}")
            for endpoint in group["endpoints"]:
                if not endpoint["available"]:
                    reasons.append(f"  {endpoint['endpoint']}: {endpoint['why']}")
        return {
            "upstream": self.name,
            "endpoint": choice.state.name if choice else None,
            "priority": choice.state.group if choice else None,
            "verdict": verdict,
            "reasons": reasons,
            "state": description,
        }


async def _close(provider: StreamProvider, grace: float | None) -> None:
    await provider.aclose(grace=grace)


async def _pump(listener: Listener, merged: MergedListener) -> None:
    while True:
        try:
            stream = await listener.accept()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return
        except Exception as exc:
            merged.feed(exc)
            continue
        if not merged.feed(stream):
            await stream.reset(ErrorCode.REFUSED_STREAM)
