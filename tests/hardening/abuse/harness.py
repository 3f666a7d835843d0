"""What every abuse test shares: a ``streams echo`` server in its own process (so its
resident memory is the server's alone), a raw attacker socket that writes and never reads,
and a well-behaved client whose transfer must keep working during the attack.

Each backend's abuse tests (``test_<backend>.py`` here) write their own malicious frames;
this module knows nothing of any protocol.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from subprocess import Popen

import anyio

from streams import StreamProvider
from tests.peers import listening_address, running, streams_command

#: the whole server process must stay under this resident size during any attack
RSS_LIMIT_BYTES = 200 * 1024 * 1024
#: what the attacker's socket lets the kernel buffer for it: small, so that whatever the
#: server writes to it piles up in the server, as it would against a peer that never reads
ATTACKER_RECEIVE_BUFFER = 4096


@dataclass(slots=True)
class EchoServer:
    """A running ``streams echo`` server process under attack."""

    process: Popen[str]
    host: str
    port: int
    backend: str
    args: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        """``host:port`` to dial."""
        return f"{self.host}:{self.port}"

    def _status(self, key: str) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no {key} in /proc/{self.process.pid}/status")

    def peak_rss(self) -> int:
        """The most the server process has ever held resident, in bytes (VmHWM)."""
        return self._status("VmHWM")

    def rss(self) -> int:
        """What the server process holds resident now, in bytes."""
        return self._status("VmRSS")

    def log(self) -> str:
        """Everything the server wrote to standard error so far."""
        return "".join(self.process.errors)  # type: ignore[attr-defined]

    def alive(self) -> bool:
        """``True`` while the server process runs."""
        return self.process.poll() is None

    async def wait_for_log(self, fragment: str, seconds: float = 10.0) -> str:
        """Wait until *fragment* appears in the server's log; the matching line."""
        with anyio.fail_after(seconds):
            while True:
                for line in self.log().splitlines():
                    if fragment in line:
                        return line
                await anyio.sleep(0.02)

    def assert_within_memory(self) -> None:
        """Fail if the server ever went over :data:`RSS_LIMIT_BYTES` resident."""
        peak = self.peak_rss()
        assert peak < RSS_LIMIT_BYTES, (
            f"the {self.backend} server peaked at {peak / 2**20:.0f} MiB resident "
            f"(limit {RSS_LIMIT_BYTES / 2**20:.0f} MiB)"
        )


@contextmanager
def echo_server(
    backend: str, *args: str, settings: dict[str, object] | None = None
) -> Iterator[EchoServer]:
    """Run ``streams echo --backend BACKEND ARGS...`` on loopback (verbose, so that limit
    log lines reach standard error) and stop it by its process id afterwards."""
    command = streams_command("-v", "echo", "--listen", "127.0.0.1:0", "--backend", backend)
    command += list(args)
    for name, value in (settings or {}).items():
        command += ["--setting", f"{name}={value}"]
    with running(command, ready_line="echo: listening on") as process:
        host, _, port = listening_address(process).rpartition(":")
        yield EchoServer(process, host.strip("[]"), int(port), backend, list(args))


def attacker_socket(server: EchoServer) -> socket.socket:
    """A blocking TCP connection to *server* that reads as little as the kernel allows."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, ATTACKER_RECEIVE_BUFFER)
    sock.settimeout(10.0)
    sock.connect((server.host, server.port))
    return sock


def flood(sock: socket.socket, frame: bytes, count: int, *, batch: int = 256) -> int:
    """Write *frame* up to *count* times, in batches; stop early once the server closes
    the connection or stops reading for a second. How many frames were written."""
    sock.settimeout(1.0)
    chunk = frame * batch
    sent = 0
    try:
        while sent < count:
            sock.sendall(chunk)
            sent += batch
    except (TimeoutError, BrokenPipeError, ConnectionResetError):
        pass
    return sent


def drain_until_closed(sock: socket.socket, timeout: float = 15.0, limit: int = 256 << 20) -> bytes:
    """Read what the server sent until it closes the connection (bounded in time and
    bytes); the attacker does this only after its attack, to find the server's
    closing frame."""
    deadline = time.monotonic() + timeout
    received = bytearray()
    while time.monotonic() < deadline and len(received) < limit:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            break
        except ConnectionResetError:
            return bytes(received)
        if not chunk:
            return bytes(received)
        received += chunk
    raise AssertionError(
        f"the server did not close the attacking connection within {timeout} s "
        f"({len(received)} bytes read)"
    )


async def echo_transfer(
    provider: StreamProvider, size: int = 8 << 20, chunk: int = 64 << 10
) -> float:
    """Send *size* pseudo-random bytes through one echo stream, check what comes back by
    hash, and return the throughput in bytes per second (for reports, not assertions)."""
    payload = os.urandom(chunk)
    sent_hash = hashlib.sha256()
    received_hash = hashlib.sha256()
    received = 0
    started = time.perf_counter()
    async with await provider.open_stream({"x-abuse": "good"}) as stream:

        async def send() -> None:
            remaining = size
            while remaining:
                piece = payload[: min(chunk, remaining)]
                await stream.send(piece)
                sent_hash.update(piece)
                remaining -= len(piece)
            await stream.send_eof()

        async with anyio.create_task_group() as group:
            group.start_soon(send)
            while True:
                try:
                    data = await stream.receive(1 << 20)
                except anyio.EndOfStream:
                    break
                received_hash.update(data)
                received += len(data)
    elapsed = time.perf_counter() - started
    assert received == size, f"echoed {received} of {size} bytes"
    assert received_hash.digest() == sent_hash.digest(), "the echo differs from what was sent"
    return size / elapsed
