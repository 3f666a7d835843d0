"""``streams echo``: the diagnostic server every interop test and operator relies on.

It accepts every stream, except one whose headers carry ``x-reject`` (refused with the
protocol's refusal); replies with response headers that repeat each request header NAME as
``x-echo-NAME``; echoes all data back and half-closes after the peer did. With
``x-reset-after: N`` it echoes exactly N bytes and then resets the stream.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import anyio
import anyio.abc

from .._core.abc import Stream
from .._core.errors import ErrorCode
from .._core.headers import Headers
from .common import add_backend_arguments, add_loop_argument, backend_from_args, run_async
from .common import options_from_args as backend_options

__all__ = ["add_parser", "echo_handler", "echo_stream"]


def add_parser(commands: Any, name: str) -> None:
    parser = commands.add_parser(
        name,
        help="run a diagnostic echo server",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--listen", required=True, metavar="HOST:PORT", help="where to listen (port 0: any)"
    )
    add_backend_arguments(parser)
    add_loop_argument(parser)
    parser.set_defaults(run=run)


def echo_handler(headers: Headers) -> tuple[Headers, bool]:
    """Accept unless ``x-reject`` is present; echo each header as ``x-echo-NAME``."""
    response = Headers()
    for name, value in headers.items():
        if not name.startswith(":"):
            response.add(f"x-echo-{name.lower()}", value)
    return response, "x-reject" not in headers


async def echo_stream(stream: Stream) -> None:
    """Echo *stream* until its end of file (or ``x-reset-after`` bytes, then reset)."""
    limit_text = stream.headers.get("x-reset-after")
    remaining = int(limit_text) if limit_text and limit_text.isdigit() else None
    async with stream:
        try:
            while True:
                if remaining == 0:
                    await stream.reset(ErrorCode.CANCEL)
                    return
                max_bytes = 65536 if remaining is None else min(65536, remaining)
                try:
                    data = await stream.receive(max_bytes)
                except anyio.EndOfStream:
                    break
                await stream.send(data)
                if remaining is not None:
                    remaining -= len(data)
            await stream.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # the stream was reset or its connection failed or was closed on this side
            # (idle, shut down): one stream's end must never take the server down
            return


async def _wait_for_signals(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


def run(args: argparse.Namespace) -> int:
    backend = backend_from_args(args)
    options = backend_options(args)

    async def serve() -> int:
        with anyio.CancelScope() as scope:
            async with (
                backend.serve(args.listen, options, echo_handler) as server,
                anyio.create_task_group() as group,
            ):
                group.start_soon(_wait_for_signals, scope)
                print(f"echo: listening on {server.address} ({backend.name})", flush=True)
                await server.listener.serve(echo_stream, group)
        return 0

    try:
        return run_async(serve, args.loop)
    except KeyboardInterrupt:
        print("echo: stopped", file=sys.stderr)
        return 0
