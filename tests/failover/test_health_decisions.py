"""The pure decisions behind failover: group loads, health transitions, ejection, budget."""

import math

import pytest

from streams import ConfigError
from streams.wrappers.health import (
    EndpointState,
    FailoverOptions,
    HealthCheckOptions,
    OutlierOptions,
    RetryOptions,
    group_loads,
)


def endpoints(group: int, count: int) -> list[EndpointState]:
    return [EndpointState(name=f"g{group}e{i}", group=group) for i in range(count)]


def loads(groups: list[list[EndpointState]], now: float = 100.0, hold: float = 0.0) -> list[float]:
    return [
        round(x, 3) for x in group_loads(groups, now, overprovisioning_factor=1.4, hold_down=hold)
    ]


def test_healthy_primary_takes_everything() -> None:
    assert loads([endpoints(0, 2), endpoints(1, 1)]) == [1.0, 0.0]


def test_overprovisioning_hides_a_small_loss() -> None:
    primary = endpoints(0, 4)
    primary[0].healthy = False
    assert loads([primary, endpoints(1, 1)]) == [1.0, 0.0]


def test_a_degraded_primary_spills_to_the_next_group() -> None:
    primary = endpoints(0, 4)
    for endpoint in primary[:3]:
        endpoint.healthy = False
    assert loads([primary, endpoints(1, 1)]) == [0.35, 0.65]


def test_a_dead_primary_moves_everything() -> None:
    primary = endpoints(0, 2)
    for endpoint in primary:
        endpoint.healthy = False
    assert loads([primary, endpoints(1, 2)]) == [0.0, 1.0]


def test_nothing_healthy_means_no_load() -> None:
    primary, secondary = endpoints(0, 1), endpoints(1, 1)
    primary[0].healthy = secondary[0].healthy = False
    assert loads([primary, secondary]) == [0.0, 0.0]


def test_failback_waits_for_the_hold_down() -> None:
    primary, secondary = endpoints(0, 1), endpoints(1, 1)
    primary[0].healthy_since = 95.0
    assert loads([primary, secondary], now=100.0, hold=10.0) == [0.0, 1.0]
    assert loads([primary, secondary], now=106.0, hold=10.0) == [1.0, 0.0]


def test_recovering_endpoints_serve_when_nothing_else_can() -> None:
    primary = endpoints(0, 1)
    primary[0].healthy_since = 99.0
    assert loads([primary], now=100.0, hold=10.0) == [1.0]


def test_health_transitions_need_their_thresholds() -> None:
    options = HealthCheckOptions(healthy_threshold=2, unhealthy_threshold=3)
    state = EndpointState(name="a", group=0)
    assert not state.health_failed("x", options)
    assert not state.health_failed("x", options)
    assert state.health_failed("x", options)
    assert not state.healthy
    assert not state.health_passed(10.0, options)
    assert state.health_passed(11.0, options)
    assert state.healthy
    assert state.healthy_since == 11.0


def test_ejection_grows_and_ends() -> None:
    options = OutlierOptions(consecutive_failures=2, base_ejection_time=10, max_ejection_time=35)
    group = endpoints(0, 4)
    state = group[0]
    durations = []
    now = 0.0
    for _ in range(4):
        assert not state.failed("boom", now, options, group)
        assert state.failed("boom", now, options, group)
        assert state.ejected_until is not None
        durations.append(state.ejected_until - now)
        assert not state.available(now + 1)
        now = state.ejected_until
        assert state.maybe_restore(now)
        assert state.available(now)
    assert durations == [10, 20, 35, 35]


def test_success_resets_the_failure_count() -> None:
    options = OutlierOptions(consecutive_failures=2)
    group = endpoints(0, 2)
    group[0].failed("x", 0.0, options, group)
    group[0].succeeded()
    assert not group[0].failed("x", 0.0, options, group)


def test_never_more_than_the_maximum_share_is_ejected() -> None:
    options = OutlierOptions(consecutive_failures=1, max_ejection_percent=50)
    group = endpoints(0, 4)
    results = [endpoint.failed("x", 0.0, options, group) for endpoint in group]
    assert results == [True, True, False, False]
    assert sum(endpoint.ejected(0.0) for endpoint in group) == 2


def test_retry_budget() -> None:
    budget = RetryOptions(budget_percent=20, min_concurrent_retries=2)
    assert budget.allows(0, 0)
    assert budget.allows(1, 0)
    assert not budget.allows(2, 0)
    assert budget.allows(19, 100)
    assert not budget.allows(20, 100)


def test_options_validate_and_come_from_topology_sections() -> None:
    options = FailoverOptions.from_mapping(
        {
            "health_check": {"interval": 0.5, "timeout": 0.2},
            "retries": {"attempts": 2},
            "failback_hold_down": 3.0,
        }
    )
    assert options.health_check is not None
    assert options.health_check.interval == 0.5
    assert options.retries.attempts == 2
    assert options.failback_hold_down == 3.0
    with pytest.raises(ConfigError, match=r"health_check\.kind"):
        HealthCheckOptions(kind="telepathy")
    with pytest.raises(ConfigError, match="overprovisioning_factor"):
        FailoverOptions(overprovisioning_factor=0.5)
    assert math.isinf(EndpointState(name="x", group=0).healthy_since)
