"""Rate limits against floods from a misbehaving peer.

Each limit is a token bucket: a peer may do a thing ``rate`` times per second on average,
with a burst of ``rate * burst_seconds`` at once. The buckets are pure: the caller passes
the time, so the sans-IO codecs and their drivers decide when "now" is, and tests can
drive them without sleeping.

The limits exist because the cheap frames of a multiplexing protocol (pings, settings,
resets, empty data frames, streams opened and reset at once) each cost the receiver work
or an answer while costing the sender almost nothing: the attacks of CVE-2019-9512 to 9518
and CVE-2023-44487 (rapid reset) are all floods of such frames. A peer over a limit loses
its connection with :class:`~streams.LimitExceeded`, which names the limit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, ErrorCode, LimitExceeded

__all__ = ["FLOOD_LIMITS", "FloodGuard", "TokenBucket", "log_limit_exceeded"]

#: the names of the rate limits every multiplexing backend enforces, as settings fields
FLOOD_LIMITS = (
    "streams_per_second",
    "resets_per_second",
    "pings_per_second",
    "settings_per_second",
    "empty_frames_per_second",
)

logger = logging.getLogger("streams.limits")


@dataclass(slots=True)
class TokenBucket:
    """A token bucket holding at most *capacity* tokens, refilled at *rate* per second."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, capacity: float, now: float) -> TokenBucket:
        """A bucket that starts full at time *now*."""
        return cls(rate=rate, capacity=capacity, tokens=capacity, updated=now)

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take *cost* tokens at time *now*; ``False`` (taking none) if there are too few."""
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.updated = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True


class FloodGuard:
    """The rate limits of one connection.

    :param rates: events per second allowed, by limit name; ``0`` or a missing name
        means that event is not limited
    :param burst_seconds: how many seconds' worth of events may arrive at once
    :param now: the current time, on the caller's clock
    """

    __slots__ = ("_buckets",)

    def __init__(self, rates: Mapping[str, float], burst_seconds: float, now: float) -> None:
        if burst_seconds <= 0:
            raise ConfigError("must be positive", path="flood_burst_seconds")
        self._buckets: dict[str, TokenBucket] = {}
        for name, rate in rates.items():
            if rate < 0:
                raise ConfigError("must not be negative (0 disables the limit)", path=name)
            if rate:
                capacity = max(1.0, rate * burst_seconds)
                self._buckets[name] = TokenBucket.full(rate, capacity, now)

    @classmethod
    def from_settings(cls, settings: Any, now: float) -> FloodGuard:
        """A guard from the :data:`FLOOD_LIMITS` fields and ``flood_burst_seconds`` of
        *settings* (a :class:`~streams._core.mux.MuxSettings` or a backend's own)."""
        rates = {name: float(getattr(settings, name)) for name in FLOOD_LIMITS}
        return cls(rates, float(settings.flood_burst_seconds), now)

    def check(
        self, limit: str, now: float, cost: float = 1.0, code: int = ErrorCode.ENHANCE_YOUR_CALM
    ) -> None:
        """Count *cost* events of kind *limit* at time *now*.

        :raises ~streams.LimitExceeded: if the peer went over the limit; *code* is the
            error the connection is closed with
        """
        bucket = self._buckets.get(limit)
        if bucket is not None and not bucket.take(now, cost):
            raise LimitExceeded(
                limit,
                f"the peer went over {bucket.rate:g} per second "
                f"(a burst of {bucket.capacity:g} allowed)",
                code,
            )


def log_limit_exceeded(log: logging.Logger, error: LimitExceeded, peer: object) -> None:
    """Log, once per closed connection, which limit a peer exceeded.

    The record carries ``limit`` and ``peer`` as structured fields (``extra``), so log
    pipelines can count offenders by limit without parsing the message.
    """
    log.warning(
        "closing the connection from %s: limit %s exceeded (%s)",
        peer,
        error.limit,
        error,
        extra={"limit": error.limit, "peer": str(peer)},
    )
