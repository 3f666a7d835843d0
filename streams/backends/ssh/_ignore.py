"""No IGNORE packet before every packet under an AEAD cipher.

asyncssh puts an empty ``SSH_MSG_IGNORE`` before every packet it encrypts after the key
exchange. That is the countermeasure RFC 4251 (9.3.1) gives for CBC mode, whose IV is the
last ciphertext block the attacker saw: a packet of random-looking content in between
makes the next IV unpredictable. An AEAD cipher has no such IV: AES-GCM's nonce is a
counter (RFC 5647, 7.1) and chacha20-poly1305's is the packet's sequence number, so the
extra packet protects nothing there (PuTTY, which has the same workaround, applies it
under CBC ciphers only). It doubles asyncssh's work per packet (encryption,
framing, parsing and dispatch on the other end): 16 packets per open-echo-close instead
of 8.

:func:`skip_ignore_under_aead` leaves that packet out while the connection's sending
cipher is AES-GCM or chacha20-poly1305 (looked at for every packet, so a key
re-exchange that picked another cipher brings it back); any other IGNORE (a peer's, or
one sent on purpose with content) is untouched.
"""

from __future__ import annotations

from typing import Any

from asyncssh.constants import MSG_IGNORE
from asyncssh.encryption import ChachaEncryption, GCMEncryption

__all__ = ["skip_ignore_under_aead"]

#: the encrypting objects of the AEAD ciphers asyncssh has
_AEAD = (GCMEncryption, ChachaEncryption)
#: the payload of asyncssh's own IGNORE: an empty string
_EMPTY = (b"\0\0\0\0",)


def skip_ignore_under_aead(conn: Any) -> None:
    """Leave out the IGNORE that *conn* (an asyncssh connection) puts before each packet
    while it encrypts with an AEAD cipher. Replaces ``send_packet`` on that one object
    (asyncssh sends the IGNORE through it)."""
    send = conn.send_packet

    def send_packet(pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == _EMPTY and isinstance(conn._send_encryption, _AEAD):
            return
        send(pkttype, *args, handler=handler)

    conn.send_packet = send_packet
