"""The control channel between two ``streams`` peers: Go Away and pings (single
messages, see ``docs/ssh.md``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncssh
from asyncssh.channel import SSHChannel

from ..._core.errors import ProtocolError
from ._codec import CodecError, ControlReader

if TYPE_CHECKING:
    from ._provider import SSHProvider

__all__ = ["ControlSession"]


class ControlSession(asyncssh.SSHUNIXSession[bytes]):
    """The control channel: Go Away and pings between two ``streams`` peers."""

    def __init__(self, provider: SSHProvider) -> None:
        self.provider = provider
        self.chan: SSHChannel[bytes] | None = None
        self._reader = ControlReader()

    def connection_made(self, chan: SSHChannel[bytes]) -> None:
        self.chan = chan
        with self.provider.bridge.pin:
            self.provider.control_opened(self)

    def data_received(self, data: bytes, datatype: int | None) -> None:
        with self.provider.bridge.pin:
            try:
                messages = self._reader.feed(data)
            except CodecError as exc:
                self.provider.fail(ProtocolError(f"ssh control channel: {exc}"))
                return
            for message in messages:
                self.provider.on_control(message)

    def eof_received(self) -> bool:
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.chan = None

    def pause_writing(self) -> None:
        """Control messages are tiny; nothing to pause."""

    def resume_writing(self) -> None:
        """See :meth:`pause_writing`."""

    def send(self, data: bytes) -> None:
        """Write a control message, if the channel is still open."""
        if self.chan is not None and not self.chan.is_closing():
            self.chan.write(data)
