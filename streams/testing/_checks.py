"""The conformance checks. Each is an async function ``check(factory, options)`` that raises
:class:`AssertionError` (or the unexpected exception) when the provider breaks a rule.

They port what ``trio.testing.check_two_way_stream`` and ``check_half_closeable_stream``
check to anyio, then add what a multiplexer must keep: headers, acceptance and rejection,
reset from either side, many streams, isolation of a stalled stream, and closing.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import TypeAlias

import anyio
import anyio.lowlevel
from anyio import wait_all_tasks_blocked

from .._core.abc import Stream
from .._core.errors import (
    ConnectionLost,
    ErrorCode,
    StreamError,
    StreamRejected,
    StreamReset,
)
from .._core.headers import Headers
from ._pairs import ConformanceOptions, PairFactory, ProviderPair, open_pair, stream_pair

__all__ = ["CHECKS", "Check", "read_all", "run_all_checks"]

Check: TypeAlias = Callable[[PairFactory, ConformanceOptions], Awaitable[None]]

#: every check by name, in the order they are defined
CHECKS: dict[str, Check] = {}

_PairCheck = Callable[[ProviderPair, ConformanceOptions], Awaitable[None]]


def _check(function: _PairCheck) -> Check:
    """Register *function* as a check run on a fresh pair, within the time bound."""
    name = function.__name__.removeprefix("check_")

    @wraps(function)
    async def run(factory: PairFactory, options: ConformanceOptions | None = None) -> None:
        options = options or ConformanceOptions()
        completed = False
        with anyio.fail_after(options.timeout):
            async with open_pair(factory) as pair:
                await function(pair, options)
                completed = True
        # a provider whose close cancels the scope around its `async with` block would
        # silently cut the check short; the block's own cancellation is then swallowed
        assert completed, (
            f"{name} was cancelled from inside: closing a provider cancelled its caller"
        )

    CHECKS[name] = run
    return run


async def run_all_checks(factory: PairFactory, options: ConformanceOptions | None = None) -> None:
    """Run every check against *factory*, outside pytest; the first failure is raised."""
    for check in CHECKS.values():
        await check(factory, options or ConformanceOptions())


async def read_all(stream: Stream, max_bytes: int = 65536) -> bytes:
    """Read *stream* until its end of file."""
    chunks = bytearray()
    while True:
        try:
            chunks += await stream.receive(max_bytes)
        except anyio.EndOfStream:
            return bytes(chunks)


async def _expect_reset(operation: Awaitable[object], what: str) -> StreamReset:
    try:
        await operation
    except StreamReset as exc:
        return exc
    except anyio.EndOfStream:
        raise AssertionError(f"{what}: a reset stream looked like a clean end of file") from None
    raise AssertionError(f"{what}: expected StreamReset, the operation succeeded")


async def _receive_until_error(stream: Stream) -> BaseException:
    """Receive until something is raised; return it (an end of file is returned too)."""
    while True:
        try:
            await stream.receive()
        except (Exception, anyio.EndOfStream) as exc:
            return exc


async def _send_until_error(stream: Stream, limit: int = 64 * 1024 * 1024) -> BaseException:
    sent = 0
    while sent < limit:
        try:
            await stream.send(b"x" * 4096)
        except Exception as exc:
            return exc
        sent += 4096
    raise AssertionError(f"sent {sent} bytes into a stream that should have broken")


# -- opening, headers, acceptance ---------------------------------------------------------


@_check
async def check_open_and_accept_from_either_side(
    pair: ProviderPair, options: ConformanceOptions
) -> None:
    """Both sides can open streams, and the other side accepts them."""
    server_listener = pair.server.listen()
    client_listener = pair.client.listen()
    opened, accepted = await stream_pair(pair.client, server_listener, {"from": "client"})
    assert accepted.headers.get("from") == "client"
    assert opened.response_headers is not None
    opened2, accepted2 = await stream_pair(pair.server, client_listener, {"from": "server"})
    assert accepted2.headers.get("from") == "server"
    await opened.send(b"ping")
    assert await accepted.receive() == b"ping"
    await opened2.send(b"pong")
    assert await accepted2.receive() == b"pong"
    for stream in (opened, accepted, opened2, accepted2):
        await stream.aclose()


@_check
async def check_headers_round_trip(pair: ProviderPair, options: ConformanceOptions) -> None:
    """Request and response headers arrive multi-valued, ordered and case-insensitive."""

    def handler(headers: Headers) -> tuple[list[tuple[str, str]], bool]:
        values = headers.getall("x-multi")
        return [("X-Reply", "yes"), ("x-count", str(len(values))), ("x-count", "again")], True

    listener = pair.server.listen(handler)
    sent = Headers([("X-Multi", "one"), ("x-multi", "two"), ("Content-Kind", "a b;c=d")])
    opened, accepted = await stream_pair(pair.client, listener, sent)
    assert accepted.headers.getall("X-MULTI") == ["one", "two"], accepted.headers
    assert accepted.headers.get("content-kind") == "a b;c=d"
    response = opened.response_headers
    assert response is not None
    assert response.get("x-reply") == "yes", response
    assert response.getall("X-Count") == ["2", "again"], response
    assert await opened.accepted() == response
    assert await accepted.accepted() == response
    await opened.aclose()
    await accepted.aclose()


@_check
async def check_reject_with_response_headers(
    pair: ProviderPair, options: ConformanceOptions
) -> None:
    """A rejecting handler makes ``open_stream`` raise StreamRejected with its headers, and the
    stream never reaches ``accept()``."""

    def handler(headers: Headers) -> tuple[dict[str, str], bool]:
        if "x-reject" in headers:
            return {"x-why": "told to"}, False
        return {}, True

    listener = pair.server.listen(handler)
    try:
        await pair.client.open_stream({"x-reject": "1"})
    except StreamRejected as exc:
        assert exc.response_headers.get("x-why") == "told to", exc.response_headers
    else:
        raise AssertionError("open_stream returned a stream the handler rejected")
    opened, accepted = await stream_pair(pair.client, listener, {"x-ok": "1"})
    assert "x-ok" in accepted.headers, "the rejected stream reached accept()"
    await opened.aclose()
    await accepted.aclose()


@_check
async def check_zero_round_trip_open_accepted(
    pair: ProviderPair, options: ConformanceOptions
) -> None:
    """With ``wait_accept=False`` data sent at once arrives after acceptance."""
    gate = anyio.Event()

    async def handler(headers: Headers) -> tuple[dict[str, str], bool]:
        await gate.wait()
        return {"x-late": "1"}, True

    listener = pair.server.listen(handler)
    stream = await pair.client.open_stream({"x-fast": "1"}, wait_accept=False)
    await stream.send(b"early data")
    await stream.send_eof()
    gate.set()
    response = await stream.accepted()
    assert response.get("x-late") == "1"
    accepted = await listener.accept()
    assert await read_all(accepted) == b"early data"
    await accepted.send(b"reply")
    await accepted.aclose()
    assert await read_all(stream) == b"reply"
    await stream.aclose()


@_check
async def check_zero_round_trip_open_rejected(
    pair: ProviderPair, options: ConformanceOptions
) -> None:
    """Data sent before a rejection never reaches the peer's application; ``accepted()``,
    ``send`` and ``receive`` raise StreamRejected."""
    gate = anyio.Event()

    async def handler(headers: Headers) -> tuple[dict[str, str], bool]:
        await gate.wait()
        return {"x-no": "1"}, "x-reject" not in headers

    listener = pair.server.listen(handler)
    stream = await pair.client.open_stream({"x-reject": "1"}, wait_accept=False)
    await stream.send(b"must be discarded")
    gate.set()
    try:
        await stream.accepted()
    except StreamRejected as exc:
        assert exc.response_headers.get("x-no") == "1"
    else:
        raise AssertionError("accepted() returned for a rejected stream")
    for operation in (stream.receive(), stream.send(b"more")):
        try:
            await operation
        except StreamRejected:
            pass
        else:
            raise AssertionError("an operation on a rejected stream succeeded")
    await stream.aclose()
    opened, accepted = await stream_pair(pair.client, listener, {"x-next": "1"})
    assert "x-next" in accepted.headers, "a rejected stream reached accept()"
    await opened.send_eof()
    assert await read_all(accepted) == b"", "data of a rejected stream was delivered"
    await opened.aclose()
    await accepted.aclose()


@_check
async def check_handler_exception(pair: ProviderPair, options: ConformanceOptions) -> None:
    """A handler that raises rejects the stream, and ``accept()`` raises its exception."""

    class HandlerBoom(Exception):
        pass

    def handler(headers: Headers) -> tuple[None, bool]:
        if "x-boom" in headers:
            raise HandlerBoom("boom")
        return None, True

    listener = pair.server.listen(handler)
    try:
        await pair.client.open_stream({"x-boom": "1"})
    except StreamRejected:
        pass
    else:
        raise AssertionError("a stream whose handler raised was accepted")
    opened = await pair.client.open_stream({"x-fine": "1"})
    try:
        stream = await listener.accept()
    except HandlerBoom:
        pass
    else:
        await stream.aclose()
        raise AssertionError("accept() did not raise the handler's exception")
    accepted = await listener.accept()
    assert "x-fine" in accepted.headers
    await opened.aclose()
    await accepted.aclose()


# -- the byte stream (trio's check_two_way_stream, ported) ---------------------------------


@_check
async def check_send_and_receive(pair: ProviderPair, options: ConformanceOptions) -> None:
    """Data flows both ways in order; ``receive`` honours ``max_bytes``; empty sends are fine."""
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    await opened.send(b"")
    await opened.send(b"abcdef")
    received = b""
    while len(received) < 6:
        chunk = await accepted.receive(2)
        assert 1 <= len(chunk) <= 2, f"receive(2) returned {len(chunk)} bytes"
        received += chunk
    assert received == b"abcdef"
    await accepted.send(b"xyz")
    assert await opened.receive() == b"xyz"
    for bad in (0, -1):
        try:
            await accepted.receive(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"receive({bad}) did not raise ValueError")
    await opened.aclose()
    await accepted.aclose()


@_check
async def check_concurrent_use_is_busy(pair: ProviderPair, options: ConformanceOptions) -> None:
    """Two tasks receiving (or sending) on one stream at once: the second gets
    BusyResourceError."""
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    async with anyio.create_task_group() as group:
        group.start_soon(accepted.receive)
        await wait_all_tasks_blocked()
        busy = False
        with anyio.move_on_after(2):
            try:
                await accepted.receive()
            except anyio.BusyResourceError:
                busy = True
        assert busy, "a second concurrent receive did not raise BusyResourceError"
        await opened.send(b"x")
    big = b"y" * (64 * 1024 * 1024)
    async with anyio.create_task_group() as group:
        group.start_soon(opened.send, big)
        await wait_all_tasks_blocked()
        busy = False
        with anyio.move_on_after(2):
            try:
                await opened.send(b"z")
            except anyio.BusyResourceError:
                busy = True
        assert busy, "a second concurrent send did not raise BusyResourceError"
        group.cancel_scope.cancel()
    await opened.reset()
    await accepted.aclose()


@_check
async def check_graceful_close_gives_eof(pair: ProviderPair, options: ConformanceOptions) -> None:
    """After one side's ``aclose``, the other reads the rest and then EndOfStream; its sends
    eventually break; the closed side's own operations raise ClosedResourceError."""
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    await opened.send(b"last words")
    await opened.aclose()
    await opened.aclose()
    assert await read_all(accepted) == b"last words"
    for operation in (opened.send(b"x"), opened.receive()):
        try:
            await operation
        except anyio.ClosedResourceError:
            pass
        else:
            raise AssertionError("an operation on a closed stream succeeded")
    error = await _send_until_error(accepted)
    assert isinstance(error, anyio.BrokenResourceError), f"expected a broken stream: {error!r}"
    await accepted.aclose()


@_check
async def check_close_in_cancelled_scope(pair: ProviderPair, options: ConformanceOptions) -> None:
    """``aclose`` inside a cancelled scope still closes the stream, without hanging."""
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    with anyio.CancelScope() as scope:
        scope.cancel()
        await opened.aclose()
    try:
        await opened.send(b"x")
    except anyio.ClosedResourceError:
        pass
    else:
        raise AssertionError("the stream was not closed by aclose in a cancelled scope")
    assert await read_all(accepted) == b""
    await accepted.aclose()


@_check
async def check_close_wakes_blocked_operations(
    pair: ProviderPair, options: ConformanceOptions
) -> None:
    """Closing a stream wakes this side's blocked ``receive`` and ``send`` with
    ClosedResourceError."""
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    errors: list[BaseException] = []

    async def receive() -> None:
        errors.append(await _receive_until_error(opened))

    async def send() -> None:
        errors.append(await _send_until_error(opened))

    async with anyio.create_task_group() as group:
        group.start_soon(receive)
        group.start_soon(send)
        await wait_all_tasks_blocked()
        await opened.aclose()
    assert len(errors) == 2
    for error in errors:
        assert isinstance(error, anyio.ClosedResourceError), f"expected closed: {error!r}"
    await accepted.aclose()


@_check
async def check_half_close_from_opener(pair: ProviderPair, options: ConformanceOptions) -> None:
    """After the opener's ``send_eof`` the acceptor reads everything then EndOfStream, and
    can still send; the opener can still read. ``send_eof`` is idempotent and sending after
    it raises ClosedResourceError."""
    await _half_close(pair, opener_closes=True)


@_check
async def check_half_close_from_acceptor(pair: ProviderPair, options: ConformanceOptions) -> None:
    """Half-close works the same from the side that accepted the stream."""
    await _half_close(pair, opener_closes=False)


async def _half_close(pair: ProviderPair, *, opener_closes: bool) -> None:
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    closer, other = (opened, accepted) if opener_closes else (accepted, opened)
    await closer.send(b"first part")
    await closer.send_eof()
    await closer.send_eof()
    try:
        await closer.send(b"x")
    except anyio.ClosedResourceError:
        pass
    else:
        raise AssertionError("send after send_eof did not raise ClosedResourceError")
    assert await read_all(other) == b"first part"
    try:
        await other.receive()
    except anyio.EndOfStream:
        pass
    else:
        raise AssertionError("receive after the end of file did not raise EndOfStream again")
    await other.send(b"the answer")
    await other.send_eof()
    assert await read_all(closer) == b"the answer"
    await closer.aclose()
    await other.aclose()


@_check
async def check_megabyte_each_way(pair: ProviderPair, options: ConformanceOptions) -> None:
    """A megabyte each way at once, in random chunk sizes, arrives unaltered."""
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    rng = random.Random(1)
    payloads = {id(opened): rng.randbytes(1 << 20), id(accepted): rng.randbytes(1 << 20)}
    received: dict[int, bytes] = {}

    async def sender(stream: Stream) -> None:
        data = payloads[id(stream)]
        rng = random.Random(id(stream))
        position = 0
        while position < len(data):
            size = rng.randint(1, 70000)
            await stream.send(data[position : position + size])
            position += size
        await stream.send_eof()

    async def receiver(stream: Stream) -> None:
        rng = random.Random(id(stream) + 1)
        chunks = bytearray()
        while True:
            try:
                chunks += await stream.receive(rng.randint(1, 70000))
            except anyio.EndOfStream:
                break
        received[id(stream)] = bytes(chunks)

    async with anyio.create_task_group() as group:
        for stream in (opened, accepted):
            group.start_soon(sender, stream)
            group.start_soon(receiver, stream)
    assert received[id(accepted)] == payloads[id(opened)]
    assert received[id(opened)] == payloads[id(accepted)]
    await opened.aclose()
    await accepted.aclose()


# -- reset -----------------------------------------------------------------------------------


@_check
async def check_reset_by_opener_before_data(
    pair: ProviderPair, options: ConformanceOptions
) -> None:
    """A reset before any data reaches both sides as StreamReset, never end of file."""
    await _reset(pair, by_opener=True, with_data=False)


@_check
async def check_reset_by_opener_after_data(pair: ProviderPair, options: ConformanceOptions) -> None:
    """A reset after data (and no end of file) is StreamReset on both sides."""
    await _reset(pair, by_opener=True, with_data=True)


@_check
async def check_reset_by_acceptor_before_data(
    pair: ProviderPair, options: ConformanceOptions
) -> None:
    """The acceptor's reset reaches both sides as StreamReset."""
    await _reset(pair, by_opener=False, with_data=False)


@_check
async def check_reset_by_acceptor_after_data(
    pair: ProviderPair, options: ConformanceOptions
) -> None:
    """The acceptor's reset after data is StreamReset on both sides."""
    await _reset(pair, by_opener=False, with_data=True)


async def _reset(pair: ProviderPair, *, by_opener: bool, with_data: bool) -> None:
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    resetter, other = (opened, accepted) if by_opener else (accepted, opened)
    if with_data:
        await resetter.send(b"some data")
        await other.send(b"other data")
        assert await other.receive() == b"some data"
    pending: list[BaseException] = []

    async def blocked_receive() -> None:
        pending.append(await _receive_until_error(other))

    async with anyio.create_task_group() as group:
        group.start_soon(blocked_receive)
        await wait_all_tasks_blocked()
        await resetter.reset(ErrorCode.CANCEL)
    error = pending[0]
    if isinstance(error, anyio.EndOfStream):
        raise AssertionError("a reset stream looked like a clean end of file to the peer")
    assert isinstance(error, StreamReset), f"the peer's receive raised {error!r}"
    assert error.remote, "the peer's StreamReset says the reset was local"
    await _expect_reset(other.receive(), "the peer's later receive")
    error = await _send_until_error(other)
    assert isinstance(error, StreamReset), f"the peer's send raised {error!r}"
    await _expect_reset(resetter.receive(), "the resetting side's receive")
    await _expect_reset(resetter.send(b"x"), "the resetting side's send")
    await resetter.reset()
    await resetter.aclose()
    await other.aclose()


@_check
async def check_close_while_peer_sends(pair: ProviderPair, options: ConformanceOptions) -> None:
    """Closing a stream whose peer is still sending resets it: the peer's send breaks with
    StreamReset instead of filling a buffer nobody reads."""
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    errors: list[BaseException] = []

    async def flood() -> None:
        errors.append(await _send_until_error(accepted))

    async with anyio.create_task_group() as group:
        group.start_soon(flood)
        await wait_all_tasks_blocked()
        await opened.aclose()
        with anyio.move_on_after(5):
            while not errors:
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    assert errors, "the peer's send neither failed nor finished after the reader closed"
    assert isinstance(errors[0], StreamReset), f"the sender got {errors[0]!r}"
    await accepted.aclose()


# -- many streams, big streams, isolation ---------------------------------------------------


@_check
async def check_many_concurrent_streams(pair: ProviderPair, options: ConformanceOptions) -> None:
    """Many streams open at once, with interleaved traffic, each echoed exactly."""
    listener = pair.server.listen()
    count = options.concurrent_streams
    results: dict[int, bytes] = {}
    # the first failure ends the check, raised alone: when the connection fails, a
    # thousand streams fail at once, and a group of a thousand errors buries the first
    # (pytest takes minutes to print one)
    failures: list[Exception] = []
    scope = anyio.CancelScope()

    def failed(exc: Exception) -> None:
        failures.append(exc)
        scope.cancel()

    async def echo(stream: Stream) -> None:
        try:
            async with stream:
                while True:
                    try:
                        data = await stream.receive()
                    except anyio.EndOfStream:
                        break
                    await stream.send(data)
                await stream.send_eof()
        except Exception as exc:
            failed(exc)

    async def serve() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(echo, await listener.accept())

    async def client(index: int) -> None:
        try:
            stream = await pair.client.open_stream({"x-index": str(index)})
            async with stream:
                message = f"stream {index};".encode() * 3
                for _ in range(3):
                    await stream.send(message)
                    await anyio.lowlevel.checkpoint()
                await stream.send_eof()
                results[index] = await read_all(stream)
        except Exception as exc:
            failed(exc)

    with scope:
        async with anyio.create_task_group() as group:
            group.start_soon(serve)
            for index in range(count):
                group.start_soon(client, index)
    if failures:
        raise AssertionError(
            f"the check stopped at a failed stream ({len(failures)} failed in all): {failures[0]!r}"
        ) from failures[0]
    assert len(results) == count
    for index, data in results.items():
        assert data == f"stream {index};".encode() * 9, f"stream {index} got {data[:60]!r}"


@_check
async def check_bulk_transfer_hash(pair: ProviderPair, options: ConformanceOptions) -> None:
    """A large transfer through one stream arrives with the same hash."""
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    block = random.Random(7).randbytes(1 << 20)
    blocks = options.bulk_bytes // len(block)
    sent = hashlib.sha256()
    received = hashlib.sha256()
    total = 0

    async def send() -> None:
        for index in range(blocks):
            chunk = block[index % 7 :] + block[: index % 7]
            sent.update(chunk)
            await opened.send(chunk)
        await opened.send_eof()

    async def receive() -> None:
        nonlocal total
        while True:
            try:
                data = await accepted.receive(1 << 20)
            except anyio.EndOfStream:
                break
            received.update(data)
            total += len(data)

    async with anyio.create_task_group() as group:
        group.start_soon(send)
        group.start_soon(receive)
    assert total == blocks * len(block), f"received {total} bytes"
    assert sent.hexdigest() == received.hexdigest(), "the data was altered"
    await opened.aclose()
    await accepted.aclose()


@_check
async def check_slow_reader_is_isolated(pair: ProviderPair, options: ConformanceOptions) -> None:
    """A reader who stops reading slows only its own sender: the sender buffers at most
    the window, and another stream on the same connection keeps flowing."""
    listener = pair.server.listen()
    stalled_out, stalled_in = await stream_pair(pair.client, listener)
    flowing_out, flowing_in = await stream_pair(pair.client, listener)
    limit = options.max_buffered_per_stream
    accepted_bytes = 0
    chunk = b"s" * 16384

    async def stall() -> None:
        nonlocal accepted_bytes
        while accepted_bytes <= 2 * limit:
            await stalled_out.send(chunk)
            accepted_bytes += len(chunk)

    async with anyio.create_task_group() as group:
        group.start_soon(stall)
        payload = random.Random(3).randbytes(4 << 20)

        async def send_flowing() -> None:
            await flowing_out.send(payload)
            await flowing_out.send_eof()

        group.start_soon(send_flowing)
        assert await read_all(flowing_in) == payload
        await anyio.sleep(0.3)
        group.cancel_scope.cancel()
    assert accepted_bytes <= limit, (
        f"a stream whose reader stopped took {accepted_bytes} bytes (limit {limit})"
    )
    await stalled_out.reset()
    for stream in (stalled_in, flowing_out, flowing_in):
        await stream.aclose()


@_check
async def check_cancelled_receive_keeps_stream(
    pair: ProviderPair, options: ConformanceOptions
) -> None:
    """Cancelling a blocked ``receive`` loses nothing; the stream stays usable."""
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    with anyio.move_on_after(0.05):
        await accepted.receive()
    await opened.send(b"after the cancel")
    await opened.send_eof()
    assert await read_all(accepted) == b"after the cancel"
    await opened.aclose()
    await accepted.aclose()


@_check
async def check_cancelled_send_keeps_stream(
    pair: ProviderPair, options: ConformanceOptions
) -> None:
    """Cancelling a ``send`` blocked by flow control leaves the stream usable: the peer
    receives a prefix of the cancelled data, then everything sent afterwards, in order."""
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    first = bytes(range(256)) * (64 * 1024)
    with anyio.move_on_after(0.2) as scope:
        await opened.send(first)
    assert scope.cancelled_caught, "16 MiB fitted in the window: flow control is not working"
    second = b"second message"
    received: list[bytes] = []

    async def receive() -> None:
        received.append(await read_all(accepted))

    async with anyio.create_task_group() as group:
        group.start_soon(receive)
        await opened.send(second)
        await opened.send_eof()
    data = received[0]
    assert data.endswith(second), "data sent after a cancelled send was lost"
    prefix = data[: -len(second)]
    assert first.startswith(prefix), "the cancelled send delivered bytes out of order"
    await opened.aclose()
    await accepted.aclose()


# -- closing the provider --------------------------------------------------------------------


@_check
async def check_provider_close_fails_pending(
    pair: ProviderPair, options: ConformanceOptions
) -> None:
    """Closing a provider fails every pending operation on both sides with an error (never
    end of file), within a bound."""
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    errors: dict[str, BaseException] = {}

    async def wait(name: str, stream: Stream) -> None:
        errors[name] = await _receive_until_error(stream)

    with anyio.fail_after(options.close_bound):
        async with anyio.create_task_group() as group:
            group.start_soon(wait, "local", opened)
            group.start_soon(wait, "remote", accepted)
            await wait_all_tasks_blocked()
            await pair.client.aclose(grace=0.1)
    assert isinstance(errors["local"], anyio.ClosedResourceError), errors
    assert isinstance(errors["remote"], anyio.BrokenResourceError), errors


@_check
async def check_accept_after_close(pair: ProviderPair, options: ConformanceOptions) -> None:
    """``accept()`` on a closed provider's listener, or a closed listener, raises
    ClosedResourceError; so does ``open_stream`` on a closed provider."""
    listener = pair.server.listen()
    await listener.aclose()
    try:
        await listener.accept()
    except anyio.ClosedResourceError:
        pass
    else:
        raise AssertionError("accept() on a closed listener returned")
    listener = pair.client.listen()
    await pair.client.aclose()
    for operation in (listener.accept(), pair.client.open_stream()):
        try:
            await operation
        except anyio.ClosedResourceError:
            pass
        else:
            raise AssertionError("an operation on a closed provider succeeded")
    assert pair.client.is_closing


@_check
async def check_no_new_streams_after_go_away(
    pair: ProviderPair, options: ConformanceOptions
) -> None:
    """Once a provider starts closing, the peer can open no new stream, while streams
    already open finish normally."""
    opened, accepted = await stream_pair(pair.client, pair.server.listen())
    pair.client.listen()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: pair.client.aclose(grace=10))
        for _ in range(1000):
            if pair.server.is_closing:
                break
            await anyio.sleep(0.01)
        try:
            await pair.server.open_stream({"x-late": "1"})
        except StreamError:
            pass
        else:
            raise AssertionError("a stream was opened after the peer began closing")
        await opened.send(b"still works")
        await opened.send_eof()
        assert await read_all(accepted) == b"still works"
        await accepted.send(b"reply")
        await accepted.aclose()
        assert await read_all(opened) == b"reply"
        await opened.aclose()


@_check
async def check_dead_connection_breaks_streams(
    pair: ProviderPair, options: ConformanceOptions
) -> None:
    """A connection that dies breaks every stream on both sides with an error (never end of
    file), and the providers stop offering new streams."""
    if pair.break_connection is None:
        return
    listener = pair.server.listen()
    streams = [await stream_pair(pair.client, listener) for _ in range(3)]
    errors: list[BaseException] = []

    async def wait(stream: Stream) -> None:
        errors.append(await _receive_until_error(stream))

    with anyio.fail_after(options.close_bound):
        async with anyio.create_task_group() as group:
            for opened, accepted in streams:
                group.start_soon(wait, opened)
                group.start_soon(wait, accepted)
            await wait_all_tasks_blocked()
            await pair.break_connection()
    assert len(errors) == 6
    for error in errors:
        assert isinstance(error, anyio.BrokenResourceError), f"a stream ended with {error!r}"
    try:
        await pair.client.open_stream()
    except (ConnectionLost, anyio.ClosedResourceError):
        pass
    else:
        raise AssertionError("a stream opened on a dead connection")


@_check
async def check_no_leaks_after_close(pair: ProviderPair, options: ConformanceOptions) -> None:
    """After the streams and the provider close, no stream stays tracked and no task of the
    provider's keeps running."""
    listener = pair.server.listen()
    for _ in range(20):
        opened, accepted = await stream_pair(pair.client, listener)
        await opened.send(b"x")
        await opened.aclose()
        assert await read_all(accepted) == b"x"
        await accepted.aclose()
    for _ in range(100):
        if pair.client.active_streams == 0 and pair.server.active_streams == 0:
            break
        await anyio.sleep(0.01)
    assert pair.client.active_streams == 0, f"{pair.client.active_streams} streams remain"
    assert pair.server.active_streams == 0, f"{pair.server.active_streams} streams remain"
    await pair.client.aclose()
    await pair.server.aclose()
    with anyio.fail_after(5):
        await pair.client.wait_closed()
        await pair.server.wait_closed()


async def check_no_tasks_left(
    factory: PairFactory, options: ConformanceOptions | None = None
) -> None:
    """Every task a pair started has ended once its block exits."""
    options = options or ConformanceOptions()
    with anyio.fail_after(options.timeout):
        before = len(anyio.get_running_tasks())
        async with open_pair(factory) as pair:
            listener = pair.server.listen()
            opened, accepted = await stream_pair(pair.client, listener)
            await opened.send(b"x")
            assert await accepted.receive() == b"x"
            await opened.aclose()
            await accepted.aclose()
        await wait_all_tasks_blocked()
        after = len(anyio.get_running_tasks())
        assert after <= before, f"{after - before} tasks still run after the pair closed"


CHECKS["no_tasks_left"] = check_no_tasks_left
