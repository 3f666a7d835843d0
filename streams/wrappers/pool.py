"""The connection pool: one :class:`~streams.StreamProvider` spanning many connections to
many endpoints.

Every decision (which connection carries a stream, whether to dial, which connection to
retire) is taken synchronously over the pool's plain state, the way httpcore's pool does
it; the I/O it implies (dialling, closing) happens afterwards in the task that owns the
connection. Each connection runs in its own task inside the pool's task group
(``async with dialer.dial() as provider:``), so nothing runs detached, and closing the pool
drains and closes them all within a bound.

See ``docs/pool.md`` for the options and how the policies behave.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import anyio.abc

from .._core.abc import Handler, HandlerResult, Listener, Stream, StreamProvider
from .._core.backend import Dialer
from .._core.errors import (
    ConfigError,
    ConnectionLost,
    ErrorCode,
    GoingAway,
    OpenTimeout,
    ProviderClosed,
    StreamError,
)
from .._core.headers import Headers, HeadersLike
from .._core.server import MergedListener
from ._pool_config import (
    ConnectionEvent,
    Endpoint,
    EndpointsUnavailable,
    PoolOptions,
    PoolOverloaded,
    backoff_delay,
)
from .balance import Candidate, Policy, make_policy
from .discovery import Resolver

__all__ = [
    "ConnectionEvent",
    "Endpoint",
    "EndpointsUnavailable",
    "Pool",
    "PoolOptions",
    "PoolOverloaded",
    "backoff_delay",
]

logger = logging.getLogger("streams.pool")

#: how often a caller waiting for room re-checks, in case a stream ended unnoticed
_RECHECK = 0.05
#: how long closing one connection may take beyond its grace period
_CLOSE_SLACK = 2.5
#: how many times one open is tried again on another connection after a retryable refusal
_OPEN_RETRIES = 3


ConnectionState = Literal["connecting", "ready", "draining", "closed"]
_ids = itertools.count(1)


class _Endpoint:
    """The pool's record of one endpoint."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.spec = endpoint
        self.name = endpoint.name
        self.connections: list[_Connection] = []
        self.failures = 0
        self.last_error: str | None = None
        self.retry_at = 0.0
        self.removed = False

    def live(self) -> list[_Connection]:
        """Connections that count towards the limits: connecting or ready, not draining."""
        return [conn for conn in self.connections if conn.state in ("connecting", "ready")]


class _Connection:
    """The pool's record of one connection, run by :meth:`Pool._run_connection`."""

    def __init__(self, endpoint: _Endpoint, now: float) -> None:
        self.id = next(_ids)
        self.endpoint = endpoint
        self.started = now
        self.idle_since = now
        self.provider: StreamProvider | None = None
        self.state: ConnectionState = "connecting"
        self.retire = anyio.Event()
        self.grace: float | None = None
        self.reserved = 0
        # streams opened here, and the count the upkeep last saw (idle means unchanged)
        self.uses = 0
        self.seen_uses = 0
        self.scope: anyio.CancelScope | None = None
        self.group: anyio.abc.TaskGroup | None = None
        self.forwarding = False

    def refresh(self) -> None:
        """Notice a Go Away or a dead connection between events."""
        if self.state == "ready" and self.provider is not None and self.provider.is_closing:
            self.state = "draining"

    def load(self) -> int:
        assert self.provider is not None
        return self.provider.active_streams + self.reserved

    def limit(self, configured: int) -> int:
        assert self.provider is not None
        peer = self.provider.max_streams
        return configured if peer is None else min(configured, peer)


class Pool(StreamProvider):
    """A provider that spreads streams over connections to one or more endpoints.

    :param endpoints: the fixed endpoints (more may come from *resolver*)
    :param options: limits, timeouts and backoff (:class:`PoolOptions`)
    :param policy: a :class:`~streams.wrappers.balance.Policy` or its name
    :param resolver: where further endpoints come from, looked up every
        ``options.resolve_interval`` seconds
    :param make_dialer: turns an address from *resolver* into a dialer (required with a
        resolver)
    :param rng: the random generator for jitter (seeded in tests)

    Use it as ``async with Pool(...) as pool:``; it owns a task group that runs its
    connections, and closing it drains and closes them all.
    """

    def __init__(
        self,
        endpoints: Iterable[Endpoint | Dialer] = (),
        *,
        options: PoolOptions | None = None,
        policy: str | Policy = "least_active",
        resolver: Resolver | None = None,
        make_dialer: Callable[[str], Dialer] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if resolver is not None and make_dialer is None:
            raise ConfigError("a resolver needs make_dialer", path="make_dialer")
        self.options = options if options is not None else PoolOptions()
        self.policy = make_policy(policy)
        self._resolver = resolver
        self._make_dialer = make_dialer
        self._rng = rng if rng is not None else random.Random()
        self._endpoints: dict[str, _Endpoint] = {}
        # address from the resolver -> the endpoint name its dialer gave
        self._discovered: dict[str, str] = {}
        self._resolved_once = resolver is None
        self._resolve_error: str | None = None
        for endpoint in endpoints:
            spec = endpoint if isinstance(endpoint, Endpoint) else Endpoint(dialer=endpoint)
            if spec.name in self._endpoints:
                raise ConfigError(f"endpoint {spec.name!r} is listed twice", path="endpoints")
            self._endpoints[spec.name] = _Endpoint(spec)
        self._group: anyio.abc.TaskGroup | None = None
        self._changed = anyio.Event()
        self._upkeep = anyio.Event()
        self._waiting = 0
        self._closing = False
        self._closed = anyio.Event()
        self._merged: MergedListener | None = None
        self._handler: Handler | None = None
        self._listening = False
        self._hooks: list[Callable[[ConnectionEvent], None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        group.start_soon(self._maintain)
        if self._resolver is not None:
            group.start_soon(self._resolve_loop)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        assert self._group is not None
        self._group.cancel_scope.cancel()
        return await self._group.__aexit__(exc_type, exc_val, exc_tb)

    async def aclose(self, *, grace: float | None = None) -> None:
        if self._closing:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_SLACK):
                await self._closed.wait()
            return
        self._closing = True
        if grace is None:
            grace = self.options.close_grace
        with anyio.CancelScope(shield=True):
            for conn in self._connections():
                self._retire(conn, grace)
            self._notify()
            with anyio.move_on_after(grace + _CLOSE_SLACK):
                while self._connections():
                    await self._changed.wait()
            if self._merged is not None:
                self._merged.end(ProviderClosed("pool is closed"))
            self._closed.set()
            if self._group is not None:
                self._group.cancel_scope.cancel()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def is_closing(self) -> bool:
        return self._closing

    @property
    def active_streams(self) -> int:
        return sum(
            conn.provider.active_streams
            for conn in self._connections()
            if conn.provider is not None and conn.state != "closed"
        )

    @property
    def rtt(self) -> float | None:
        measured = [
            conn.provider.rtt
            for conn in self._connections()
            if conn.provider is not None and conn.provider.rtt is not None
        ]
        return min(measured) if measured else None

    async def ping(self) -> float:
        """Ping the least loaded ready connection and return its round-trip time.

        :raises EndpointsUnavailable: if no connection is ready
        """
        ready = [conn for conn in self._ready() if conn.provider is not None]
        if not ready:
            raise EndpointsUnavailable(self._reasons(anyio.current_time()))
        conn = min(ready, key=_Connection.load)
        assert conn.provider is not None
        return await conn.provider.ping()

    # -- endpoints -------------------------------------------------------------------------

    def add_endpoint(self, endpoint: Endpoint | Dialer) -> None:
        """Add an endpoint; streams may go there from now on.

        :raises ~streams.ConfigError: if an endpoint of that name is already there
        """
        spec = endpoint if isinstance(endpoint, Endpoint) else Endpoint(dialer=endpoint)
        existing = self._endpoints.get(spec.name)
        if existing is not None and not existing.removed:
            raise ConfigError(f"endpoint {spec.name!r} is already in the pool", path="endpoints")
        record = _Endpoint(spec)
        if existing is not None:
            # it came back while its old connections still drain: keep them in view
            record.connections = existing.connections
            for conn in record.connections:
                conn.endpoint = record
        self._endpoints[spec.name] = record
        self._notify()

    def remove_endpoint(self, name: str, *, grace: float | None = None) -> None:
        """Stop sending new streams to *name* and drain its connections (their open streams
        finish within *grace*). Unknown names are ignored."""
        record = self._endpoints.get(name)
        if record is None or record.removed:
            return
        record.removed = True
        for conn in record.connections:
            self._retire(conn, grace)
        if not record.connections:
            del self._endpoints[name]
        self._notify()

    @property
    def endpoints(self) -> list[str]:
        """The names of the endpoints taking new streams."""
        return [name for name, record in self._endpoints.items() if not record.removed]

    # -- introspection ---------------------------------------------------------------------

    def subscribe(self, callback: Callable[[ConnectionEvent], None]) -> Callable[[], None]:
        """Call *callback* on every connection opened, closed or failed; returns a function
        that unsubscribes. Callbacks run synchronously and must not block."""
        self._hooks.append(callback)

        def unsubscribe() -> None:
            if callback in self._hooks:
                self._hooks.remove(callback)

        return unsubscribe

    def describe(self) -> dict[str, Any]:
        """The pool as plain data (for the debug view and metrics): endpoints, their
        connections, states, active streams and round-trip times."""
        now = anyio.current_time()
        endpoints = []
        for record in self._endpoints.values():
            connections = []
            for conn in record.connections:
                conn.refresh()
                provider = conn.provider
                connections.append(
                    {
                        "id": conn.id,
                        "state": conn.state,
                        "active_streams": provider.active_streams if provider else 0,
                        "max_streams": conn.limit(self.options.max_streams_per_connection)
                        if provider
                        else None,
                        "rtt": provider.rtt if provider else None,
                        "age": now - conn.started,
                    }
                )
            if record.removed:
                state = "removed"
            elif record.failures and now < record.retry_at:
                state = "backoff"
            else:
                state = "up" if record.live() else "idle"
            endpoints.append(
                {
                    "endpoint": record.name,
                    "weight": record.spec.weight,
                    "state": state,
                    "failures": record.failures,
                    "last_error": record.last_error,
                    "retry_in": max(record.retry_at - now, 0.0) if record.failures else None,
                    "connections": connections,
                }
            )
        return {
            "policy": self.policy.name,
            "closing": self._closing,
            "pending_opens": self._waiting,
            "active_streams": self.active_streams,
            "resolver_error": self._resolve_error,
            "endpoints": endpoints,
        }

    # -- opening ---------------------------------------------------------------------------

    async def open_stream(
        self, headers: HeadersLike | None = None, *, wait_accept: bool = True
    ) -> Stream:
        """Open a stream on the connection the policy picks, dialling one if needed.

        Waiting for a connection with room is bounded by ``open_timeout``; the peer's
        answer is bounded by the connection's own open timeout.

        :raises PoolOverloaded: if ``max_pending_opens`` callers already wait
        :raises EndpointsUnavailable: if every endpoint is down (each one named, with why)
        :raises ~streams.OpenTimeout: if no connection had room within ``open_timeout``
        :raises ~streams.ProviderClosed: after :meth:`aclose`
        """
        for attempt in itertools.count():
            conn = self._take()
            if conn is None:
                conn = await self._wait_for_room()
            provider = conn.provider
            assert provider is not None
            conn.reserved += 1
            conn.uses += 1
            try:
                return await provider.open_stream(headers, wait_accept=wait_accept)
            except StreamError as exc:
                # a Go Away or a refusal that came first: the peer processed nothing
                if not exc.retryable or attempt >= _OPEN_RETRIES or self._closing:
                    raise
                conn.refresh()
            finally:
                conn.reserved -= 1
                if self._waiting:
                    self._wake_waiters()
        raise AssertionError("unreachable")  # pragma: no cover

    def _take(self) -> _Connection | None:
        """Decide, then start the dial the decision asks for; ``None``: wait for room."""
        use, dial, error = self._plan()
        if dial is not None:
            self._dial(dial)
        if error is not None:
            raise error
        return use

    async def _wait_for_room(self) -> _Connection:
        if self._waiting >= self.options.max_pending_opens:
            raise PoolOverloaded(
                f"{self._waiting} opens already wait for a connection"
                f" (max_pending_opens={self.options.max_pending_opens})"
            )
        timeout = self.options.open_timeout
        self._waiting += 1
        try:
            with anyio.fail_after(timeout if timeout is not None else math.inf):
                while True:
                    # counted as waiting now: this demand may call for one more connection
                    conn = self._take()
                    if conn is not None:
                        return conn
                    changed = self._changed
                    with anyio.move_on_after(_RECHECK):
                        await changed.wait()
        except TimeoutError:
            raise OpenTimeout(f"no connection had room for the stream within {timeout} s") from None
        finally:
            self._waiting -= 1

    def _plan(self) -> tuple[_Connection | None, _Endpoint | None, BaseException | None]:
        """Where the next stream goes, as ``(connection, endpoint to dial, error)``.

        Pure: it reads the pool's state and changes nothing but the policy's own. An
        endpoint without a connection competes with the connections that have room (so a
        lazy pool still spreads over its endpoints); a caller never waits for a dial while
        another connection has room. When every connection is full, one more connection
        is dialled if the dials under way cannot carry the callers who wait.
        """
        if self._closing:
            return None, None, ProviderClosed("pool is closed")
        now = -math.inf  # read the clock only when a dial is considered
        per_connection = self.options.max_streams_per_connection
        ready: list[_Connection] = []
        idle_endpoints: list[_Endpoint] = []
        connecting_room = 0
        any_ready = False
        for record in self._endpoints.values():
            if record.removed:
                continue
            live = 0
            for conn in record.connections:
                conn.refresh()
                if conn.state == "connecting":
                    connecting_room += per_connection
                    live += 1
                elif conn.state == "ready":
                    live += 1
                    any_ready = True
                    if conn.load() < conn.limit(per_connection):
                        ready.append(conn)
            if live == 0:
                if now == -math.inf:
                    now = anyio.current_time()
                if self._may_dial(record, now):
                    idle_endpoints.append(record)
        if ready and not idle_endpoints and len(ready) == 1:
            return ready[0], None, None
        if ready or idle_endpoints:
            candidates = [self._candidate(conn) for conn in ready]
            candidates += [_dial_candidate(record, 0) for record in idle_endpoints]
            picked = self.policy.pick(candidates)
            if picked.connected:
                return _by_key(ready, picked.key), None, None
            dial = self._endpoints[picked.endpoint]
            if ready:
                # start the dial, but do not make this caller wait for it
                picked = self.policy.pick(candidates[: len(ready)])
                return _by_key(ready, picked.key), dial, None
            return None, dial, None
        if connecting_room >= max(self._waiting, 1):
            return None, None, None
        now = anyio.current_time()
        growable = [
            record
            for record in self._endpoints.values()
            if self._may_dial(record, now)
            and len(record.live()) < self.options.max_connections_per_endpoint
        ]
        if growable:
            picked = self.policy.pick(
                [_dial_candidate(record, len(record.live())) for record in growable]
            )
            return None, self._endpoints[picked.endpoint], None
        if connecting_room or any_ready or not self._resolved_once:
            return None, None, None  # wait for a stream to end or a dial to finish
        return None, None, EndpointsUnavailable(self._reasons(now))

    def _candidate(self, conn: _Connection) -> Candidate:
        provider = conn.provider
        assert provider is not None
        return Candidate(
            key=str(conn.id),
            endpoint=conn.endpoint.name,
            weight=conn.endpoint.spec.weight,
            active_streams=conn.load(),
            rtt=provider.rtt,
        )

    def _may_dial(self, record: _Endpoint, now: float) -> bool:
        if self._closing or record.removed or now < record.retry_at:
            return False
        if len(record.live()) >= self.options.max_connections_per_endpoint:
            return False
        limit = self.options.max_connections
        return limit is None or self._live_count() < limit

    def _live_count(self) -> int:
        return sum(len(record.live()) for record in self._endpoints.values())

    def _reasons(self, now: float) -> dict[str, str]:
        reasons = {}
        for record in self._endpoints.values():
            if record.removed:
                continue
            if record.failures:
                wait = max(record.retry_at - now, 0.0)
                reasons[record.name] = (
                    f"{record.failures} failed dials, last: {record.last_error};"
                    f" next try in {wait:.2f} s"
                )
            elif self.options.max_connections is not None:
                reasons[record.name] = "the pool is at max_connections"
            else:
                reasons[record.name] = "not connected"
        if self._resolve_error is not None:
            reasons["resolver"] = self._resolve_error
        return reasons

    def _ready(self) -> list[_Connection]:
        found = []
        for conn in self._connections():
            conn.refresh()
            if conn.state == "ready":
                found.append(conn)
        return found

    def _connections(self) -> list[_Connection]:
        return [conn for record in self._endpoints.values() for conn in record.connections]

    def _wake_waiters(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _notify(self) -> None:
        """Something changed beyond a single stream: wake the waiters and the upkeep."""
        self._wake_waiters()
        upkeep, self._upkeep = self._upkeep, anyio.Event()
        upkeep.set()

    def _emit(self, event: ConnectionEvent) -> None:
        for callback in list(self._hooks):
            try:
                callback(event)
            except Exception:
                logger.exception("a pool event hook failed")

    # -- running connections ---------------------------------------------------------------

    def _dial(self, record: _Endpoint) -> None:
        assert self._group is not None
        conn = _Connection(record, anyio.current_time())
        record.connections.append(conn)
        self._group.start_soon(self._run_connection, conn)

    def _retire(self, conn: _Connection, grace: float | None) -> None:
        if conn.state in ("connecting",) and conn.scope is not None:
            conn.scope.cancel()
        if conn.state != "closed":
            conn.grace = grace
            if conn.state == "ready":
                conn.state = "draining"
            conn.retire.set()

    async def _run_connection(self, conn: _Connection) -> None:
        error: BaseException | None = None
        timeout = self.options.connect_timeout
        try:
            with anyio.CancelScope(deadline=anyio.current_time() + timeout) as scope:
                conn.scope = scope
                if conn.retire.is_set():
                    return
                async with conn.endpoint.spec.dialer.dial() as provider:
                    # the deadline was for the dial only
                    scope.deadline = math.inf
                    await self._serve_connection(conn, provider)
            if scope.cancelled_caught and conn.provider is None and not conn.retire.is_set():
                error = ConnectionLost(f"no connection within {timeout} s")
        except Exception as exc:
            error = exc
        finally:
            self._connection_ended(conn, error)

    async def _serve_connection(self, conn: _Connection, provider: StreamProvider) -> None:
        record = conn.endpoint
        conn.provider = provider
        self.backend_name = provider.backend_name
        if conn.state == "connecting":
            conn.state = "ready"
        conn.idle_since = anyio.current_time()
        record.failures = 0
        record.last_error = None
        record.retry_at = 0.0
        self._emit(ConnectionEvent(kind="opened", endpoint=record.name, connection=conn.id))
        self._notify()
        async with anyio.create_task_group() as group:
            conn.group = group
            if self._listening:
                conn.forwarding = True
                group.start_soon(self._forward, provider)
            group.start_soon(self._watch, conn, provider)
            await conn.retire.wait()
            if conn.state != "closed":
                conn.state = "draining"
            self._notify()
            with anyio.CancelScope(shield=True):
                await provider.aclose(grace=conn.grace)
            group.cancel_scope.cancel()

    async def _watch(self, conn: _Connection, provider: StreamProvider) -> None:
        await provider.wait_closed()
        conn.retire.set()

    def _connection_ended(self, conn: _Connection, error: BaseException | None) -> None:
        record = conn.endpoint
        was_open = conn.provider is not None
        conn.state = "closed"
        if conn in record.connections:
            record.connections.remove(conn)
        if record.removed and not record.connections and self._endpoints.get(record.name) is record:
            del self._endpoints[record.name]
        if was_open:
            failure = getattr(conn.provider, "failure", None)
            if isinstance(failure, GoingAway):
                failure = None
            self._emit(
                ConnectionEvent(
                    kind="closed", endpoint=record.name, connection=conn.id, error=failure or error
                )
            )
        elif error is not None:
            record.failures += 1
            record.last_error = str(error) or type(error).__name__
            delay = backoff_delay(record.failures, self.options, self._rng)
            record.retry_at = anyio.current_time() + delay
            logger.info("dial to %s failed (%s); next try in %.2f s", record.name, error, delay)
            self._emit(
                ConnectionEvent(
                    kind="failed", endpoint=record.name, connection=conn.id, error=error
                )
            )
        self._notify()

    # -- the remote sides' streams ---------------------------------------------------------

    def listen(self, handler: Handler | None = None) -> Listener:
        """Merge the streams the remote sides open on any connection, now or later.

        :raises ~anyio.BusyResourceError: if a listener is already open
        """
        if self._merged is not None and not self._merged.closed:
            raise anyio.BusyResourceError("listening on")
        self._handler = handler
        merged = self._merged = MergedListener(self.options.accept_backlog)
        if self._closing:
            merged.end(ProviderClosed("pool is closed"))
        if not self._listening:
            self._listening = True
            for conn in self._ready():
                if conn.group is not None and conn.provider is not None and not conn.forwarding:
                    conn.forwarding = True
                    conn.group.start_soon(self._forward, conn.provider)
        return merged

    def _decide(self, headers: Headers) -> Any:
        handler = self._handler
        if handler is None:
            result: HandlerResult = (None, True)
            return result
        return handler(headers)

    async def _forward(self, provider: StreamProvider) -> None:
        listener = provider.listen(self._decide)
        while True:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except Exception as exc:
                # what the handler raised: the pool's user sees it on accept()
                if self._merged is not None:
                    self._merged.feed(exc)
                continue
            merged = self._merged
            if merged is None or not merged.feed(stream):
                await stream.reset(ErrorCode.REFUSED_STREAM)

    # -- background upkeep -----------------------------------------------------------------

    async def _maintain(self) -> None:
        """Keep ``min_connections`` per endpoint, retire idle and drained connections."""
        while not self._closing:
            wake = self._maintain_once(anyio.current_time())
            upkeep = self._upkeep
            with anyio.move_on_after(max(wake, 0.001)):
                await upkeep.wait()

    def _maintain_once(self, now: float) -> float:
        """One round of upkeep; returns the seconds until the next one is due."""
        options = self.options
        wake = 1.0 if options.idle_timeout is None else min(options.idle_timeout / 2, 1.0)
        for record in list(self._endpoints.values()):
            if record.removed:
                continue
            for conn in list(record.connections):
                conn.refresh()
                provider = conn.provider
                if provider is None or conn.state == "closed":
                    continue
                busy = provider.active_streams + conn.reserved > 0
                if busy or conn.uses != conn.seen_uses:
                    conn.seen_uses = conn.uses
                    conn.idle_since = now
                elif conn.state == "draining":
                    self._retire(conn, 0)
            ready = [conn for conn in record.connections if conn.state == "ready"]
            if options.idle_timeout is not None:
                idle = sorted(
                    (c for c in ready if c.provider is not None and c.load() == 0),
                    key=lambda c: c.idle_since,
                )
                for conn in idle:
                    if len(record.live()) <= options.min_connections:
                        break
                    if now - conn.idle_since >= options.idle_timeout:
                        self._retire(conn, 0)
            while len(record.live()) < options.min_connections and self._may_dial(record, now):
                self._dial(record)
            if len(record.live()) < options.min_connections and record.retry_at > now:
                wake = min(wake, record.retry_at - now)
        return wake

    async def _resolve_loop(self) -> None:
        assert self._resolver is not None
        assert self._make_dialer is not None
        while not self._closing:
            try:
                addresses = await self._resolver.resolve()
            except Exception as exc:
                # a failed lookup keeps the last known set
                self._resolve_error = str(exc) or type(exc).__name__
                logger.warning("resolving endpoints failed, keeping the last set: %s", exc)
            else:
                self._resolve_error = None
                self._apply_resolved(addresses)
            self._resolved_once = True
            self._notify()
            await anyio.sleep(self.options.resolve_interval)

    def _apply_resolved(self, addresses: set[str]) -> None:
        assert self._make_dialer is not None
        for address in sorted(addresses - self._discovered.keys()):
            dialer = self._make_dialer(address)
            self._discovered[address] = dialer.endpoint
            record = self._endpoints.get(dialer.endpoint)
            if record is None or record.removed:
                self.add_endpoint(Endpoint(dialer=dialer))
        for address in sorted(self._discovered.keys() - addresses):
            self.remove_endpoint(self._discovered.pop(address))

    def __repr__(self) -> str:
        return f"<Pool {len(self._endpoints)} endpoints, {len(self._connections())} connections>"


def _dial_candidate(record: _Endpoint, connections: int) -> Candidate:
    return Candidate(
        key=f"dial:{record.name}",
        endpoint=record.name,
        weight=record.spec.weight,
        active_streams=connections,
        connected=False,
    )


def _by_key(connections: list[_Connection], key: str) -> _Connection:
    for conn in connections:
        if str(conn.id) == key:
            return conn
    raise AssertionError(f"the policy picked {key!r}, which was not offered")
