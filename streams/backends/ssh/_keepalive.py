"""asyncssh's keepalive, without a timer per socket read.

asyncssh re-arms its keepalive timer on every read from the socket: it cancels the timer
and schedules a new one, so the event loop's timer heap fills with cancelled timers that it
sifts out later (in an open-echo-close, about a third of the event loop's own work). The
same rule costs one clock read per socket read when the timer looks at the time of the last
read only when it fires: if data came in since, it waits out the rest of the interval;
otherwise asyncssh's own callback runs (count, ask the peer, give up after
``keepalive_count_max``), unchanged.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["lazy_keepalive"]


def lazy_keepalive(conn: Any) -> None:
    """Make *conn*'s keepalive timer note reads instead of re-arming on each one.

    Replaces two entries on that one connection object (asyncssh calls
    ``self._reset_keepalive_timer()`` for every read and schedules
    ``self._keepalive_timer_callback``); the connection's keepalive settings and its
    callback are asyncssh's.
    """
    interval = float(conn._keepalive_interval or 0)
    if not interval:
        return
    loop = conn._loop
    clock = time.monotonic
    last_read = clock()
    expire = conn._keepalive_timer_callback

    def note_read() -> None:
        nonlocal last_read
        last_read = clock()
        if conn._keepalive_timer is None and conn._auth_complete:
            conn._set_keepalive_timer()

    def check() -> None:
        conn._keepalive_timer = None
        quiet = clock() - last_read
        if quiet < interval:
            conn._keepalive_timer = loop.call_later(interval - quiet, check)
            return
        expire()

    conn._reset_keepalive_timer = note_read
    conn._keepalive_timer_callback = check
    if conn._keepalive_timer is not None:
        # armed with asyncssh's callback when the login completed
        conn._cancel_keepalive_timer()
        conn._set_keepalive_timer()
