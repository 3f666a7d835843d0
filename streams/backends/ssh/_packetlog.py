"""asyncssh's log lines, made only when they are written.

asyncssh describes every packet it sends or receives for its debug log (the packet type's
name, ``plural(len(packet), 'byte')``, a call into its logger) before the logger looks at
the debug level, which writes the line only at ``asyncssh.set_debug_level(3)``: five
calls and two formatted strings per packet, 16 packets per open-echo-close counting the
IGNORE before each, on each end. Its logger adapter, too, converts every argument of a
message (with two functions made per call) before :mod:`logging` looks at the level: a
channel's life is five such messages (INFO and DEBUG), usually written nowhere.

The functions here look at the level first and hand over to asyncssh's own logging when
the line is to be written, so the log is the same.
"""

from __future__ import annotations

from typing import Any

from asyncssh.logging import SSHLogger

__all__ = ["CheckedSSHLogger", "quiet_logging", "quiet_packet_log"]


def quiet_packet_log(handler: Any) -> None:
    """Make *handler* (an asyncssh connection, or any packet handler object) describe its
    packets only at debug level 3; two entries of that one object are replaced."""
    sent = handler.log_sent_packet
    received = handler.log_received_packet

    def log_sent_packet(pkttype: int, pktid: int | None, packet: Any, note: str = "") -> None:
        if SSHLogger._debug_level >= 3:
            sent(pkttype, pktid, packet, note)

    def log_received_packet(pkttype: int, pktid: int | None, packet: Any, note: str = "") -> None:
        if SSHLogger._debug_level >= 3:
            received(pkttype, pktid, packet, note)

    handler.log_sent_packet = log_sent_packet
    handler.log_received_packet = log_received_packet


class CheckedSSHLogger(SSHLogger):
    """asyncssh's logger adapter, asking :mod:`logging` whether the level is written
    before converting the arguments. Its children (``get_child``, which every channel
    calls) are of this class too."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(level):
            super().log(level, msg, *args, **kwargs)


def quiet_logging(conn: Any) -> None:
    """Make *conn* (an asyncssh connection) and the channels it makes from now on format
    log lines only when they are written: its packet log (:func:`quiet_packet_log`) and
    its logger (a :class:`CheckedSSHLogger` with the same logger and context)."""
    quiet_packet_log(conn)
    current = conn._logger
    if not isinstance(current, CheckedSSHLogger):
        conn._logger = CheckedSSHLogger(current._logger, context=current._context)
