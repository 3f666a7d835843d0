"""The token buckets and the flood guard every backend uses against floods."""

from __future__ import annotations

import logging

import pytest

from streams import ConfigError, ErrorCode, LimitExceeded
from streams._core.limits import FLOOD_LIMITS, FloodGuard, TokenBucket, log_limit_exceeded
from streams._core.mux import MuxSettings


def test_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket.full(rate=10.0, capacity=5.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.take(0.05)  # half a token came back
    assert bucket.take(0.1)
    assert not bucket.take(0.1)


def test_bucket_never_holds_more_than_its_capacity() -> None:
    bucket = TokenBucket.full(rate=10.0, capacity=3.0, now=0.0)
    assert bucket.take(0.0, 3)
    assert bucket.take(100.0, 3)
    assert not bucket.take(100.0)


def test_bucket_ignores_a_clock_that_goes_back() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=1.0, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert bucket.tokens == 0.0


def test_guard_raises_naming_the_limit() -> None:
    guard = FloodGuard({"pings_per_second": 2.0}, burst_seconds=1.0, now=0.0)
    guard.check("pings_per_second", 0.0)
    guard.check("pings_per_second", 0.0)
    with pytest.raises(LimitExceeded) as caught:
        guard.check("pings_per_second", 0.0)
    assert caught.value.limit == "pings_per_second"
    assert caught.value.code == ErrorCode.ENHANCE_YOUR_CALM
    assert "2 per second" in str(caught.value)


def test_guard_carries_the_protocols_error_code() -> None:
    guard = FloodGuard({"resets_per_second": 1.0}, burst_seconds=1.0, now=0.0)
    guard.check("resets_per_second", 0.0)
    with pytest.raises(LimitExceeded) as caught:
        guard.check("resets_per_second", 0.0, code=ErrorCode.PROTOCOL_ERROR)
    assert caught.value.code == ErrorCode.PROTOCOL_ERROR


def test_zero_and_unknown_limits_are_unlimited() -> None:
    guard = FloodGuard({"pings_per_second": 0.0}, burst_seconds=1.0, now=0.0)
    for _ in range(10_000):
        guard.check("pings_per_second", 0.0)
        guard.check("streams_per_second", 0.0)
    guard.check("anything", 0.0)


def test_guard_from_default_settings_uses_every_limit() -> None:
    settings = MuxSettings()
    guard = FloodGuard.from_settings(settings, now=0.0)
    burst = int(settings.pings_per_second * settings.flood_burst_seconds)
    for _ in range(burst):
        guard.check("pings_per_second", 0.0)
    with pytest.raises(LimitExceeded):
        guard.check("pings_per_second", 0.0)
    for name in FLOOD_LIMITS:
        assert getattr(settings, name) > 0, f"{name} has no default"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pings_per_second", -1.0),
        ("flood_burst_seconds", 0.0),
        ("max_headers", 0),
        ("max_queued_control_frames", 0),
    ],
)
def test_bad_limit_settings_are_config_errors(field: str, value: float) -> None:
    with pytest.raises(ConfigError) as caught:
        MuxSettings(**{field: value})  # type: ignore[arg-type]
    assert caught.value.path == field


def test_limit_log_line_names_the_limit_and_the_peer(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("streams.test")
    error = LimitExceeded("pings_per_second", "too many")
    with caplog.at_level(logging.WARNING, logger="streams.test"):
        log_limit_exceeded(log, error, "127.0.0.1:5000")
    (record,) = caplog.records
    assert "pings_per_second" in record.getMessage()
    assert "127.0.0.1:5000" in record.getMessage()
    assert record.limit == "pings_per_second"  # type: ignore[attr-defined]
