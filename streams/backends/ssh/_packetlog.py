"""asyncssh's packet log, made only when it is written.

asyncssh describes every packet it sends or receives for its debug log (the packet type's
name, ``plural(len(packet), 'byte')``, a call into its logger) before the logger looks at
the debug level, which writes the line only at ``asyncssh.set_debug_level(3)``: five
calls and two formatted strings per packet, 16 packets per open-echo-close counting the
IGNORE before each, on each end. The functions here look at the level first and hand over
to asyncssh's own logging when it is 3, so the log is the same.
"""

from __future__ import annotations

from typing import Any

from asyncssh.logging import SSHLogger

__all__ = ["quiet_packet_log"]


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
