"""The coalescing writer in front of asyncssh's transport, without a loop or a socket:
small writes gathered in order, large ones not copied, nothing written dropped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.backends.ssh._coalesce import GATHERED_MAX, LARGE, CoalescingTransport


class _Transport:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def write_eof(self) -> None:
        self.calls.append(("write_eof", b""))

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", b""))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


class _Loop:
    def __init__(self) -> None:
        self.soon: list[Callable[[], Any]] = []

    def call_soon(self, callback: Callable[[], Any]) -> None:
        self.soon.append(callback)

    def run(self) -> None:
        soon, self.soon = self.soon, []
        for callback in soon:
            callback()


def _make() -> tuple[CoalescingTransport, _Transport, _Loop]:
    transport, loop = _Transport(), _Loop()
    return CoalescingTransport(transport, loop), transport, loop  # type: ignore[arg-type]


def test_small_writes_leave_together_in_order() -> None:
    gathering, transport, loop = _make()
    gathering.write(b"a")
    gathering.write(b"bc")
    assert transport.calls == []
    assert gathering.get_write_buffer_size() == 3 + 7
    gathering.flush()
    assert transport.calls == [("write", b"abc")]
    loop.run()  # the turn's flush finds nothing more
    assert transport.calls == [("write", b"abc")]


def test_the_next_turn_writes_what_nobody_flushed() -> None:
    gathering, transport, loop = _make()
    gathering.write(b"x")
    gathering.write(b"y")
    assert len(loop.soon) == 1  # one flush scheduled, not one per write
    loop.run()
    assert transport.calls == [("write", b"xy")]
    gathering.write(b"z")
    loop.run()
    assert transport.calls == [("write", b"xy"), ("write", b"z")]


def test_while_receiving_the_end_of_the_read_writes() -> None:
    gathering, transport, loop = _make()
    gathering.receiving = True
    gathering.write(b"answer")
    assert loop.soon == []
    gathering.receiving = False
    gathering.flush()
    assert transport.calls == [("write", b"answer")]


def test_a_large_write_is_not_copied_and_keeps_its_place() -> None:
    gathering, transport, _ = _make()
    large = b"L" * LARGE
    gathering.write(b"before")
    gathering.write(large)
    gathering.write(b"after")
    gathering.flush()
    assert transport.calls == [("write", b"before"), ("write", large), ("write", b"after")]


def test_too_much_gathered_is_written_at_once() -> None:
    gathering, transport, _ = _make()
    piece = b"p" * (LARGE - 1)
    count = GATHERED_MAX // len(piece) + 1
    for _ in range(count):
        gathering.write(piece)
    assert transport.calls == [("write", piece * count)]


def test_closing_writes_what_is_gathered_first() -> None:
    for how in ("close", "abort", "write_eof"):
        gathering, transport, loop = _make()
        gathering.write(b"last words")
        getattr(gathering, how)()
        assert transport.calls == [("write", b"last words"), (how, b"")], how
        loop.run()
        assert transport.calls[-1] == (how, b"")


def test_nothing_is_written_to_a_closed_transport() -> None:
    gathering, transport, loop = _make()
    transport.closing = True
    gathering.write(b"late")
    loop.run()
    assert transport.calls == []


def test_everything_else_is_the_transport_s() -> None:
    gathering, _, _ = _make()
    assert gathering.get_extra_info("peername") == "info:peername"
