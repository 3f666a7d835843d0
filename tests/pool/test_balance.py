"""The balancing policies, as pure functions over plain candidates (no event loop)."""

import random
from collections import Counter

import pytest

from streams import ConfigError
from streams.wrappers.balance import (
    POLICIES,
    Candidate,
    LeastActive,
    Policy,
    PowerOfTwoChoices,
    RandomChoice,
    RoundRobin,
    WeightedRoundRobin,
    make_policy,
)


def conns(*loads: int, rtts: tuple[float | None, ...] = ()) -> list[Candidate]:
    return [
        Candidate(
            key=str(index),
            endpoint=f"e{index}",
            active_streams=load,
            rtt=rtts[index] if rtts else None,
        )
        for index, load in enumerate(loads)
    ]


def test_round_robin_takes_each_in_turn() -> None:
    policy = RoundRobin()
    picks = [policy.pick(conns(0, 0, 0, 0)).key for _ in range(1000)]
    assert set(Counter(picks).values()) == {250}
    assert picks[:5] == ["0", "1", "2", "3", "0"]


def test_least_active_prefers_the_emptiest_then_the_faster() -> None:
    policy = LeastActive()
    assert policy.pick(conns(5, 2, 9)).key == "1"
    assert policy.pick(conns(3, 3, rtts=(0.02, 0.001))).key == "1"
    # equal candidates share the load instead of piling onto the first
    picks = Counter(policy.pick(conns(1, 1, 1)).key for _ in range(300))
    assert set(picks.values()) == {100}


def test_power_of_two_never_picks_the_most_loaded_of_two() -> None:
    policy = PowerOfTwoChoices(random.Random(1))
    for _ in range(200):
        assert policy.pick(conns(10, 0)).key == "1"
    picks = Counter(policy.pick(conns(0, 0, 0, 50)).key for _ in range(3000))
    # the loaded one only wins when it is not drawn at all, i.e. never
    assert picks["3"] == 0
    assert policy.pick(conns(4, 4, rtts=(0.5, 0.1))).key == "1"


def test_random_is_roughly_uniform() -> None:
    policy = RandomChoice(random.Random(2))
    picks = Counter(policy.pick(conns(0, 0, 0, 0)).key for _ in range(4000))
    assert all(900 < value < 1100 for value in picks.values()), picks


def test_smooth_weighted_round_robin_interleaves_like_nginx() -> None:
    policy = WeightedRoundRobin()
    candidates = [
        Candidate(key="a", endpoint="a", weight=5),
        Candidate(key="b", endpoint="b", weight=1),
        Candidate(key="c", endpoint="c", weight=1),
    ]
    picks = "".join(policy.pick(candidates).key for _ in range(7))
    assert picks == "aabacaa"


def test_weighted_round_robin_picks_the_least_loaded_connection_of_an_endpoint() -> None:
    policy = WeightedRoundRobin()
    candidates = [
        Candidate(key="a1", endpoint="a", weight=3, active_streams=4),
        Candidate(key="a2", endpoint="a", weight=3, active_streams=1),
        Candidate(key="b1", endpoint="b", weight=1, active_streams=0),
    ]
    picks = Counter(policy.pick(candidates).key for _ in range(400))
    assert picks == {"a2": 300, "b1": 100}


def test_policies_by_name() -> None:
    for name in POLICIES:
        policy = make_policy(name)
        assert isinstance(policy, Policy)
        assert policy.name == name
    custom = RoundRobin()
    assert make_policy(custom) is custom
    with pytest.raises(ConfigError, match="unknown policy 'fastest'"):
        make_policy("fastest")
