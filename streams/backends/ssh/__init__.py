"""The SSH backend: each stream is an SSH channel, on asyncssh.

Between two ``streams`` peers a stream is a channel of our own type
(``streams-v2@stream``: its headers ride in the open request, the answer in the open
confirmation); a stream whose headers
name ``x-ssh-destination: HOST:PORT`` is a standard ``direct-tcpip`` channel, so any SSH
server forwards it; and on our server an incoming ``direct-tcpip`` channel (``ssh -W``,
``ssh -L``) is a stream for the handler to decide. The mapping, the security defaults and
what a peer sees on a reset are in ``docs/ssh.md``.

Runs on asyncio, and on trio through ``trio-asyncio``.
"""

from __future__ import annotations

from ._backend import SSHBackend, SSHStreamServer
from ._config import (
    CHANNEL_HEADER,
    DESTINATION_HEADER,
    OPEN_FAILURE_HEADER,
    ORIGIN_HEADER,
    USER_HEADER,
    AuthenticationFailed,
    HostKeyNotVerified,
    SSHAttribute,
    SSHSettings,
)
from ._provider import SSHProvider

__all__ = [
    "BACKEND",
    "CHANNEL_HEADER",
    "DESTINATION_HEADER",
    "OPEN_FAILURE_HEADER",
    "ORIGIN_HEADER",
    "USER_HEADER",
    "AuthenticationFailed",
    "HostKeyNotVerified",
    "SSHAttribute",
    "SSHBackend",
    "SSHProvider",
    "SSHSettings",
    "SSHStreamServer",
]

#: the SSH backend, as :func:`streams.backends.get_backend` finds it
BACKEND = SSHBackend()
