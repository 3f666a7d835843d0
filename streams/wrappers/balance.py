"""Balancing policies: which connection (or endpoint) carries the next stream.

A policy is a small object with one synchronous method, :meth:`Policy.pick`, that chooses
from plain data (:class:`Candidate`). It does no I/O and never waits, so it can be tested
without an event loop and swapped without touching the pool. Policies keep a little state
(a round-robin position, smooth weights, a random generator), so each pool has its own.

The pool hands a policy the connections that have room for one more stream and, as
separate candidates, the endpoints where it could open a connection (``connected`` is then
``False`` and ``active_streams`` is 0). What the pool does with a pick is its own business.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .._core.errors import ConfigError

__all__ = [
    "POLICIES",
    "Candidate",
    "LeastActive",
    "Policy",
    "PowerOfTwoChoices",
    "RandomChoice",
    "RoundRobin",
    "WeightedRoundRobin",
    "make_policy",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One place a new stream can go, as a policy sees it."""

    #: a key unique among the candidates of one pick (a connection's id, or an endpoint's
    #: name for an endpoint without a connection)
    key: str
    #: the endpoint the candidate belongs to
    endpoint: str
    #: the endpoint's weight (weighted policies use it)
    weight: int = 1
    #: streams open on the connection now (0 for an endpoint without a connection)
    active_streams: int = 0
    #: the connection's measured round-trip time in seconds, when known
    rtt: float | None = None
    #: ``False`` for an endpoint where a connection would have to be opened first
    connected: bool = True


@runtime_checkable
class Policy(Protocol):
    """Chooses where the next stream goes."""

    #: the policy's name, for describe() and the configuration
    name: str

    def pick(self, candidates: Sequence[Candidate]) -> Candidate:
        """Return one of *candidates* (never empty). Pure apart from the policy's own state."""
        ...


def _load(candidate: Candidate) -> tuple[int, float]:
    # fewer streams first; a measured faster connection wins a tie; unknown rtt last
    return (candidate.active_streams, candidate.rtt if candidate.rtt is not None else 1e9)


class RoundRobin:
    """Each candidate in turn (gRPC's ``round_robin``, Envoy's default)."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[Candidate]) -> Candidate:
        choice = candidates[self._next % len(candidates)]
        self._next += 1
        return choice


class LeastActive:
    """The candidate with the fewest open streams; ties go to the lower round-trip time,
    then rotate, so equal candidates share the load."""

    name = "least_active"

    def __init__(self) -> None:
        self._offset = 0

    def pick(self, candidates: Sequence[Candidate]) -> Candidate:
        count = len(candidates)
        start = self._offset % count
        self._offset += 1
        best = candidates[start]
        best_load = _load(best)
        for step in range(1, count):
            candidate = candidates[(start + step) % count]
            load = _load(candidate)
            if load < best_load:
                best, best_load = candidate, load
        return best


class PowerOfTwoChoices:
    """Two candidates at random, the less loaded of them (Envoy's least request): nearly as
    good as scanning all, with no herd on a single idle connection.

    :param rng: the random generator (seeded in tests)
    """

    name = "power_of_two"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()

    def pick(self, candidates: Sequence[Candidate]) -> Candidate:
        if len(candidates) == 1:
            return candidates[0]
        first, second = self._rng.sample(range(len(candidates)), 2)
        a, b = candidates[first], candidates[second]
        return b if _load(b) < _load(a) else a


class RandomChoice:
    """A candidate at random, uniformly.

    :param rng: the random generator (seeded in tests)
    """

    name = "random"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()

    def pick(self, candidates: Sequence[Candidate]) -> Candidate:
        return candidates[self._rng.randrange(len(candidates))]


class WeightedRoundRobin:
    """Endpoints in proportion to their weights, interleaved smoothly as nginx does it
    (weights 5:1:1 give ``a a b a c a a``, not five ``a`` in a row); within the chosen
    endpoint, its least loaded connection.

    Each pick adds every present endpoint's weight to its running score, takes the
    endpoint with the highest score and subtracts the sum of the weights from it.
    """

    name = "weighted_round_robin"

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(self, candidates: Sequence[Candidate]) -> Candidate:
        weights: dict[str, int] = {}
        for candidate in candidates:
            weights.setdefault(candidate.endpoint, max(candidate.weight, 0))
        current = self._current
        total = 0
        best: str | None = None
        for endpoint, weight in weights.items():
            score = current.get(endpoint, 0) + weight
            current[endpoint] = score
            total += weight
            if best is None or score > current[best]:
                best = endpoint
        assert best is not None
        current[best] -= total
        if len(current) > 4 * len(weights) + 16:
            # forget endpoints that left, so a churning resolver cannot grow this
            self._current = {name: current[name] for name in weights}
        chosen = [candidate for candidate in candidates if candidate.endpoint == best]
        return min(chosen, key=_load)


#: the policies by the name topologies use
POLICIES: dict[str, Callable[[], Policy]] = {
    "round_robin": RoundRobin,
    "least_active": LeastActive,
    "power_of_two": PowerOfTwoChoices,
    "random": RandomChoice,
    "weighted_round_robin": WeightedRoundRobin,
}


def make_policy(policy: str | Policy) -> Policy:
    """Return *policy*, or a fresh policy of that name.

    :raises ~streams.ConfigError: for an unknown name
    """
    if not isinstance(policy, str):
        return policy
    try:
        factory = POLICIES[policy]
    except KeyError:
        known = ", ".join(sorted(POLICIES))
        raise ConfigError(f"unknown policy {policy!r} (known: {known})", path="policy") from None
    return factory()
