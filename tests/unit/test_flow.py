"""The shared flow-control bookkeeping, without an event loop."""

import pytest

from streams._core.flow import MAX_WINDOW, FlowControlViolation, ReceiveWindow, SendWindow


def test_receive_window_refuses_data_beyond_credit() -> None:
    window = ReceiveWindow(1024)
    window.on_data(1000)
    with pytest.raises(FlowControlViolation):
        window.on_data(25)


def test_credit_is_returned_only_as_data_is_consumed_and_in_batches() -> None:
    window = ReceiveWindow(1024)
    window.on_data(1024)
    assert window.available == 0
    assert window.on_consumed(100) == 0, "an update for a tiny read is wasteful"
    assert window.on_consumed(200) == 300
    assert window.available == 300
    window.on_data(300)
    assert window.available == 0


def test_window_grows_when_drained_faster_than_round_trips() -> None:
    window = ReceiveWindow(1000, maximum=8000)
    now = 0.0
    sizes = []
    for _ in range(8):
        window.on_data(window.available)
        window.on_consumed(window.size, now=now, rtt=0.1)
        sizes.append(window.size)
        now += 0.01
    assert sizes[-1] == 8000, sizes
    assert window.available == 8000


def test_window_does_not_grow_for_a_slow_reader() -> None:
    window = ReceiveWindow(1000, maximum=8000)
    now = 0.0
    for _ in range(8):
        window.on_data(window.available)
        window.on_consumed(window.size, now=now, rtt=0.01)
        now += 1.0
    assert window.size == 1000


def test_window_does_not_grow_without_rtt() -> None:
    window = ReceiveWindow(1000, maximum=8000)
    for _ in range(8):
        window.on_data(window.available)
        window.on_consumed(window.size, now=0.0, rtt=None)
    assert window.size == 1000


def test_send_window_take_and_grow() -> None:
    window = SendWindow(100)
    assert window.take(60) == 60
    assert window.take(60) == 40
    assert window.take(1) == 0
    window.grow(10)
    assert window.take(100) == 10


def test_send_window_overflow_is_a_violation() -> None:
    window = SendWindow(MAX_WINDOW - 5)
    with pytest.raises(FlowControlViolation):
        window.grow(6)


def test_negative_window_after_settings_change_blocks_until_regrown() -> None:
    window = SendWindow(10)
    window.adjust(-30)
    assert window.take(5) == 0
    window.grow(25)
    assert window.take(10) == 5


def test_invalid_initial_window() -> None:
    with pytest.raises(ValueError, match="positive"):
        ReceiveWindow(0)
