"""Limits against a misbehaving HTTP/2 peer. Sans-IO: the caller passes the time.

h2 already refuses a header list that decodes beyond ``SETTINGS_MAX_HEADER_LIST_SIZE``
(HPACK counts the size header by header, so a bomb is never inflated in full), a header
block split into more than 64 frames, and a window that would overflow. What it lacks is
here:

- rates of the cheap frames that each cost us work or an answer (CVE-2019-9512 to 9518,
  CVE-2023-44487): PING, SETTINGS, RST_STREAM, new streams, and frames that carry nothing
  (empty DATA, empty header fragments, PRIORITY, unknown extension frames);
- the compressed size of a header block, checked fragment by fragment, so that a
  CONTINUATION flood (CVE-2024-27316) is cut as soon as it is too big rather than
  buffered up to h2's frame count;
- answers queued for a peer that does not read them (:class:`AnswerQueue`).

A limit the peer went over is raised as :class:`LimitBreach`, an h2 protocol error, so
that h2 ends the connection itself (its ``GOAWAY`` carries the limit's code); the driver
then logs the :class:`~streams.LimitExceeded` it carries.
"""

from __future__ import annotations

from collections import deque

from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError as H2ProtocolError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
)

from ..._core.errors import ErrorCode, LimitExceeded
from ..._core.limits import FloodGuard

__all__ = [
    "HEADER_BLOCK_SLACK",
    "MAX_HEADER_FRAMES",
    "AnswerQueue",
    "InboundLimits",
    "LimitBreach",
]

#: fragments (a HEADERS and its CONTINUATIONs) one header block may come in; h2 stops at
#: 64 too, but with an anonymous protocol error
MAX_HEADER_FRAMES = 64
#: how much larger than ``max_header_list_size`` a compressed header block may be: HPACK
#: never makes a field list bigger than its decoded size (which counts 32 bytes a field),
#: except for the padding of the HEADERS frame
HEADER_BLOCK_SLACK = 256


class LimitBreach(H2ProtocolError):
    """A limit the peer went over, as the h2 error that makes h2 close the connection
    with the limit's code.

    :ivar exceeded: the :class:`~streams.LimitExceeded` to report
    """

    def __init__(self, exceeded: LimitExceeded) -> None:
        super().__init__(str(exceeded))
        self.exceeded = exceeded
        self.error_code = ErrorCodes(exceeded.code)


class InboundLimits:
    """The limits on what one connection's peer sends.

    :param guard: the connection's rate limits
    :param max_header_block: the largest compressed header block accepted, in bytes
    """

    __slots__ = ("_block_frames", "_block_size", "guard", "max_header_block")

    def __init__(self, guard: FloodGuard, max_header_block: int) -> None:
        self.guard = guard
        self.max_header_block = max_header_block
        self._block_size = 0
        self._block_frames = 0

    def _check(self, limit: str, now: float) -> None:
        try:
            self.guard.check(limit, now)
        except LimitExceeded as exc:
            raise LimitBreach(exc) from None

    def on_frame(
        self, frame: Frame, now: float, *, opens_stream: bool = False, answered: bool = False
    ) -> None:
        """Count a frame (a whole header block counts as its HEADERS frame) arriving at
        *now*; *opens_stream* if it is a HEADERS frame that starts a new stream,
        *answered* if it is a RST_STREAM for a stream we already sent headers on.

        :raises LimitBreach: if the peer went over a rate
        """
        if isinstance(frame, DataFrame):
            if not frame.data and "END_STREAM" not in frame.flags:
                self._check("empty_frames_per_second", now)
        elif isinstance(frame, HeadersFrame):
            if opens_stream:
                self._check("streams_per_second", now)
        elif isinstance(frame, RstStreamFrame):
            # cancelling a stream that was answered is ordinary (a client closing its
            # open streams at once); resetting one before the answer is rapid reset
            if not answered:
                self._check("resets_per_second", now)
        elif isinstance(frame, PingFrame):
            # an ACK answers one of our own pings (an unsolicited one costs nothing)
            if "ACK" not in frame.flags:
                self._check("pings_per_second", now)
        elif isinstance(frame, SettingsFrame):
            if "ACK" not in frame.flags:
                self._check("settings_per_second", now)
        elif isinstance(frame, (PriorityFrame, ExtensionFrame)):
            # neither has any effect here (h2 4 keeps no priority tree)
            self._check("empty_frames_per_second", now)

    def on_provoked_reset(self, now: float) -> None:
        """Count a RST_STREAM that h2 queues in answer to a frame of the peer (a frame for
        a stream that is closed, CVE-2019-9514): each costs us a frame to write, so they
        count against the same rate as the resets the peer sends.

        :raises LimitBreach: if the peer went over the rate
        """
        self._check("resets_per_second", now)

    def on_header_fragment(self, frame: Frame, now: float, *, first: bool) -> None:
        """Count one fragment of a header block (*first*: its HEADERS or PUSH_PROMISE)
        before it is buffered.

        :raises LimitBreach: if the block grew too big or came in too many pieces, or
            the peer sent too many empty fragments
        """
        assert isinstance(frame, (HeadersFrame, ContinuationFrame, PushPromiseFrame))
        if first:
            self._block_size = 0
            self._block_frames = 0
        size = len(frame.data)
        self._block_size += size
        self._block_frames += 1
        if not size and "END_STREAM" not in frame.flags:
            self._check("empty_frames_per_second", now)
        if self._block_size > self.max_header_block:
            raise LimitBreach(
                LimitExceeded(
                    "max_header_list_size",
                    f"a compressed header block passed {self.max_header_block} bytes",
                    ErrorCode.ENHANCE_YOUR_CALM,
                )
            )
        if self._block_frames > MAX_HEADER_FRAMES:
            raise LimitBreach(
                LimitExceeded(
                    "max_header_frames",
                    f"a header block came in more than {MAX_HEADER_FRAMES} frames",
                    ErrorCode.ENHANCE_YOUR_CALM,
                )
            )


class AnswerQueue:
    """Counts the frames other than DATA (answers to pings, settings and requests,
    resets, window updates) that are queued for the peer but not yet handed to the
    transport.

    A peer that never reads makes that queue grow with every frame it sends; past
    *limit* the connection must end. DATA is not counted: flow control and the writer's
    high-water mark bound it already.

    :param limit: the most answers that may wait at once
    """

    __slots__ = ("_marks", "_written", "limit", "pending")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: answers queued and not yet taken by the writer
        self.pending = 0
        self._written = 0
        self._marks: deque[tuple[int, int]] = deque()

    def queued(self, size: int, answers: int) -> None:
        """*size* bytes holding *answers* answers went into the writer's queue."""
        self._written += size
        if answers:
            self._marks.append((self._written, answers))
            self.pending += answers

    def taken(self, unsent: int) -> None:
        """The writer's queue holds *unsent* bytes now: what came before them is gone."""
        taken = self._written - unsent
        marks = self._marks
        while marks and marks[0][0] <= taken:
            self.pending -= marks.popleft()[1]

    def check(self) -> None:
        """:raises ~streams.LimitExceeded: if more than ``limit`` answers wait"""
        if self.pending > self.limit:
            raise LimitExceeded(
                "max_queued_control_frames",
                f"{self.pending} answers wait for a peer that does not read them",
                ErrorCode.ENHANCE_YOUR_CALM,
            )
