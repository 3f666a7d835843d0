"""The metrics wrapper: exact values after scripted traffic, bounded labels, and the
conformance suite with the wrapper on both sides."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams import ErrorCode, Headers, Listener, Stream, StreamRejected, StreamReset
from streams._core.abc import Handler
from streams._core.errors import ConnectionLost
from streams.backends import memory
from streams.testing import ConformanceOptions, ProviderConformance, ProviderPair, read_all
from streams.wrappers._delegate import DelegatingListener, DelegatingProvider
from streams.wrappers.metrics import MetricsProvider, MetricsStream, StreamMetrics
from tests.opaque import OpaqueProvider, OpaqueStream


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@asynccontextmanager
async def measured_pair(
    metrics: StreamMetrics,
) -> AsyncIterator[tuple[MetricsProvider, MetricsProvider]]:
    async with memory.pair() as (client, server):
        yield (
            MetricsProvider(client, upstream="api", metrics=metrics),
            MetricsProvider(server, upstream="edge", metrics=metrics),
        )


async def echo(listener) -> None:  # type: ignore[no-untyped-def]
    async with anyio.create_task_group() as group:
        while True:
            stream = await listener.accept()

            async def one(stream=stream) -> None:  # type: ignore[no-untyped-def]
                async with stream:
                    await stream.send(await read_all(stream))
                    await stream.send_eof()

            group.start_soon(one)


@pytest.mark.anyio
async def test_exact_values_after_scripted_traffic() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    with anyio.fail_after(10):
        async with measured_pair(metrics) as (client, server), anyio.create_task_group() as tg:
            listener = server.listen(lambda h: ({}, "x-reject" not in h))
            tg.start_soon(echo, listener)
            for _ in range(10):
                stream = await client.open_stream()
                await stream.send(b"x" * 1000)
                await stream.send_eof()
                assert len(await read_all(stream)) == 1000
                await stream.aclose()
            with pytest.raises(StreamRejected):
                await client.open_stream({"x-reject": "1"})
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    out = {"upstream": "api", "backend": "memory", "direction": "outbound"}
    inb = {"upstream": "edge", "backend": "memory", "direction": "inbound"}
    assert sample(registry, "streams_opened_total", **out, outcome="accepted") == 10
    assert sample(registry, "streams_opened_total", **out, outcome="rejected") == 1
    assert sample(registry, "streams_opened_total", **inb, outcome="accepted") == 10
    assert sample(registry, "streams_opened_total", **inb, outcome="rejected") == 1
    assert sample(registry, "streams_sent_bytes_total", **out) == 10_000
    assert sample(registry, "streams_received_bytes_total", **out) == 10_000
    assert sample(registry, "streams_sent_bytes_total", **inb) == 10_000
    assert sample(registry, "streams_received_bytes_total", **inb) == 10_000
    assert sample(registry, "streams_active", **out) == 0
    assert sample(registry, "streams_active", **inb) == 0
    assert sample(registry, "streams_duration_seconds_count", **out) == 10
    assert sample(registry, "streams_open_duration_seconds_count", **out) == 10
    assert sample(registry, "streams_open_duration_seconds_bucket", **out, le="+Inf") == 10


@pytest.mark.anyio
async def test_resets_are_counted_by_code_and_side() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    with anyio.fail_after(10):
        async with measured_pair(metrics) as (client, server):
            listener = server.listen()
            stream = await client.open_stream()
            accepted = await listener.accept()
            await stream.reset(ErrorCode.CANCEL)
            with pytest.raises(StreamReset):
                await accepted.receive()
            await accepted.aclose()
            await stream.aclose()
    local = {"upstream": "api", "direction": "outbound", "side": "local"}
    remote = {"upstream": "edge", "direction": "inbound", "side": "remote"}
    for labels in (local, remote):
        value = sample(registry, "streams_resets_total", backend="memory", code="CANCEL", **labels)
        assert value == 1, labels


@pytest.mark.anyio
async def test_header_label_is_capped() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry, header_label="x-tenant", header_label_limit=3)
    with anyio.fail_after(10):
        async with measured_pair(metrics) as (client, server):
            server.listen()
            for index in range(10):
                stream = await client.open_stream({"x-tenant": f"t{index}"})
                await stream.aclose()
    text = generate_latest(registry).decode()
    tenants = {
        line.split('tenant="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("streams_opened_total{") and 'direction="outbound"' in line
    }
    assert tenants == {"t0", "t1", "t2", "__other__"}


@pytest.mark.anyio
async def test_failed_opens_are_counted() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    async with measured_pair(metrics) as (client, _server):
        await client.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await client.open_stream()
    labels = {"upstream": "api", "backend": "memory", "direction": "outbound"}
    assert sample(registry, "streams_opened_total", outcome="failed", **labels) == 1


def test_describe_data_becomes_endpoint_metrics() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    metrics.add_describer(
        "api",
        lambda: {
            "failovers": 2,
            "groups": [
                {
                    "endpoints": [
                        {"endpoint": "a:1", "connections": 2, "rtt": 0.01, "healthy": True},
                        {"endpoint": "b:1", "ejected": True, "connections_opened": 5},
                    ]
                }
            ],
        },
    )
    assert sample(registry, "streams_connections_active", upstream="api", endpoint="a:1") == 2
    assert sample(registry, "streams_endpoint_healthy", upstream="api", endpoint="a:1") == 1
    assert sample(registry, "streams_endpoint_ejected", upstream="api", endpoint="b:1") == 1
    assert sample(registry, "streams_connections_opened_total", upstream="api", endpoint="b:1") == 5
    assert sample(registry, "streams_failovers_total", upstream="api") == 2


@asynccontextmanager
async def metrics_pair() -> AsyncIterator[ProviderPair]:
    metrics = StreamMetrics(CollectorRegistry())
    async with memory.pair() as (client, server):

        async def cut() -> None:
            client._break(ConnectionLost("cut by the test"))

        yield ProviderPair(
            client=MetricsProvider(client, upstream="c", metrics=metrics),
            server=MetricsProvider(server, upstream="s", metrics=metrics),
            break_connection=cut,
        )


class TestMetricsConformance(ProviderConformance):
    options = ConformanceOptions(max_buffered_per_stream=512 * 1024)

    def provider_pair(self):  # type: ignore[no-untyped-def]
        return metrics_pair()


@pytest.mark.anyio
async def test_streams_that_do_not_count_themselves_are_wrapped_and_counted() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    with anyio.fail_after(10):
        async with memory.pair() as (client, server), anyio.create_task_group() as tg:
            wrapped = MetricsProvider(OpaqueProvider(client), upstream="api", metrics=metrics)
            tg.start_soon(echo, server.listen())
            for _ in range(3):
                stream = await wrapped.open_stream()
                assert isinstance(stream, MetricsStream)
                await stream.send(b"x" * 100)
                await stream.send_eof()
                assert len(await read_all(stream)) == 100
                await stream.aclose()
            tg.cancel_scope.cancel()
    out = {"upstream": "api", "backend": "memory", "direction": "outbound"}
    assert sample(registry, "streams_opened_total", **out, outcome="accepted") == 3
    assert sample(registry, "streams_sent_bytes_total", **out) == 300
    assert sample(registry, "streams_received_bytes_total", **out) == 300
    assert sample(registry, "streams_active", **out) == 0
    assert sample(registry, "streams_duration_seconds_count", **out) == 3
    assert sample(registry, "streams_open_duration_seconds_count", **out) == 3


@pytest.mark.anyio
async def test_open_streams_are_unwrapped_and_their_bytes_scraped_once() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    out = {"upstream": "api", "backend": "memory", "direction": "outbound"}
    inb = {"upstream": "edge", "backend": "memory", "direction": "inbound"}
    with anyio.fail_after(10):
        async with measured_pair(metrics) as (client, server):
            listener = server.listen()  # no handler: every stream is accepted and counted
            stream = await client.open_stream()
            accepted = await listener.accept()
            for measured in (stream, accepted):
                assert not isinstance(measured, MetricsStream)
            await stream.send(b"y" * 500)
            received = b""
            while len(received) < 500:
                received += await accepted.receive()
            assert sample(registry, "streams_sent_bytes_total", **out) == 500
            assert sample(registry, "streams_received_bytes_total", **inb) == 500
            assert sample(registry, "streams_active", **out) == 1
            assert sample(registry, "streams_active", **inb) == 1
            await stream.aclose()
            await accepted.aclose()
    assert sample(registry, "streams_sent_bytes_total", **out) == 500
    assert sample(registry, "streams_received_bytes_total", **inb) == 500
    assert sample(registry, "streams_active", **out) == 0
    assert sample(registry, "streams_active", **inb) == 0
    assert sample(registry, "streams_opened_total", **inb, outcome="accepted") == 1
    assert sample(registry, "streams_duration_seconds_count", **inb) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("header_label", [None, "x-tenant"])
async def test_streams_served_by_the_listener_are_counted(header_label: str | None) -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry, header_label=header_label)
    handled: list[int] = []

    async def handler(stream) -> None:  # type: ignore[no-untyped-def]
        data = await read_all(stream)
        await stream.send(data)
        await stream.send_eof()
        handled.append(len(data))

    with anyio.fail_after(10):
        async with measured_pair(metrics) as (client, server), anyio.create_task_group() as tg:
            tg.start_soon(server.listen().serve, handler)
            for _ in range(5):
                stream = await client.open_stream({"x-tenant": "t"})
                await stream.send(b"z" * 200)
                await stream.send_eof()
                assert len(await read_all(stream)) == 200
                await stream.aclose()
            while len(handled) < 5:
                await anyio.sleep(0.01)
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    inb = {"upstream": "edge", "backend": "memory", "direction": "inbound"}
    if header_label is not None:
        inb["tenant"] = "t"
    assert sample(registry, "streams_opened_total", **inb, outcome="accepted") == 5
    assert sample(registry, "streams_received_bytes_total", **inb) == 1000
    assert sample(registry, "streams_sent_bytes_total", **inb) == 1000
    assert sample(registry, "streams_active", **inb) == 0
    assert sample(registry, "streams_duration_seconds_count", **inb) == 5


@pytest.mark.anyio
async def test_open_latency_runs_from_the_open_to_the_answer() -> None:
    """Over the shared open the latency starts at the stream's own ``opened_at``: a
    handler that takes 50 ms to decide puts every open in the 0.1 s bucket, none below."""
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)

    async def slow(headers: Headers) -> tuple[dict[str, str], bool]:
        await anyio.sleep(0.05)
        return {}, True

    out = {"upstream": "api", "backend": "memory", "direction": "outbound"}
    with anyio.fail_after(10):
        async with measured_pair(metrics) as (client, server):
            server.listen(slow)
            started = anyio.current_time()
            for _ in range(3):
                stream = await client.open_stream()
                await stream.aclose()
            elapsed = anyio.current_time() - started
    name = "streams_open_duration_seconds"
    assert sample(registry, f"{name}_bucket", **out, le="0.05") == 0
    assert sample(registry, f"{name}_bucket", **out, le="0.1") == 3
    assert 0.15 <= sample(registry, f"{name}_sum", **out) <= elapsed


class _OpaqueListening(DelegatingProvider):
    """Hands out every stream its listener accepts as an :class:`OpaqueStream`."""

    def listen(self, handler: Handler | None = None) -> Listener:
        return DelegatingListener(self.inner.listen(handler), OpaqueStream)


@pytest.mark.anyio
async def test_served_streams_that_do_not_count_themselves_are_wrapped_and_counted() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    seen: list[Stream] = []

    async def handler(stream: Stream) -> None:
        seen.append(stream)
        data = await read_all(stream)
        await stream.send(data)
        await stream.send_eof()

    with anyio.fail_after(10):
        async with memory.pair() as (client, server), anyio.create_task_group() as tg:
            wrapped = MetricsProvider(_OpaqueListening(server), upstream="edge", metrics=metrics)
            tg.start_soon(wrapped.listen().serve, handler)
            for _ in range(3):
                stream = await client.open_stream()
                await stream.send(b"q" * 300)
                await stream.send_eof()
                assert len(await read_all(stream)) == 300
                await stream.aclose()
            while sample(registry, "streams_duration_seconds_count", **_INBOUND) < 3:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert all(isinstance(stream, MetricsStream) for stream in seen)
    assert sample(registry, "streams_opened_total", **_INBOUND, outcome="accepted") == 3
    assert sample(registry, "streams_received_bytes_total", **_INBOUND) == 900
    assert sample(registry, "streams_sent_bytes_total", **_INBOUND) == 900
    assert sample(registry, "streams_active", **_INBOUND) == 0


_INBOUND = {"upstream": "edge", "backend": "memory", "direction": "inbound"}
