"""What Python users pick for HTTP/2: an ``httpx`` client (HTTP/2 with prior knowledge over
cleartext, one connection) against a ``hypercorn`` server running an ASGI application, both
in this process on the same loop and loopback as every other subject.

``POST /echo`` answers the request's body; ``POST /sink`` reads the body and answers its
length. An exchange is one request: httpx sends the whole body before it reads the answer,
so this is the open-echo-close of a request/response library. Both run on asyncio, uvloop
and trio (hypercorn's trio worker; httpx through httpcore's trio support).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from .. import _workloads as workloads
from .._common import Stopwatch
from .._workloads import MESSAGE, Sizes

NAME = "httpx+hypercorn"
LOOPS = ("asyncio", "uvloop", "trio")
EXTRA = "bench"
CHUNK = 1024 * 1024

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def missing() -> str | None:
    """Why this baseline cannot run here, or ``None``."""
    try:
        import h2  # noqa: F401
        import httpx  # noqa: F401
        import hypercorn  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install 'streams[bench]')"
    return None


async def _app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    sink = scope["path"] == "/sink"
    body = bytearray()
    total = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        if sink:
            total += len(chunk)
        else:
            body += chunk
        if not message.get("more_body"):
            break
    answer = str(total).encode() if sink else bytes(body)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": answer})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def _client() -> AsyncIterator[Any]:
    import httpx
    import sniffio
    from hypercorn.config import Config

    logging.getLogger("hypercorn.error").setLevel(logging.ERROR)
    config = Config()
    port = _free_port()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    # its default closes a connection after 1,000 requests
    config.keep_alive_max_requests = 1 << 30
    stop = anyio.Event()
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: serve(_app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        for _ in range(200):
            with contextlib.suppress(OSError):
                probe = await anyio.connect_tcp("127.0.0.1", port)
                await probe.aclose()
                break
            await anyio.sleep(0.02)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", http1=False, http2=True, timeout=60
            ) as client:
                yield client
        finally:
            stop.set()


async def _exchange(client: Any) -> None:
    answer = await client.post("/echo", content=MESSAGE)
    if answer.content != MESSAGE:
        raise AssertionError("the echo differs")


async def measure(sizes: Sizes, memory: bool) -> dict[str, float]:
    """Bulk through one request body, and exchanges per second sequentially and 100 at
    once, over one HTTP/2 connection."""
    del memory
    results: dict[str, float] = {}
    async with _client() as client:
        await _exchange(client)
        count = sizes.bulk_bytes // CHUNK
        block = b"b" * CHUNK

        async def body() -> AsyncIterator[bytes]:
            for _ in range(count):
                yield block

        with Stopwatch() as watch:
            answer = await client.post("/sink", content=body())
        if int(answer.content) != count * CHUNK:
            raise AssertionError(f"the sink counted {answer.content!r}")
        results["bulk"] = count * CHUNK / watch.seconds / 1e6

        with Stopwatch() as watch:
            for _ in range(sizes.opens):
                await _exchange(client)
        results["rate"] = sizes.opens / watch.seconds

        share = max(sizes.concurrent_opens // workloads.CONCURRENCY, 1)

        async def worker() -> None:
            for _ in range(share):
                await _exchange(client)

        with Stopwatch() as watch:
            async with anyio.create_task_group() as group:
                for _ in range(workloads.CONCURRENCY):
                    group.start_soon(worker)
        results["rate_100"] = share * workloads.CONCURRENCY / watch.seconds
    return results
