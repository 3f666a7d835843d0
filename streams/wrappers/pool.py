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

import copy
import itertools
import logging
import math
import random
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self

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
from .._core.tasks import TaskHost
from ._pool_config import (
    ConnectionEvent,
    Endpoint,
    EndpointsUnavailable,
    PoolOptions,
    PoolOverloaded,
    backoff_delay,
)
from ._pool_state import ConnectionRecord, EndpointRecord, PoolState
from .balance import Policy, make_policy
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
        self._rng = rng if rng is not None else random.Random()
        self._state = PoolState(self.options, self.policy, self._rng)
        self._resolver = resolver
        self._make_dialer = make_dialer
        # address from the resolver -> the endpoint name its dialer gave
        self._discovered: dict[str, str] = {}
        self._state.resolved_once = resolver is None
        for endpoint in endpoints:
            spec = endpoint if isinstance(endpoint, Endpoint) else Endpoint(dialer=endpoint)
            if spec.name in self._state.endpoints:
                raise ConfigError(f"endpoint {spec.name!r} is listed twice", path="endpoints")
            self._state.endpoints[spec.name] = EndpointRecord(spec)
        self._group: anyio.abc.TaskGroup | None = None
        self._changed = anyio.Event()
        self._upkeep = anyio.Event()
        self._closed = anyio.Event()
        self._merged: MergedListener | None = None
        self._handler: Handler | None = None
        self._listening = False
        self._hooks: list[Callable[[ConnectionEvent], None]] = []
        self._host: TaskHost | None = None
        # the connection of the last plan that had no choice to make (see _solo_room)
        self._solo: ConnectionRecord | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        # hosted in a task of its own: closing the pool must not cancel the caller's block
        self._host = TaskHost()
        group = await self._host.__aenter__()
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
        assert self._host is not None
        return await self._host.__aexit__(exc_type, exc_val, exc_tb)

    async def aclose(self, *, grace: float | None = None) -> None:
        if self._state.closing:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_SLACK):
                await self._closed.wait()
            return
        self._state.closing = True
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
            if self._host is not None:
                self._host.cancel()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def is_closing(self) -> bool:
        return self._state.closing

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
        """Ping a connection the policy picks (dialling one if there is none) and return its
        round-trip time: a health check through the pool sees whether the endpoint is
        reachable, not merely whether a connection happens to be open.

        :raises EndpointsUnavailable: if every endpoint is down
        """
        conn = self._take()
        if conn is None:
            conn = await self._wait_for_room()
        provider = conn.provider
        assert provider is not None
        rtt: float = await provider.ping()
        return rtt

    # -- endpoints -------------------------------------------------------------------------

    def add_endpoint(self, endpoint: Endpoint | Dialer) -> None:
        """Add an endpoint; streams may go there from now on.

        :raises ~streams.ConfigError: if an endpoint of that name is already there
        """
        spec = endpoint if isinstance(endpoint, Endpoint) else Endpoint(dialer=endpoint)
        existing = self._state.endpoints.get(spec.name)
        if existing is not None and not existing.removed:
            raise ConfigError(f"endpoint {spec.name!r} is already in the pool", path="endpoints")
        record = EndpointRecord(spec)
        if existing is not None:
            # it came back while its old connections still drain: keep them in view
            record.connections = existing.connections
            for conn in record.connections:
                conn.endpoint = record
        self._state.endpoints[spec.name] = record
        self._notify()

    def remove_endpoint(self, name: str, *, grace: float | None = None) -> None:
        """Stop sending new streams to *name* and drain its connections: their open streams
        may finish within *grace* (``close_grace`` when ``None``). Unknown names are
        ignored."""
        record = self._state.endpoints.get(name)
        if record is None or record.removed:
            return
        record.removed = True
        for conn in record.connections:
            self._retire(conn, self.options.close_grace if grace is None else grace)
        if not record.connections:
            del self._state.endpoints[name]
        self._notify()

    @property
    def endpoints(self) -> list[str]:
        """The names of the endpoints taking new streams."""
        return [name for name, record in self._state.endpoints.items() if not record.removed]

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
        return {
            "policy": self.policy.name,
            "closing": self._state.closing,
            "pending_opens": self._state.waiting,
            "active_streams": self.active_streams,
            "resolver_error": self._state.resolve_error,
            "endpoints": self._state.describe(anyio.current_time()),
        }

    def explain(self) -> dict[str, Any]:
        """Where the next stream would go and why, as plain data, without opening it (the
        policy decides on a copy of its state, so the real next pick is not consumed)."""
        policy = self._state.policy
        self._state.policy = copy.deepcopy(policy)
        try:
            plan = self._state.plan(anyio.current_time)
        finally:
            self._state.policy = policy
        result: dict[str, Any] = {"policy": policy.name}
        if plan.use is not None:
            result["decision"] = "use"
            result["connection"] = plan.use.id
            result["endpoint"] = plan.use.endpoint.name
            result["active_streams"] = plan.use.load()
        elif plan.error is not None:
            result["decision"] = "fail"
            result["error"] = str(plan.error)
        else:
            result["decision"] = "wait"
            result["why"] = "every connection is full or still connecting"
        if plan.dial is not None:
            result["dial"] = plan.dial.name
        return result

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
            conn = self._solo_room()
            if conn is None:
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
                if not exc.retryable or attempt >= _OPEN_RETRIES or self._state.closing:
                    raise
                self._state.refresh(conn, anyio.current_time)
            finally:
                conn.reserved -= 1
                if self._state.waiting:
                    self._wake_waiters()
        raise AssertionError("unreachable")  # pragma: no cover

    def _solo_room(self) -> ConnectionRecord | None:
        """The pool's only connection to its only endpoint if it is ready and has room:
        what :meth:`PoolState.plan` would return then (nothing to choose, nothing to dial),
        checked without a plan or its allocations; ``None``: ask for a plan."""
        conn = self._solo
        if conn is None or conn.state != "ready":
            return None
        record = conn.endpoint
        state = self._state
        # a record not removed is the one its name maps to
        if record.removed or len(record.connections) != 1 or len(state.endpoints) != 1:
            return None
        provider = conn.provider
        if state.closing or provider is None or provider.is_closing:
            return None
        load = provider.active_streams
        if load < conn.reserved:
            load = conn.reserved
        limit = self.options.max_streams_per_connection
        peer = provider.max_streams
        if peer is not None and peer < limit:
            limit = peer
        return conn if load < limit else None

    def _take(self) -> ConnectionRecord | None:
        """Decide, then start the dial the decision asks for; ``None``: wait for room."""
        state = self._state
        plan = state.plan(anyio.current_time)
        if plan.dial is not None:
            self._dial(plan.dial)
        if plan.error is not None:
            raise plan.error
        use = plan.use
        if use is not None and len(state.endpoints) == 1 and len(use.endpoint.connections) == 1:
            self._solo = use
        return use

    async def _wait_for_room(self) -> ConnectionRecord:
        if self._state.waiting >= self.options.max_pending_opens:
            raise PoolOverloaded(
                f"{self._state.waiting} opens already wait for a connection"
                f" (max_pending_opens={self.options.max_pending_opens})"
            )
        timeout = self.options.open_timeout
        self._state.waiting += 1
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
            self._state.waiting -= 1

    def _connections(self) -> list[ConnectionRecord]:
        return self._state.connections()

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

    def _dial(self, record: EndpointRecord) -> None:
        if self._group is None:
            raise RuntimeError("a Pool must be used as 'async with pool:'")
        conn = ConnectionRecord(record, anyio.current_time())
        record.connections.append(conn)
        self._group.start_soon(self._run_connection, conn)

    def _retire(self, conn: ConnectionRecord, grace: float | None) -> None:
        if conn.state in ("connecting",) and conn.scope is not None:
            conn.scope.cancel()
        if conn.state != "closed":
            conn.grace = grace
            if not conn.retire.is_set():
                conn.retired_by_pool = True
            if conn.state == "ready":
                conn.state = "draining"
            conn.retire.set()

    async def _run_connection(self, conn: ConnectionRecord) -> None:
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

    async def _serve_connection(self, conn: ConnectionRecord, provider: StreamProvider) -> None:
        record = conn.endpoint
        conn.provider = provider
        self.backend_name = provider.backend_name
        if conn.state == "connecting":
            conn.state = "ready"
        conn.idle_since = conn.ready_at = anyio.current_time()
        # the failure count is reset once the connection proves stable (see upkeep), so a
        # peer that accepts and drops connections at once still meets a growing backoff
        record.opened += 1
        self._emit(ConnectionEvent(kind="opened", endpoint=record.name, connection=conn.id))
        self._notify()
        async with anyio.create_task_group() as group:
            conn.group = group
            if self._listening:
                conn.forwarding = True
                group.start_soon(self._forward, provider)
            group.start_soon(self._watch, conn, provider)
            if self.options.ping_interval is not None:
                group.start_soon(self._keepalive, conn, provider, self.options.ping_interval)
            await conn.retire.wait()
            if conn.state != "closed":
                conn.state = "draining"
            self._notify()
            with anyio.CancelScope(shield=True):
                await provider.aclose(grace=conn.grace)
            group.cancel_scope.cancel()

    async def _keepalive(
        self, conn: ConnectionRecord, provider: StreamProvider, interval: float
    ) -> None:
        timeout = self.options.ping_timeout
        while True:
            await anyio.sleep(interval)
            try:
                with anyio.fail_after(timeout):
                    await provider.ping()
            except NotImplementedError:
                return  # the protocol has no ping: the rtt stays unknown
            except TimeoutError:
                logger.warning(
                    "connection %s to %s did not answer a ping within %s s; closing it",
                    conn.id,
                    conn.endpoint.name,
                    timeout,
                )
                self._retire(conn, 0)
                return
            except Exception:
                return  # the connection is ending; _watch sees it

    async def _watch(self, conn: ConnectionRecord, provider: StreamProvider) -> None:
        await provider.wait_closed()
        conn.retire.set()

    def _connection_ended(self, conn: ConnectionRecord, error: BaseException | None) -> None:
        record = conn.endpoint
        was_open = conn.provider is not None
        conn.state = "closed"
        if self._solo is conn:
            self._solo = None
        if conn in record.connections:
            record.connections.remove(conn)
        if (
            record.removed
            and not record.connections
            and self._state.endpoints.get(record.name) is record
        ):
            del self._state.endpoints[record.name]
        now = anyio.current_time()
        if was_open:
            failure = getattr(conn.provider, "failure", None)
            if isinstance(failure, GoingAway):
                failure = None
            if failure is not None:
                record.failures_total += 1
            if not conn.retired_by_pool:
                self._state.ended_by_peer(conn, now, str(failure or "closed"))
            self._emit(
                ConnectionEvent(
                    kind="closed", endpoint=record.name, connection=conn.id, error=failure or error
                )
            )
        elif error is not None:
            record.failures += 1
            record.failures_total += 1
            record.last_error = str(error) or type(error).__name__
            delay = backoff_delay(record.failures, self.options, self._rng)
            record.retry_at = now + delay
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
        if self._state.closing:
            merged.end(ProviderClosed("pool is closed"))
        if not self._listening:
            self._listening = True
            for conn in self._state.ready(anyio.current_time()):
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
        while not self._state.closing:
            wake = self._maintain_once(anyio.current_time())
            upkeep = self._upkeep
            with anyio.move_on_after(max(wake, 0.001)):
                await upkeep.wait()

    def _maintain_once(self, now: float) -> float:
        """Apply one round of upkeep; returns the seconds until the next one is due."""
        upkeep = self._state.upkeep(now)
        for conn in upkeep.retire:
            self._retire(conn, 0)
        for record in upkeep.dial:
            self._dial(record)
        return upkeep.wake

    async def _resolve_loop(self) -> None:
        assert self._resolver is not None
        assert self._make_dialer is not None
        while not self._state.closing:
            # a resolver that hangs must not hold the pool's view of the service forever
            bound = max(self.options.resolve_interval, 1.0)
            try:
                with anyio.fail_after(bound):
                    addresses = await self._resolver.resolve()
            except TimeoutError:
                self._state.resolve_error = f"the resolver did not answer within {bound} s"
                logger.warning("resolving endpoints timed out, keeping the last set")
            except Exception as exc:
                # a failed lookup keeps the last known set
                self._state.resolve_error = str(exc) or type(exc).__name__
                logger.warning("resolving endpoints failed, keeping the last set: %s", exc)
            else:
                self._state.resolve_error = None
                self._apply_resolved(addresses)
            self._state.resolved_once = True
            self._notify()
            await anyio.sleep(self.options.resolve_interval)

    def _apply_resolved(self, addresses: set[str]) -> None:
        assert self._make_dialer is not None
        for address in sorted(addresses - self._discovered.keys()):
            dialer = self._make_dialer(address)
            self._discovered[address] = dialer.endpoint
            record = self._state.endpoints.get(dialer.endpoint)
            if record is None or record.removed:
                self.add_endpoint(Endpoint(dialer=dialer))
        for address in sorted(self._discovered.keys() - addresses):
            self.remove_endpoint(self._discovered.pop(address))

    def __repr__(self) -> str:
        return (
            f"<Pool {len(self._state.endpoints)} endpoints, {len(self._connections())} connections>"
        )
