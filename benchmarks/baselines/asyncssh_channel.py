"""A bare asyncssh channel: what the SSH backend is held to.

One SSH connection on loopback (ed25519 keys made for the run); each exchange is a
``direct-streamlocal`` channel, opened with asyncssh's stream API (``open_unix_connection``)
to a session that echoes (``echo``) or counts and answers the count (``sink``). Both ends
offer the backend's cipher order (AES-GCM first, ``CIPHERS``), so that the ratio is the
backend's own layer over asyncssh and not the cipher: asyncssh's default,
chacha20-poly1305, builds its cipher contexts in Python per packet and is about twice as
slow per exchange (``python -m benchmarks.bench_ssh`` measures both). The whole
workload runs as one asyncio coroutine: on trio it is awaited through the same
``trio-asyncio`` bridge the backend uses, but crosses it once, so the figure is asyncssh's
own.
"""

from __future__ import annotations

import asyncio
import getpass
import tempfile
import time
from pathlib import Path
from typing import Any

from streams.backends.ssh._backend import CIPHERS

from .. import _workloads as workloads
from .._workloads import MESSAGE, Sizes

NAME = "asyncssh channel"
LOOPS = ("asyncio", "uvloop", "trio")
CHUNK = 64 * 1024


def missing() -> str | None:
    """Why this baseline cannot run here, or ``None``."""
    try:
        import asyncssh  # noqa: F401
    except ImportError:
        return "asyncssh is not installed (pip install 'streams[ssh]')"
    return None


def _session_classes() -> tuple[type, type]:
    import asyncssh

    class Echo(asyncssh.SSHUNIXSession[bytes]):
        def connection_made(self, chan: Any) -> None:
            self._chan = chan

        def data_received(self, data: bytes, datatype: Any) -> None:
            self._chan.write(data)

        def eof_received(self) -> bool:
            self._chan.write_eof()
            return False

    class Sink(asyncssh.SSHUNIXSession[bytes]):
        def connection_made(self, chan: Any) -> None:
            self._chan = chan
            self._count = 0

        def data_received(self, data: bytes, datatype: Any) -> None:
            self._count += len(data)

        def eof_received(self) -> bool:
            self._chan.write(str(self._count).encode())
            self._chan.write_eof()
            return False

    return Echo, Sink


async def _on_asyncio(sizes: Sizes, directory: Path) -> dict[str, float]:
    import asyncssh

    from ..bench_ssh import Keys

    echo_session, sink_session = _session_classes()

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def unix_connection_requested(self, dest_path: str) -> Any:
            return sink_session() if dest_path == "sink" else echo_session()

    keys = Keys(directory)
    server = await asyncssh.create_server(
        Server,
        "127.0.0.1",
        0,
        server_host_keys=[str(keys.host_key)],
        authorized_client_keys=str(keys.authorized_keys),
        encryption_algs=CIPHERS,
        config=None,
    )
    port = server.get_port()
    results: dict[str, float] = {}
    try:
        async with asyncssh.connect(
            "127.0.0.1",
            port,
            known_hosts=str(keys.known_hosts(port)),
            client_keys=[str(keys.user_key)],
            username=getpass.getuser(),
            agent_path=None,
            encryption_algs=CIPHERS,
            config=None,
        ) as connection:

            async def exchange(latencies: list[float] | None = None) -> None:
                started = time.perf_counter()
                reader, writer = await connection.open_unix_connection("echo")
                if latencies is not None:
                    latencies.append(time.perf_counter() - started)
                writer.write(MESSAGE)
                writer.write_eof()
                if await reader.read() != MESSAGE:
                    raise AssertionError("the echo differs")
                writer.close()

            await exchange()
            started = time.perf_counter()
            reader, writer = await connection.open_unix_connection("sink")
            block = b"b" * CHUNK
            count = sizes.bulk_bytes // CHUNK
            for _ in range(count):
                writer.write(block)
                await writer.drain()
            writer.write_eof()
            answer = await reader.read()
            results["bulk"] = count * CHUNK / (time.perf_counter() - started) / 1e6
            if int(answer) != count * CHUNK:
                raise AssertionError(f"the sink counted {answer!r}")
            writer.close()

            latencies: list[float] = []
            started = time.perf_counter()
            for _ in range(sizes.opens):
                await exchange(latencies)
            results["rate"] = sizes.opens / (time.perf_counter() - started)
            results["open_p50"] = workloads.percentile(latencies, 0.5) * 1e6
            results["open_p99"] = workloads.percentile(latencies, 0.99) * 1e6

            share = max(sizes.concurrent_opens // workloads.CONCURRENCY, 1)

            async def worker() -> None:
                for _ in range(share):
                    await exchange()

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(workloads.CONCURRENCY)))
            elapsed = time.perf_counter() - started
            results["rate_100"] = share * workloads.CONCURRENCY / elapsed
    finally:
        server.close()
        await server.wait_closed()
    return results


async def measure(sizes: Sizes, memory: bool) -> dict[str, float]:
    """Bulk through one channel, and channels per second sequentially and 100 at once."""
    del memory
    from streams.backends.ssh._bridge import open_bridge

    with tempfile.TemporaryDirectory() as directory:
        async with open_bridge() as bridge:
            return await bridge.run(_on_asyncio, sizes, Path(directory))
