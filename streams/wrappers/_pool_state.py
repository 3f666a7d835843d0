"""The pool's state and every decision taken over it, as httpcore's pool does it: which
connection carries the next stream, whether to dial, which connection to retire.

Everything here is synchronous and does no I/O; time comes in as an argument. The
:class:`~streams.wrappers.pool.Pool` applies the decisions (dials, closes) afterwards.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.abc

from .._core.abc import StreamProvider
from .._core.errors import ProviderClosed
from ._pool_config import Endpoint, EndpointsUnavailable, PoolOptions
from .balance import Candidate, Policy

__all__ = ["ConnectionRecord", "EndpointRecord", "Plan", "PoolState", "Upkeep"]

ConnectionState = Literal["connecting", "ready", "draining", "closed"]
_ids = itertools.count(1)


class EndpointRecord:
    """The pool's record of one endpoint."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.spec = endpoint
        self.name = endpoint.name
        self.connections: list[ConnectionRecord] = []
        #: failed dials in a row (the backoff grows with it; a successful dial resets it)
        self.failures = 0
        #: connections opened, and dials or connections that failed, since the start
        self.opened = 0
        self.failures_total = 0
        self.last_error: str | None = None
        self.retry_at = 0.0
        self.removed = False

    def live(self) -> list[ConnectionRecord]:
        """Connections that count towards the limits: connecting or ready, not draining."""
        return [conn for conn in self.connections if conn.state in ("connecting", "ready")]


class ConnectionRecord:
    """The pool's record of one connection (the pool's task for it fills in the rest)."""

    def __init__(self, endpoint: EndpointRecord, now: float) -> None:
        self.id = next(_ids)
        self.endpoint = endpoint
        self.started = now
        self.idle_since = now
        self.provider: StreamProvider | None = None
        self.state: ConnectionState = "connecting"
        self.retire = anyio.Event()
        self.grace: float | None = None
        # opens in flight on this connection, not yet in the provider's count
        self.reserved = 0
        # streams opened here, and the count the upkeep last saw (idle means unchanged)
        self.uses = 0
        self.seen_uses = 0
        self.scope: anyio.CancelScope | None = None
        self.group: anyio.abc.TaskGroup | None = None
        self.forwarding = False

    def refresh(self) -> None:
        """Notice a Go Away or a dead connection that arrived between events."""
        if self.state == "ready" and self.provider is not None and self.provider.is_closing:
            self.state = "draining"

    def load(self) -> int:
        """Streams open here, counting opens under way.

        A provider built on ``MuxProvider`` counts a stream from the first step of
        ``open_stream``, so adding the opens under way would count them twice and make the
        pool grow early; the larger of the two still covers a provider that counts late.
        """
        assert self.provider is not None
        active = self.provider.active_streams
        return active if active >= self.reserved else self.reserved

    def limit(self, configured: int) -> int:
        """The stream limit: the configured one, or the peer's if lower."""
        assert self.provider is not None
        peer = self.provider.max_streams
        return configured if peer is None else min(configured, peer)


@dataclass(frozen=True, slots=True)
class Plan:
    """Where the next stream goes."""

    #: the connection to open it on (``None``: wait)
    use: ConnectionRecord | None = None
    #: an endpoint to dial one more connection to, now
    dial: EndpointRecord | None = None
    #: the error to raise instead
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Upkeep:
    """What a round of upkeep decided."""

    #: connections to close (idle beyond the minimum, or drained after a Go Away)
    retire: list[ConnectionRecord] = field(default_factory=list)
    #: endpoints to dial, once per entry (to keep ``min_connections``)
    dial: list[EndpointRecord] = field(default_factory=list)
    #: seconds until the next round is due
    wake: float = 1.0


class PoolState:
    """The endpoints, their connections, and the decisions over them."""

    def __init__(self, options: PoolOptions, policy: Policy) -> None:
        self.options = options
        self.policy = policy
        self.endpoints: dict[str, EndpointRecord] = {}
        self.closing = False
        #: callers waiting for room
        self.waiting = 0
        #: ``False`` until a resolver answered once (until then, no endpoint is no error)
        self.resolved_once = True
        self.resolve_error: str | None = None

    def connections(self) -> list[ConnectionRecord]:
        """Every connection, in every state."""
        return [conn for record in self.endpoints.values() for conn in record.connections]

    def ready(self) -> list[ConnectionRecord]:
        """The connections that take new streams."""
        found = []
        for conn in self.connections():
            conn.refresh()
            if conn.state == "ready":
                found.append(conn)
        return found

    def may_dial(self, record: EndpointRecord, now: float) -> bool:
        """``True`` if one more connection to *record* is allowed now."""
        if self.closing or record.removed or now < record.retry_at:
            return False
        if len(record.live()) >= self.options.max_connections_per_endpoint:
            return False
        limit = self.options.max_connections
        return limit is None or sum(len(r.live()) for r in self.endpoints.values()) < limit

    def plan(self, clock: Callable[[], float]) -> Plan:
        """Decide where the next stream goes.

        An endpoint without a connection competes with the connections that have room, so
        a lazy pool still spreads over its endpoints; a caller never waits for a dial while
        a connection has room. When every connection is full, one more is dialled if the
        dials under way cannot carry the callers who wait. *clock* is read only when a
        dial is considered.
        """
        if self.closing:
            return Plan(error=ProviderClosed("pool is closed"))
        now = -math.inf
        per_connection = self.options.max_streams_per_connection
        ready: list[ConnectionRecord] = []
        unconnected: list[EndpointRecord] = []
        connecting_room = 0
        any_ready = False
        for record in self.endpoints.values():
            if record.removed:
                continue
            live = 0
            for conn in record.connections:
                state = conn.state
                if state == "ready":
                    # refresh(), load() and limit() inlined: this runs on every open
                    provider = conn.provider
                    assert provider is not None
                    if provider.is_closing:
                        conn.state = "draining"
                        continue
                    live += 1
                    any_ready = True
                    load = provider.active_streams
                    if load < conn.reserved:
                        load = conn.reserved
                    peer = provider.max_streams
                    if load < (per_connection if peer is None else min(peer, per_connection)):
                        ready.append(conn)
                elif state == "connecting":
                    connecting_room += per_connection
                    live += 1
            if live == 0:
                if now == -math.inf:
                    now = clock()
                if self.may_dial(record, now):
                    unconnected.append(record)
        if len(ready) == 1 and not unconnected:
            return Plan(use=ready[0])
        if ready or unconnected:
            candidates = [_candidate(conn) for conn in ready]
            candidates += [_dial_candidate(record, 0) for record in unconnected]
            picked = self.policy.pick(candidates)
            if picked.connected:
                return Plan(use=_by_key(ready, picked.key))
            dial = self.endpoints[picked.endpoint]
            if not ready:
                return Plan(dial=dial)
            # dial, but do not make this caller wait for it
            picked = self.policy.pick(candidates[: len(ready)])
            return Plan(use=_by_key(ready, picked.key), dial=dial)
        if connecting_room >= max(self.waiting, 1):
            return Plan()
        now = clock()
        growable = [record for record in self.endpoints.values() if self.may_dial(record, now)]
        if growable:
            picked = self.policy.pick(
                [_dial_candidate(record, len(record.live())) for record in growable]
            )
            return Plan(dial=self.endpoints[picked.endpoint])
        if connecting_room or any_ready or not self.resolved_once:
            return Plan()  # wait for a stream to end or a dial to finish
        return Plan(error=EndpointsUnavailable(self.reasons(now)))

    def upkeep(self, now: float) -> Upkeep:
        """Decide which connections to retire and which to dial: keep ``min_connections``
        per endpoint, close connections idle for ``idle_timeout`` above that, and close
        drained connections that received a Go Away."""
        options = self.options
        result = Upkeep()
        total_room = math.inf
        if options.max_connections is not None:
            total_room = options.max_connections - sum(
                len(record.live()) for record in self.endpoints.values()
            )
        wake = 1.0 if options.idle_timeout is None else min(options.idle_timeout / 2, 1.0)
        for record in self.endpoints.values():
            if record.removed:
                continue
            live = len(record.live())
            for conn in record.connections:
                conn.refresh()
                if conn.provider is None or conn.state == "closed":
                    continue
                if conn.load() > 0 or conn.uses != conn.seen_uses:
                    conn.seen_uses = conn.uses
                    conn.idle_since = now
                elif conn.state == "draining" and not conn.retire.is_set():
                    result.retire.append(conn)
            if options.idle_timeout is not None:
                idle = sorted(
                    (
                        conn
                        for conn in record.connections
                        if conn.state == "ready" and conn.load() == 0
                    ),
                    key=lambda conn: conn.idle_since,
                )
                for conn in idle:
                    if live <= options.min_connections:
                        break
                    if now - conn.idle_since >= options.idle_timeout:
                        result.retire.append(conn)
                        live -= 1
            missing = options.min_connections - live
            if missing > 0:
                if self.may_dial(record, now):
                    allowed = options.max_connections_per_endpoint - live
                    count = int(min(missing, allowed, total_room))
                    total_room -= count
                    result.dial.extend([record] * count)
                elif record.retry_at > now:
                    wake = min(wake, record.retry_at - now)
        return Upkeep(retire=result.retire, dial=result.dial, wake=wake)

    def reasons(self, now: float) -> dict[str, str]:
        """Why each endpoint cannot take a stream now (for :class:`EndpointsUnavailable`)."""
        reasons = {}
        for record in self.endpoints.values():
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
        if self.resolve_error is not None:
            reasons["resolver"] = self.resolve_error
        return reasons

    def describe(self, now: float) -> list[dict[str, Any]]:
        """The endpoints and their connections as plain data."""
        endpoints = []
        limit = self.options.max_streams_per_connection
        for record in self.endpoints.values():
            connections: list[dict[str, Any]] = []
            open_now = streams = 0
            rtts: list[float] = []
            for conn in record.connections:
                conn.refresh()
                provider = conn.provider
                if provider is not None:
                    open_now += 1
                    streams += provider.active_streams
                    if provider.rtt is not None:
                        rtts.append(provider.rtt)
                connections.append(
                    {
                        "id": conn.id,
                        "state": conn.state,
                        "active_streams": provider.active_streams if provider else 0,
                        "max_streams": conn.limit(limit) if provider else None,
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
                    # the keys streams.wrappers.metrics turns into metrics
                    "connections": open_now,
                    "connections_opened": record.opened,
                    "connection_failures": record.failures_total,
                    "active_streams": streams,
                    "rtt": min(rtts) if rtts else None,
                    "consecutive_failures": record.failures,
                    "last_error": record.last_error,
                    "retry_in": max(record.retry_at - now, 0.0) if record.failures else None,
                    "connection_list": connections,
                }
            )
        return endpoints


def _candidate(conn: ConnectionRecord) -> Candidate:
    provider = conn.provider
    assert provider is not None
    return Candidate(
        key=str(conn.id),
        endpoint=conn.endpoint.name,
        weight=conn.endpoint.spec.weight,
        active_streams=conn.load(),
        rtt=provider.rtt,
    )


def _dial_candidate(record: EndpointRecord, connections: int) -> Candidate:
    return Candidate(
        key=f"dial:{record.name}",
        endpoint=record.name,
        weight=record.spec.weight,
        active_streams=connections,
        connected=False,
    )


def _by_key(connections: list[ConnectionRecord], key: str) -> ConnectionRecord:
    for conn in connections:
        if str(conn.id) == key:
            return conn
    raise AssertionError(f"the policy picked {key!r}, which was not offered")
