"""``streams probe``: open K concurrent streams to an echo server, send N random bytes on
each, half-close, and verify the echo byte for byte and the echoed headers. Prints one
summary line and exits 0 only if everything was verified."""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .._core.abc import StreamProvider
from .._core.headers import Headers
from .common import (
    add_backend_arguments,
    add_loop_argument,
    backend_from_args,
    headers_from_args,
    options_from_args,
    run_async,
)

__all__ = ["ProbeResult", "add_parser", "probe"]

BLOCK = 1 << 20


def add_parser(commands: Any, name: str) -> None:
    parser = commands.add_parser(name, help="verify an echo server", description=__doc__)
    parser.add_argument("--connect", required=True, metavar="HOST:PORT", help="the echo server")
    parser.add_argument("--streams", type=int, default=1, metavar="K", help="concurrent streams")
    parser.add_argument("--bytes", type=int, default=1024, metavar="N", help="bytes per stream")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a header for every stream; repeatable",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for everything")
    add_backend_arguments(parser)
    add_loop_argument(parser)
    parser.set_defaults(run=run)


@dataclass
class ProbeResult:
    """What a probe found."""

    streams: int = 0
    verified: int = 0
    bytes_each_way: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verified == self.streams and not self.failures

    def summary(self) -> str:
        total = self.verified * self.bytes_each_way
        rate = total / self.seconds / 1e6 if self.seconds > 0 else 0.0
        line = (
            f"probe: {self.verified}/{self.streams} streams verified, "
            f"{self.bytes_each_way} bytes each way, {self.seconds:.2f} s, {rate:.1f} MB/s"
        )
        if self.failures:
            line += f"; {len(self.failures)} failed: " + "; ".join(self.failures[:5])
        return line


def _expected(block: bytes, start: int, size: int) -> bytes:
    offset = start % len(block)
    out = bytearray()
    while len(out) < size:
        out += block[offset : offset + size - len(out)]
        offset = 0
    return bytes(out)


async def _probe_stream(
    provider: StreamProvider, index: int, size: int, headers: Headers, check_headers: bool
) -> None:
    block = random.Random(index).randbytes(min(BLOCK, max(size, 1)))
    sent_headers = Headers.coerce(headers)
    sent_headers.add("x-probe-stream", str(index))
    stream = await provider.open_stream(sent_headers)
    async with stream:
        if check_headers:
            response = stream.response_headers or Headers()
            for name, value in sent_headers.items():
                echoed = response.getall(f"x-echo-{name.lower()}", [])
                if value not in echoed:
                    raise AssertionError(f"header {name} was not echoed (got {echoed})")

        async def send() -> None:
            position = 0
            while position < size:
                chunk = min(65536, size - position)
                await stream.send(_expected(block, position, chunk))
                position += chunk
            await stream.send_eof()

        received = 0
        async with anyio.create_task_group() as group:
            group.start_soon(send)
            while True:
                try:
                    data = await stream.receive(65536)
                except anyio.EndOfStream:
                    break
                if received + len(data) > size:
                    raise AssertionError(f"{received + len(data)} bytes echoed, sent {size}")
                if data != _expected(block, received, len(data)):
                    raise AssertionError(f"echo differs within bytes {received}..{len(data)}")
                received += len(data)
        if received != size:
            raise AssertionError(f"echo ended after {received} of {size} bytes")


async def probe(
    provider: StreamProvider,
    *,
    streams: int,
    size: int,
    headers: Headers | None = None,
    check_headers: bool = True,
    on_done: Callable[[], None] | None = None,
) -> ProbeResult:
    """Probe the echo server behind *provider*; see the module's description.

    :param on_done: called as each stream finishes (for a progress display)
    """
    result = ProbeResult(streams=streams, bytes_each_way=size)
    started = anyio.current_time()

    async def one(index: int) -> None:
        try:
            await _probe_stream(provider, index, size, headers or Headers(), check_headers)
        except Exception as exc:
            result.failures.append(f"stream {index}: {exc!r}")
        else:
            result.verified += 1
        if on_done is not None:
            on_done()

    async with anyio.create_task_group() as group:
        for index in range(streams):
            group.start_soon(one, index)
    result.seconds = anyio.current_time() - started
    return result


def run(args: argparse.Namespace) -> int:
    backend = backend_from_args(args)
    options = options_from_args(args)
    headers = headers_from_args(args.header)

    async def main() -> int:
        result = ProbeResult(streams=args.streams, bytes_each_way=args.bytes)
        # a progress bar for people at a terminal; scripts read only the summary line
        progress = Progress(
            TextColumn("probe"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
            disable=not sys.stderr.isatty(),
        )
        try:
            with anyio.fail_after(args.timeout), progress:
                task = progress.add_task("streams", total=args.streams)
                async with backend.connect(args.connect, options) as provider:
                    result = await probe(
                        provider,
                        streams=args.streams,
                        size=args.bytes,
                        headers=headers,
                        check_headers=not args.raw,
                        on_done=lambda: progress.advance(task),
                    )
        except TimeoutError:
            result.failures.append(f"timed out after {args.timeout} s")
        except Exception as exc:
            result.failures.append(f"connection: {exc}")
        print(result.summary(), flush=True)
        return 0 if result.ok else 1

    try:
        return run_async(main, args.loop)
    except KeyboardInterrupt:
        print("probe: interrupted", file=sys.stderr)
        return 130
