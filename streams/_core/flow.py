"""Per-stream flow control, written once for every framed backend.

Pure bookkeeping with no I/O and no clock of its own: time comes in as an argument.

The receiving side grants the sender credit (the *window*). Credit is given back only as
the application *consumes* data, never when it merely arrives, so a slow reader throttles
its own sender and nobody else. The window can grow with the measured bandwidth-delay
product (as Go's HTTP/2 and QUIC stacks do): when the application drains a whole window
in less than a few round trips, the window was the bottleneck, so it doubles, up to a
maximum.
"""

from __future__ import annotations

__all__ = ["FlowControlViolation", "ReceiveWindow", "SendWindow"]

#: 2**31 - 1: the largest window HTTP/2, SPDY and yamux can express
MAX_WINDOW = 0x7FFFFFFF


class FlowControlViolation(Exception):
    """The peer sent more than its credit, or grew a window past :data:`MAX_WINDOW`."""


class ReceiveWindow:
    """Credit this side grants the peer on one stream.

    :param initial: the window both sides assume when the stream opens
    :param maximum: how far auto-tuning may grow it (``initial`` disables growth)
    """

    __slots__ = (
        "_epoch_start",
        "_unacknowledged",
        "available",
        "maximum",
        "size",
    )

    def __init__(self, initial: int, maximum: int | None = None) -> None:
        if initial <= 0:
            raise ValueError("the initial window must be positive")
        self.size = initial
        self.maximum = max(initial, maximum if maximum is not None else initial)
        #: bytes the peer may still send before it must wait for an update
        self.available = initial
        self._unacknowledged = 0
        self._epoch_start: float | None = None

    def on_data(self, length: int) -> None:
        """Account for *length* bytes that arrived.

        :raises FlowControlViolation: if the peer sent more than its credit
        """
        if length > self.available:
            raise FlowControlViolation(
                f"peer sent {length} bytes with only {self.available} bytes of credit"
            )
        self.available -= length

    def on_consumed(self, length: int, now: float = 0.0, rtt: float | None = None) -> int:
        """Account for *length* bytes the application read; return the credit to grant.

        Returns 0 while too little was consumed to be worth an update (a quarter of the
        window), so updates are batched instead of sent per read.

        :param now: the current time, for auto-tuning
        :param rtt: the measured round-trip time, for auto-tuning (``None``: do not tune)
        """
        self._unacknowledged += length
        if self._unacknowledged < self.size // 4:
            return 0
        if rtt is not None and self.size < self.maximum:
            if self._epoch_start is not None and now - self._epoch_start < 4 * rtt:
                grown = min(self.size * 2, self.maximum)
                self._unacknowledged += grown - self.size
                self.size = grown
            self._epoch_start = now
        increment = self._unacknowledged
        self._unacknowledged = 0
        self.available += increment
        return increment

    def release(self, length: int) -> int:
        """Give back credit for *length* bytes dropped unread (a discarded stream).

        Used for connection-level windows, where dropped data must not shrink the window.
        """
        return self.on_consumed(length)


class SendWindow:
    """Credit the peer granted this side on one stream (or one connection)."""

    __slots__ = ("credit",)

    def __init__(self, initial: int) -> None:
        self.credit = initial

    def grow(self, increment: int) -> None:
        """Add *increment* bytes of credit from a window update.

        :raises FlowControlViolation: if the window would exceed :data:`MAX_WINDOW`
        """
        if self.credit + increment > MAX_WINDOW:
            raise FlowControlViolation(
                f"window update of {increment} overflows a window of {self.credit}"
            )
        self.credit += increment

    def adjust(self, delta: int) -> None:
        """Shift the window by *delta* (a settings change may make it negative)."""
        self.credit += delta

    def take(self, wanted: int) -> int:
        """Take up to *wanted* bytes of credit and return how much was taken."""
        granted = min(wanted, self.credit)
        if granted <= 0:
            return 0
        self.credit -= granted
        return granted
