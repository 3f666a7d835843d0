"""The decisions behind failover, as pure functions over plain state: endpoint health from
active checks, passive outlier ejection, how traffic splits across priority groups, and
the retry budget. Time is always an argument; nothing here waits or does I/O.

The rules follow Envoy's: a group's share of traffic is its healthy fraction times an
overprovisioning factor; what a degraded group cannot take spills to the next. Ejection
times grow with repeated ejections, and never more than a maximum share of a group is
ejected at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._core.errors import ConfigError

__all__ = [
    "CircuitBreakerOptions",
    "EndpointState",
    "FailoverOptions",
    "HealthCheckOptions",
    "OutlierOptions",
    "RetryOptions",
    "group_loads",
]


def _check(condition: bool, path: str, message: str) -> None:
    if not condition:
        raise ConfigError(message, path=path)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckOptions:
    """Active health checks, per endpoint."""

    #: seconds between checks of one endpoint
    interval: float = 5.0
    #: seconds one check may take
    timeout: float = 1.0
    #: passed checks in a row that make an unhealthy endpoint healthy again
    healthy_threshold: int = 2
    #: failed checks in a row that make a healthy endpoint unhealthy
    unhealthy_threshold: int = 2
    #: ``ping`` (the provider's own ping) or ``stream`` (open a stream with ``headers``
    #: and expect it to be accepted)
    kind: str = "ping"
    #: headers of the health stream
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.interval > 0, "health_check.interval", "must be positive")
        _check(self.timeout > 0, "health_check.timeout", "must be positive")
        _check(self.healthy_threshold >= 1, "health_check.healthy_threshold", "must be >= 1")
        _check(self.unhealthy_threshold >= 1, "health_check.unhealthy_threshold", "must be >= 1")
        _check(self.kind in ("ping", "stream"), "health_check.kind", "must be ping or stream")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlierOptions:
    """Passive outlier detection: failures seen in real traffic eject an endpoint."""

    #: open failures, resets by the peer and connection losses in a row that eject
    consecutive_failures: int = 5
    #: seconds of the first ejection; each further ejection doubles it
    base_ejection_time: float = 30.0
    #: the longest ejection, in seconds
    max_ejection_time: float = 300.0
    #: the largest share of a group (percent) that may be ejected at once
    max_ejection_percent: int = 50

    def __post_init__(self) -> None:
        _check(self.consecutive_failures >= 1, "outlier_detection.consecutive_failures", ">= 1")
        _check(self.base_ejection_time > 0, "outlier_detection.base_ejection_time", "positive")
        _check(
            self.max_ejection_time >= self.base_ejection_time,
            "outlier_detection.max_ejection_time",
            "must be at least base_ejection_time",
        )
        _check(
            0 <= self.max_ejection_percent <= 100,
            "outlier_detection.max_ejection_percent",
            "must be between 0 and 100",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryOptions:
    """Retries of ``open_stream`` (safe: no data was sent) on another endpoint."""

    #: tries of one open in all, the first included
    attempts: int = 3
    #: retries in flight at most, as a percentage of the opens and streams active
    budget_percent: float = 20.0
    #: retries in flight allowed whatever the budget says, so a quiet upstream can retry
    min_concurrent_retries: int = 3

    def __post_init__(self) -> None:
        _check(self.attempts >= 1, "retries.attempts", "must be at least 1")
        _check(0 <= self.budget_percent <= 100, "retries.budget_percent", "0 to 100")
        _check(self.min_concurrent_retries >= 0, "retries.min_concurrent_retries", ">= 0")

    def allows(self, retrying: int, active: int) -> bool:
        """``True`` if one more retry fits the budget with *retrying* already in flight."""
        budget = max(self.min_concurrent_retries, math.floor(active * self.budget_percent / 100))
        return retrying < budget


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerOptions:
    """Limits per failover upstream; beyond them opens fail fast (``None``: no limit)."""

    max_active_streams: int | None = None
    max_pending_opens: int | None = None
    max_concurrent_retries: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_active_streams", "max_pending_opens", "max_concurrent_retries"):
            value = getattr(self, name)
            _check(value is None or value >= 1, f"circuit_breaker.{name}", "must be >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverOptions:
    """Everything :class:`~streams.wrappers.failover.Failover` does, in one place."""

    #: how much a group's healthy share is trusted: 1.4 means a group with 72% of its
    #: endpoints healthy still takes all of its traffic (Envoy's default)
    overprovisioning_factor: float = 1.4
    #: seconds an endpoint must stay healthy before traffic fails back to it
    failback_hold_down: float = 10.0
    #: the balancing policy among a group's endpoints
    policy: str = "round_robin"
    health_check: HealthCheckOptions | None = None
    outlier_detection: OutlierOptions | None = field(default_factory=OutlierOptions)
    retries: RetryOptions = field(default_factory=RetryOptions)
    circuit_breaker: CircuitBreakerOptions = field(default_factory=CircuitBreakerOptions)

    def __post_init__(self) -> None:
        _check(self.overprovisioning_factor >= 1, "failover.overprovisioning_factor", ">= 1")
        _check(self.failback_hold_down >= 0, "failover.failback_hold_down", "must be >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FailoverOptions:
        """Options from a topology's sections (``health_check``, ``retries``, ...)."""
        sections = {
            "health_check": HealthCheckOptions,
            "outlier_detection": OutlierOptions,
            "retries": RetryOptions,
            "circuit_breaker": CircuitBreakerOptions,
        }
        arguments: dict[str, Any] = {}
        for key, value in values.items():
            if key in sections and isinstance(value, Mapping):
                arguments[key] = sections[key](**value)
            elif value is not None:
                arguments[key] = value
        return cls(**arguments)


@dataclass(slots=True, kw_only=True)
class EndpointState:
    """What failover knows about one endpoint."""

    name: str
    group: int
    weight: int = 1
    healthy: bool = True
    #: when it last became healthy (``-inf``: healthy from the start)
    healthy_since: float = -math.inf
    health_passes: int = 0
    health_failures: int = 0
    consecutive_failures: int = 0
    ejected_until: float | None = None
    ejections: int = 0
    last_error: str | None = None
    active_streams: int = 0

    def ejected(self, now: float) -> bool:
        """``True`` while outlier detection keeps it out."""
        return self.ejected_until is not None and now < self.ejected_until

    def available(self, now: float) -> bool:
        """``True`` if new streams may go here."""
        return self.healthy and not self.ejected(now)

    def settled(self, now: float, hold_down: float) -> bool:
        """``True`` if available and healthy for at least *hold_down* seconds."""
        return self.available(now) and now - self.healthy_since >= hold_down

    def why_unavailable(self, now: float) -> str:
        """A few words for error messages and ``explain``."""
        if self.ejected(now):
            assert self.ejected_until is not None
            left = self.ejected_until - now
            return f"ejected for {left:.1f} s more ({self.last_error or 'repeated failures'})"
        if not self.healthy:
            return f"failing health checks ({self.last_error or 'no answer'})"
        return "available"

    # -- health checks ---------------------------------------------------------------------

    def health_passed(self, now: float, options: HealthCheckOptions) -> bool:
        """Record a passed check; ``True`` if the endpoint just became healthy."""
        self.health_failures = 0
        self.health_passes += 1
        if not self.healthy and self.health_passes >= options.healthy_threshold:
            self.healthy = True
            self.healthy_since = now
            return True
        return False

    def health_failed(self, error: str, options: HealthCheckOptions) -> bool:
        """Record a failed check; ``True`` if the endpoint just became unhealthy."""
        self.health_passes = 0
        self.health_failures += 1
        self.last_error = error
        if self.healthy and self.health_failures >= options.unhealthy_threshold:
            self.healthy = False
            return True
        return False

    # -- passive outlier detection -----------------------------------------------------------

    def succeeded(self) -> None:
        """A stream opened and was used without failure."""
        self.consecutive_failures = 0

    def failed(
        self,
        error: str,
        now: float,
        options: OutlierOptions | None,
        group: Sequence[EndpointState],
    ) -> bool:
        """Record a failure seen in traffic; ``True`` if it ejected the endpoint."""
        self.last_error = error
        self.consecutive_failures += 1
        if options is None or self.ejected(now):
            return False
        if self.consecutive_failures < options.consecutive_failures:
            return False
        ejected_now = sum(1 for endpoint in group if endpoint.ejected(now))
        if (ejected_now + 1) * 100 > options.max_ejection_percent * len(group):
            return False
        duration = min(options.base_ejection_time * 2**self.ejections, options.max_ejection_time)
        self.ejections += 1
        self.ejected_until = now + duration
        return True

    def maybe_restore(self, now: float) -> bool:
        """End an ejection whose time is up; ``True`` if it just ended."""
        if self.ejected_until is not None and now >= self.ejected_until:
            self.ejected_until = None
            self.consecutive_failures = 0
            self.healthy_since = now
            return True
        return False


def group_loads(
    groups: Sequence[Sequence[EndpointState]],
    now: float,
    *,
    overprovisioning_factor: float,
    hold_down: float,
) -> list[float]:
    """The share of new streams (0 to 1) each priority group takes.

    A group's health is the share of its endpoints that are available and settled (past
    the hold-down), times the overprovisioning factor, at most 1. The first group takes
    its health; each next group takes what is left, up to its own health. What no group
    can take is given to the groups in proportion to their health. When nothing has settled,
    endpoints still inside the hold-down count; when no endpoint is available, every load
    is 0.
    """

    def group_health(group: Sequence[EndpointState], hold: float) -> float:
        if not group:
            return 0.0
        settled = sum(1 for endpoint in group if endpoint.settled(now, hold))
        return min(1.0, settled / len(group) * overprovisioning_factor)

    healths = [group_health(group, hold_down) for group in groups]
    if not any(healths):
        # nothing has settled yet: endpoints that just recovered are better than none
        healths = [group_health(group, 0.0) for group in groups]
    loads = []
    left = 1.0
    for health in healths:
        take = min(left, health)
        loads.append(take)
        left -= take
    total_health = sum(healths)
    if left > 1e-9 and total_health > 0:
        loads = [
            load + left * health / total_health for load, health in zip(loads, healths, strict=True)
        ]
    return loads
