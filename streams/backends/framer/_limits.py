"""The abuse limits of one framer connection, kept out of the driver's frame handling.

yamux has four frame types and no settings, so the floods that apply are: pings, streams
opened, resets (rapid reset: SYN then RST at once), frames without effect (empty Data,
Window Updates of nothing), and answers queued for a peer that does not read them. The
rates come from :class:`~streams._core.limits.FloodGuard`. The queue bound counts what
this side owes the peer (ping answers, stream acceptances and refusals) while the output
is backed up past ``write_buffer``, as Go's ``maxQueuedControlFrames`` counts control
frames queued behind a peer that does not read. (Counting every answer since the writer
last ran would punish a peer that merely sends many frames in one read: the reader
handles a whole read before the writer gets its turn.)
"""

from __future__ import annotations

import logging

from ..._core.errors import ErrorCode, LimitExceeded
from ..._core.limits import FloodGuard
from ..._core.transport import OutboundBuffer
from .config import FramerSettings

__all__ = ["ANSWER_UNIT", "ConnectionLimits"]

#: an answer counts as one queued frame per this many bytes (at least one): a ping answer
#: is one, an acceptance echoing 64 KiB of headers is 64
ANSWER_UNIT = 1024


class ConnectionLimits:
    """Rate limits and the answer-queue bound of one connection.

    :param settings: the connection's settings
    :param out: the connection's output queue
    :param now: the current time, on the driver's clock
    :param peer: how to name the peer in log lines
    """

    __slots__ = ("_answers", "_guard", "_high_water", "_logged", "_max_answers", "_out", "peer")

    def __init__(
        self, settings: FramerSettings, out: OutboundBuffer, now: float, peer: object
    ) -> None:
        self._guard = FloodGuard.from_settings(settings, now)
        self._out = out
        self._max_answers = settings.max_queued_control_frames
        self._high_water = settings.write_buffer
        self._answers = 0
        self._logged: set[str] = set()
        self.peer = peer

    def check(self, limit: str, now: float) -> None:
        """Count one event of kind *limit* (a :data:`~streams._core.limits.FLOOD_LIMITS`
        name).

        :raises ~streams.LimitExceeded: if the peer went over the rate
        """
        self._guard.check(limit, now)

    def answered(self, size: int) -> None:
        """Count an answer of *size* bytes just queued for the peer.

        :raises ~streams.LimitExceeded: (``max_queued_control_frames``) if more answers
            were queued while the output was backed up than the limit allows
        """
        if self._out.queued <= self._high_water:
            # the writer keeps up (it took the queue since the last count)
            self._answers = 0
            return
        self._answers += 1 + size // ANSWER_UNIT
        if self._answers > self._max_answers:
            raise LimitExceeded(
                "max_queued_control_frames",
                f"more than {self._max_answers} answers queued for a peer that does not read them",
                ErrorCode.ENHANCE_YOUR_CALM,
            )

    def stream_refused(self, log: logging.Logger, limit: str, stream_id: int, detail: str) -> None:
        """Log that a stream was refused for going over *limit*: once per limit and
        connection, so that a flood of refusals does not flood the log too."""
        if limit in self._logged:
            return
        self._logged.add(limit)
        log.warning(
            "refusing stream %s from %s: limit %s exceeded (%s); further refusals for it on "
            "this connection are not logged",
            stream_id,
            self.peer,
            limit,
            detail,
            extra={"limit": limit, "peer": str(self.peer)},
        )
