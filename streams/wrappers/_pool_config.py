"""The pool's configuration and vocabulary: options, endpoints, errors, events, backoff.

Re-exported from :mod:`streams.wrappers.pool`; import them from there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import anyio

from .._core.backend import Dialer
from .._core.errors import ConfigError, ConnectionLost, StreamError

__all__ = [
    "ConnectionEvent",
    "Endpoint",
    "EndpointsUnavailable",
    "PoolOptions",
    "PoolOverloaded",
    "backoff_delay",
]


class PoolOverloaded(StreamError, anyio.WouldBlock):
    """Too many callers wait for a connection; this one was turned away at once.

    Nothing was sent, so it is safe to retry (``retryable`` is ``True``).
    """

    retryable = True


class EndpointsUnavailable(ConnectionLost):
    """No endpoint can take a stream now.

    :ivar reasons: each endpoint and why it is unavailable
    """

    def __init__(self, reasons: dict[str, str]) -> None:
        if reasons:
            detail = "; ".join(f"{name}: {why}" for name, why in reasons.items())
        else:
            detail = "the pool has no endpoints"
        super().__init__(f"no endpoint is available ({detail})", retryable=True)
        self.reasons = dict(reasons)


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One place the pool connects to."""

    #: makes one more connection to it
    dialer: Dialer
    #: share of the streams under weighted policies (relative to the other endpoints)
    weight: int = 1

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise ConfigError("must be at least 1", path="weight")

    @property
    def name(self) -> str:
        """The dialer's endpoint, for labels and errors."""
        return self.dialer.endpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolOptions:
    """How a pool grows, shrinks, waits and recovers. Times are in seconds."""

    #: connections kept open to each endpoint even when idle (0: dial on demand)
    min_connections: int = 0
    #: connections to one endpoint at most (draining ones not counted)
    max_connections_per_endpoint: int = 8
    #: connections in total at most (``None``: no total limit)
    max_connections: int | None = None
    #: streams one connection carries at most; the peer's own limit applies too
    max_streams_per_connection: int = 100
    #: a connection with no stream for this long is closed, above ``min_connections``
    #: (``None``: never)
    idle_timeout: float | None = 60.0
    #: callers waiting for a connection at most; more get :class:`PoolOverloaded`
    max_pending_opens: int = 1024
    #: how long an open may wait for a connection with room, dialling included (``None``:
    #: no limit); the peer's answer is bounded by the connection's own open timeout
    open_timeout: float | None = 30.0
    #: how long one dial may take
    connect_timeout: float = 10.0
    #: the wait after the first failed dial to an endpoint
    backoff_initial: float = 0.1
    #: the longest wait between dials to a failing endpoint
    backoff_max: float = 30.0
    #: how much the wait grows with each further failure
    backoff_multiplier: float = 2.0
    #: the wait varies randomly by up to this fraction either way, so that many clients
    #: do not dial in step
    backoff_jitter: float = 0.2
    #: how long open streams may finish when the pool closes or retires a connection
    close_grace: float = 5.0
    #: how often the resolver is asked again
    resolve_interval: float = 30.0
    #: ping each connection this often, to measure its round-trip time (the policies'
    #: tie breaker) and to find connections that died silently (``None``: never)
    ping_interval: float | None = None
    #: a connection that does not answer a ping within this is closed as dead
    ping_timeout: float = 10.0
    #: streams from the remote sides queued for :meth:`Listener.accept`
    accept_backlog: int = 1024

    def __post_init__(self) -> None:
        def positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if value is None or value <= 0:
                raise ConfigError("must be positive", path=name)

        if self.min_connections < 0:
            raise ConfigError("must not be negative", path="min_connections")
        if self.max_connections_per_endpoint < max(self.min_connections, 1):
            raise ConfigError(
                "must be at least 1 and at least min_connections",
                path="max_connections_per_endpoint",
            )
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigError("must be at least 1", path="max_connections")
        if self.max_streams_per_connection < 1:
            raise ConfigError("must be at least 1", path="max_streams_per_connection")
        if self.max_pending_opens < 0:
            raise ConfigError("must not be negative", path="max_pending_opens")
        if self.accept_backlog < 1:
            raise ConfigError("must be at least 1", path="accept_backlog")
        positive("idle_timeout", self.idle_timeout, allow_none=True)
        positive("open_timeout", self.open_timeout, allow_none=True)
        positive("connect_timeout", self.connect_timeout)
        positive("backoff_initial", self.backoff_initial)
        positive("resolve_interval", self.resolve_interval)
        positive("ping_interval", self.ping_interval, allow_none=True)
        positive("ping_timeout", self.ping_timeout)
        if self.backoff_max < self.backoff_initial:
            raise ConfigError("must be at least backoff_initial", path="backoff_max")
        if self.backoff_multiplier < 1:
            raise ConfigError("must be at least 1", path="backoff_multiplier")
        if not 0 <= self.backoff_jitter < 1:
            raise ConfigError("must be in [0, 1)", path="backoff_jitter")
        if self.close_grace < 0:
            raise ConfigError("must not be negative", path="close_grace")


def backoff_delay(failures: int, options: PoolOptions, rng: random.Random) -> float:
    """The wait before dialling an endpoint again after *failures* failed dials in a row:
    exponential, capped, with jitter (gRPC's connection backoff)."""
    exponent = min(max(failures - 1, 0), 64)
    base = min(options.backoff_max, options.backoff_initial * options.backoff_multiplier**exponent)
    jitter = options.backoff_jitter
    return base * rng.uniform(1 - jitter, 1 + jitter)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionEvent:
    """What the pool's event hook receives."""

    #: ``opened``, ``closed`` (a connection that was open ended) or ``failed`` (a dial)
    kind: Literal["opened", "closed", "failed"]
    #: the endpoint's name
    endpoint: str
    #: the pool's id of the connection
    connection: int
    #: why it closed or failed, when it was an error
    error: BaseException | None = None
