"""The SSH backend against a bare asyncssh channel (and the framer backend, when present),
measured in the same run: single-stream throughput and the rate of opening streams.

    python -m benchmarks.bench_ssh [--json] [--mib 64] [--opens 300] [--loop asyncio|trio]
    python -m benchmarks.bench_ssh --count [--opens 500] [--top K]
    python -m benchmarks.bench_ssh --cpu [--loop asyncio|uvloop|trio] [--blocks 15]
        [--keep-ignore]

``--count`` counts instead of timing (counts stay put on a busy machine): Python calls,
event-loop iterations, callbacks and SSH messages per open-echo-close (64 bytes) on asyncio,
with cProfile, for the bare channel with either cipher order and for this backend;
``--top K`` adds the K functions whose calls per exchange differ most between this backend
and the bare channel with AES-GCM first (calls and own time per exchange, each side).

``--cpu`` measures the open-echo-close rate in CPU time (``time.process_time``), which a
busy machine disturbs much less than the clock on the wall: the bare channel (AES-GCM
first, echoing from its callbacks) and this backend (the suite's workload, a handler task
per stream) run side by side in one process, in alternating blocks of 100 exchanges, and
the best and median block of each give the ratio. ``--keep-ignore`` measures this backend
with asyncssh's IGNORE before every packet, as a bare channel sends it.

Ratios are over a bare asyncssh channel with asyncssh's default ciphers (what a user of
asyncssh gets). The bare channel with AES-GCM first, the cipher order this backend uses, is
measured too: ``streams ssh`` over that row is the backend's own cost, the cipher aside.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib.util
import json
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import asyncssh

from streams._core.abc import Listener, StreamProvider
from streams._core.backend import BackendOptions, SSHConfig
from streams.backends import get_backend
from streams.backends.ssh import BACKEND
from streams.backends.ssh._backend import CIPHERS
from streams.backends.ssh._bridge import Bridge, open_bridge

CHUNK = 64 * 1024
BARE_PATH = "bench@sink"


class Keys:
    """A host key, a user key and its authorized_keys, generated for one run."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        host = asyncssh.generate_private_key("ssh-ed25519")
        user = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key = directory / "host"
        self.user_key = directory / "user"
        host.write_private_key(str(self.host_key))
        user.write_private_key(str(self.user_key))
        self.host_public = host.export_public_key().decode().strip()
        self.authorized_keys = directory / "authorized_keys"
        self.authorized_keys.write_text(user.export_public_key().decode())

    def known_hosts(self, port: int) -> Path:
        path = self.directory / f"known_hosts-{port}"
        path.write_text(f"[127.0.0.1]:{port} {self.host_public}\n")
        return path

    def bare_server(self, ciphers: str | None = None) -> dict[str, Any]:
        """``asyncssh.create_server``'s keyword arguments for these keys (and *ciphers*)."""
        chosen = {"encryption_algs": ciphers} if ciphers else {}
        return {
            "server_host_keys": [str(self.host_key)],
            "authorized_client_keys": str(self.authorized_keys),
            "config": None,
            **chosen,
        }

    def bare_client(self, port: int, ciphers: str | None = None) -> dict[str, Any]:
        """``asyncssh.connect``'s keyword arguments for these keys (and *ciphers*)."""
        chosen = {"encryption_algs": ciphers} if ciphers else {}
        return {
            "known_hosts": str(self.known_hosts(port)),
            "client_keys": [str(self.user_key)],
            "username": getpass.getuser(),
            "agent_path": None,
            "config": None,
            **chosen,
        }

    def server_options(self) -> BackendOptions:
        return BackendOptions(
            ssh=SSHConfig(host_key=str(self.host_key), authorized_keys=str(self.authorized_keys))
        )

    def client_options(self, port: int) -> BackendOptions:
        return BackendOptions(
            ssh=SSHConfig(
                identity=str(self.user_key),
                known_hosts=str(self.known_hosts(port)),
                user=getpass.getuser(),
            )
        )


class _Sink(asyncssh.SSHUNIXSession[bytes]):
    """Server side of the bare channel: counts bytes, answers EOF with EOF."""

    def __init__(self, done: Callable[[int], None]) -> None:
        self._done = done
        self._count = 0
        self._chan: Any = None

    def connection_made(self, chan: Any) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self._count += len(data)

    def eof_received(self) -> bool:
        self._done(self._count)
        return False


class _BareServer(asyncssh.SSHServer):
    def __init__(self, done: Callable[[int], None]) -> None:
        self._done = done

    def begin_auth(self, username: str) -> bool:
        return True

    def unix_connection_requested(self, dest_path: str) -> Any:
        return _Sink(self._done)


class _Writer(asyncssh.SSHUNIXSession[bytes]):
    """Client side of the bare channel: waits while asyncssh's send buffer is full."""

    def __init__(self) -> None:
        self.writable = True
        self.event: anyio.Event | None = None

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        if self.event is not None:
            self.event.set()


async def _bare(
    bridge: Bridge, keys: Keys, mib: int, opens: int, ciphers: str | None = None
) -> tuple[float, float]:
    """Throughput (MB/s) and opens per second of bare asyncssh channels (with asyncssh's
    default ciphers, or *ciphers*)."""
    results: list[int] = []
    finished = anyio.Event()

    def done(count: int) -> None:
        results.append(count)
        finished.set()

    server = await bridge.run(
        asyncssh.create_server,
        lambda: _BareServer(done),
        "127.0.0.1",
        0,
        **keys.bare_server(ciphers),
    )
    port = server.get_port()
    conn = await bridge.run(asyncssh.connect, "127.0.0.1", port, **keys.bare_client(port, ciphers))
    try:
        writer = _Writer()
        chan, _ = await bridge.run(conn.create_unix_connection, lambda: writer, BARE_PATH)
        chan.set_write_buffer_limits(high=256 * 1024)
        block = b"x" * CHUNK
        total = mib * 1024 * 1024
        started = anyio.current_time()
        for _ in range(total // CHUNK):
            while not writer.writable:
                writer.event = anyio.Event()
                await writer.event.wait()
            chan.write(block)
        chan.write_eof()
        await finished.wait()
        throughput = results[0] / (anyio.current_time() - started) / 1e6
        chan.close()

        started = anyio.current_time()
        for _ in range(opens):
            chan, _ = await bridge.run(
                conn.create_unix_connection, asyncssh.SSHUNIXSession, BARE_PATH
            )
            chan.close()
        rate = opens / (anyio.current_time() - started)
    finally:
        conn.close()
        server.close()
    return throughput, rate


async def _provider_figures(
    client: StreamProvider, listener: Listener, mib: int, opens: int
) -> tuple[float, float]:
    """Throughput (MB/s) and opens per second from *client* to whoever feeds *listener*."""
    total = mib * 1024 * 1024
    received = 0

    async def sink() -> None:
        nonlocal received
        stream = await listener.accept()
        async with stream:
            while True:
                try:
                    received += len(await stream.receive(1 << 20))
                except anyio.EndOfStream:
                    return

    block = b"x" * CHUNK
    async with anyio.create_task_group() as group:
        group.start_soon(sink)
        stream = await client.open_stream()
        started = anyio.current_time()
        for _ in range(total // CHUNK):
            await stream.send(block)
        await stream.send_eof()
    throughput = received / (anyio.current_time() - started) / 1e6
    await stream.aclose()

    async def accept_and_close() -> None:
        for _ in range(opens):
            accepted = await listener.accept()
            await accepted.aclose()

    async with anyio.create_task_group() as group:
        group.start_soon(accept_and_close)
        started = anyio.current_time()
        for _ in range(opens):
            opened = await client.open_stream()
            await opened.aclose()
        rate = opens / (anyio.current_time() - started)
    return throughput, rate


async def _ssh(keys: Keys, mib: int, opens: int) -> tuple[float, float]:
    async with BACKEND.serve("127.0.0.1:0", keys.server_options()) as server:
        port = int(server.address.rsplit(":", 1)[1])
        async with BACKEND.connect(server.address, keys.client_options(port)) as client:
            return await _provider_figures(client, server.listener, mib, opens)


async def _framer(mib: int, opens: int) -> tuple[float, float] | None:
    if importlib.util.find_spec("streams.backends.framer") is None:
        return None
    backend = get_backend("framer")
    async with (
        backend.serve("127.0.0.1:0", BackendOptions()) as server,
        backend.connect(server.address, BackendOptions()) as client,
    ):
        return await _provider_figures(client, server.listener, mib, opens)


async def run(mib: int, opens: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as directory:
        keys = Keys(Path(directory))
        async with open_bridge() as bridge:
            bare = await _bare(bridge, keys, mib, opens)
            # the cipher this backend prefers: the ratio of the next two rows is the
            # backend's own cost, the cipher aside
            bare_gcm = await _bare(bridge, keys, mib, opens, CIPHERS)
        ssh = await _ssh(keys, mib, opens)
        framer = await _framer(mib, opens)
    rows: list[dict[str, Any]] = []
    for name, figures in (
        ("asyncssh channel", bare),
        ("asyncssh channel, AES-GCM first", bare_gcm),
        ("streams ssh", ssh),
        ("streams framer", framer),
    ):
        if figures is None:
            continue
        throughput, rate = figures
        rows.append(
            {
                "case": name,
                "throughput_mb_s": round(throughput, 1),
                "throughput_ratio": round(throughput / bare[0], 3),
                "opens_per_s": round(rate, 1),
                "open_ratio": round(rate / bare[1], 3),
            }
        )
    return rows


class _Echo(asyncssh.SSHUNIXSession[bytes]):
    """Server side of the bare channel for ``--count``: echoes, answers EOF with EOF."""

    def connection_made(self, chan: Any) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self._chan.write(data)

    def eof_received(self) -> bool:
        self._chan.write_eof()
        return False


class _EchoServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def unix_connection_requested(self, dest_path: str) -> Any:
        return _Echo()


Counted = tuple[dict[str, float], Any]


def _counted(profile: Any, sent: dict[int, int], exchanges: int) -> Counted:
    from .profile_rate import counts

    figures = counts(profile, exchanges)
    figures["ssh messages"] = sum(n for kind, n in sent.items() if kind != 2) / exchanges
    figures["IGNORE packets"] = sent.get(2, 0) / exchanges
    return {name: round(value) for name, value in figures.items()}, profile


def difference(theirs: Any, ours: Any, exchanges: int, top: int) -> list[str]:
    """The *top* functions whose calls per exchange differ most between two cProfile
    profiles (by file and name, lines aside), with their own time per exchange."""
    import pstats

    here = str(Path(__file__).resolve().parent.parent) + "/"

    def table(profile: Any) -> dict[tuple[str, str], tuple[float, float]]:
        rows: dict[tuple[str, str], tuple[float, float]] = {}
        for (path, _, name), value in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
            for prefix in ("site-packages/", here):
                path = path.rsplit(prefix, 1)[-1]
            path = re.sub(r".*/lib/python3\.\d+/", "", path)
            key = (path, name)
            calls, seconds = rows.get(key, (0.0, 0.0))
            rows[key] = (calls + value[1] / exchanges, seconds + value[2] / exchanges * 1e6)
        return rows

    base, mine = table(theirs), table(ours)
    keys = sorted(
        set(base) | set(mine),
        key=lambda key: -abs(mine.get(key, (0, 0))[0] - base.get(key, (0, 0))[0]),
    )
    lines = [f"{'calls: bare':>12} {'ours':>7} {'us: bare':>9} {'ours':>7}  function"]
    for key in keys[:top]:
        (bare_calls, bare_us), (our_calls, our_us) = base.get(key, (0, 0)), mine.get(key, (0, 0))
        lines.append(
            f"{bare_calls:12.1f} {our_calls:7.1f} {bare_us:9.1f} {our_us:7.1f}  {key[0]}:{key[1]}"
        )
    return lines


async def _count_bare(keys: Keys, exchanges: int, ciphers: str | None) -> Counted:
    import cProfile

    server = await asyncssh.create_server(_EchoServer, "127.0.0.1", 0, **keys.bare_server(ciphers))
    port = server.get_port()
    message = b"m" * 64
    try:
        async with asyncssh.connect("127.0.0.1", port, **keys.bare_client(port, ciphers)) as conn:

            async def exchange() -> None:
                reader, writer = await conn.open_unix_connection("echo")
                writer.write(message)
                writer.write_eof()
                if await reader.read() != message:
                    raise AssertionError("the echo differs")
                writer.close()

            for _ in range(20):
                await exchange()
            profile = cProfile.Profile()
            with _messages() as sent:
                profile.enable()
                for _ in range(exchanges):
                    await exchange()
                profile.disable()
    finally:
        server.close()
        await server.wait_closed()
    return _counted(profile, sent, exchanges)


async def _count_ours(keys: Keys, exchanges: int) -> Counted:
    import cProfile

    from ._workloads import open_echo_close

    # counting from before the connections exist: the provider wraps its connection's
    # send_packet, which then holds the counting one
    with _messages() as sent:
        async with BACKEND.serve("127.0.0.1:0", keys.server_options()) as server:
            port = int(server.address.rsplit(":", 1)[1])
            async with BACKEND.connect(server.address, keys.client_options(port)) as client:
                await open_echo_close(client, server.listener, 20)
                profile = cProfile.Profile()
                sent.clear()
                profile.enable()
                await open_echo_close(client, server.listener, exchanges)
                profile.disable()
                counted = dict(sent)
    return _counted(profile, counted, exchanges)


@contextlib.contextmanager
def _messages() -> Iterator[dict[int, int]]:
    """Count the SSH messages (IGNORE included) every asyncssh connection sends
    meanwhile, as they go out."""
    from asyncssh.connection import SSHConnection

    sent: dict[int, int] = {}
    original = SSHConnection.send_packet

    def send_packet(self: Any, pkttype: int, *args: Any, **kwargs: Any) -> None:
        sent[pkttype] = sent.get(pkttype, 0) + 1
        original(self, pkttype, *args, **kwargs)

    SSHConnection.send_packet = send_packet  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        SSHConnection.send_packet = original  # type: ignore[method-assign]


def count(exchanges: int) -> dict[str, Counted]:
    """Per open-echo-close counts (asyncio), and the profile they come from: the bare
    channel with asyncssh's default ciphers and with AES-GCM first, and this backend (the
    messages leave out IGNORE, counted apart)."""

    async def measure() -> dict[str, Counted]:
        with tempfile.TemporaryDirectory() as directory:
            keys = Keys(Path(directory))
            return {
                "asyncssh channel": await _count_bare(keys, exchanges, None),
                "asyncssh channel, AES-GCM first": await _count_bare(keys, exchanges, CIPHERS),
                "streams ssh": await _count_ours(keys, exchanges),
            }

    return anyio.run(measure)


async def cpu_ratio(blocks: int, size: int = 100) -> dict[str, float]:
    """CPU microseconds per open-echo-close, best and median block, for the bare channel
    (AES-GCM first) and this backend, and their ratios (bare over ours: the rate ratio)."""
    import time

    from ._workloads import MESSAGE, _echo, _exchange

    clock = time.process_time
    with tempfile.TemporaryDirectory() as directory:
        keys = Keys(Path(directory))
        async with open_bridge() as bridge:
            server = await bridge.run(
                asyncssh.create_server, _EchoServer, "127.0.0.1", 0, **keys.bare_server(CIPHERS)
            )
            port = server.get_port()
            conn = await bridge.run(
                asyncssh.connect, "127.0.0.1", port, **keys.bare_client(port, CIPHERS)
            )

            async def bare_block(count: int) -> float:
                async def exchanges() -> float:
                    started = clock()
                    for _ in range(count):
                        reader, writer = await conn.open_unix_connection("echo")
                        writer.write(MESSAGE)
                        writer.write_eof()
                        if await reader.read() != MESSAGE:
                            raise AssertionError("the echo differs")
                        writer.close()
                    return (clock() - started) / count * 1e6

                spent: float = await bridge.run(exchanges)
                return spent

            try:
                async with (
                    BACKEND.serve("127.0.0.1:0", keys.server_options()) as ours,
                    BACKEND.connect(
                        ours.address, keys.client_options(int(ours.address.rsplit(":", 1)[1]))
                    ) as client,
                    anyio.create_task_group() as group,
                ):
                    group.start_soon(ours.listener.serve, _echo)

                    async def our_block(count: int) -> float:
                        started = clock()
                        for _ in range(count):
                            await _exchange(await client.open_stream())
                        return (clock() - started) / count * 1e6

                    await bare_block(30)
                    await our_block(30)
                    bare: list[float] = []
                    mine: list[float] = []
                    for _ in range(blocks):
                        bare.append(await bare_block(size))
                        mine.append(await our_block(size))
                    group.cancel_scope.cancel()
            finally:
                conn.close()
                server.close()
    bare.sort()
    mine.sort()
    middle = len(bare) // 2
    return {
        "bare_us_best": round(bare[0], 1),
        "bare_us_median": round(bare[middle], 1),
        "ours_us_best": round(mine[0], 1),
        "ours_us_median": round(mine[middle], 1),
        "ratio_best": round(bare[0] / mine[0], 3),
        "ratio_median": round(bare[middle] / mine[middle], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--mib", type=int, default=64, help="MiB through one stream")
    parser.add_argument("--opens", type=int, default=300, help="streams opened one by one")
    parser.add_argument("--loop", choices=("asyncio", "uvloop", "trio"), default="asyncio")
    parser.add_argument(
        "--count", action="store_true", help="count calls per open-echo-close instead"
    )
    parser.add_argument(
        "--top", type=int, default=0, help="with --count: functions that differ most, listed"
    )
    parser.add_argument(
        "--cpu", action="store_true", help="open-echo-close rate ratio in CPU time instead"
    )
    parser.add_argument("--blocks", type=int, default=15, help="with --cpu: blocks of 100 each")
    parser.add_argument(
        "--keep-ignore",
        action="store_true",
        help="with --cpu: this backend sends asyncssh's IGNORE before every packet too",
    )
    args = parser.parse_args(argv)
    backend = "trio" if args.loop == "trio" else "asyncio"
    options = {"use_uvloop": True} if args.loop == "uvloop" else {}
    if args.cpu:
        if args.keep_ignore:
            from streams.backends.ssh import _provider

            _provider.skip_ignore_under_aead = lambda conn: None  # type: ignore[assignment]
        figures = anyio.run(cpu_ratio, args.blocks, backend=backend, backend_options=options)
        if args.json:
            result = {"benchmark": "ssh-cpu", "loop": args.loop, "results": figures}
            print(json.dumps(result, indent=2))
            return 0
        print(
            f"open-echo-close, CPU us per exchange ({args.loop}, {args.blocks} blocks of 100"
            f"{', asyncssh IGNOREs kept' if args.keep_ignore else ''}): bare channel (AES-GCM) "
            f"{figures['bare_us_best']} best / {figures['bare_us_median']} median, streams ssh "
            f"{figures['ours_us_best']} / {figures['ours_us_median']}; rate ratio "
            f"{figures['ratio_best']} / {figures['ratio_median']}"
        )
        return 0
    if args.count:
        profiled = count(args.opens)
        counted = {case: figures for case, (figures, _) in profiled.items()}
        if args.json:
            print(json.dumps({"benchmark": "ssh-count", "results": counted}, indent=2))
            return 0
        names = list(next(iter(counted.values())))
        print(f"per open-echo-close, {args.opens} on asyncio (cProfile)")
        print(f"{'':34}" + "".join(f"{name:>24}" for name in names))
        for case, figures in counted.items():
            print(f"{case:<34}" + "".join(f"{figures[name]:>24,.0f}" for name in names))
        if args.top:
            print("\nper exchange, bare channel (AES-GCM first) and streams ssh")
            bare = profiled["asyncssh channel, AES-GCM first"][1]
            print("\n".join(difference(bare, profiled["streams ssh"][1], args.opens, args.top)))
        return 0

    async def measure() -> list[dict[str, Any]]:
        return await run(args.mib, args.opens)

    rows = anyio.run(measure, backend=backend, backend_options=options)
    if args.json:
        print(json.dumps({"benchmark": "ssh", "loop": args.loop, "results": rows}, indent=2))
        return 0
    print(f"ssh backend, {args.mib} MiB through one stream, {args.opens} opens ({args.loop})")
    header = f"{'case':<32} {'MB/s':>8} {'ratio':>7} {'opens/s':>9} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['case']:<32} {row['throughput_mb_s']:>8} {row['throughput_ratio']:>7} "
            f"{row['opens_per_s']:>9} {row['open_ratio']:>7}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
