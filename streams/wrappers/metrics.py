"""Prometheus metrics for every stream of any provider.

:class:`MetricsProvider` wraps a provider and records opens by outcome, active streams,
bytes each way, stream duration, open latency and resets; connection and endpoint state
come from the wrapped provider's ``describe()`` (pools and failover groups report their
connections, round-trip times, health and ejections there) at scrape time.

The hot path touches plain Python integers held in small cells; the
:class:`StreamMetrics` collector turns them into metric families only when Prometheus
scrapes. That keeps the cost per stream operation to an attribute add, where a
``prometheus_client`` counter would take a lock and a label lookup.

Names follow Prometheus conventions (base units, ``_total`` counters, ``_seconds``,
``_bytes``); labels stay bounded (upstream, backend, direction, outcome, code, side, and
optionally one header with a cap on its distinct values), never a stream id.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from anyio.abc import TaskGroup
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .._core.abc import Handler, Listener, Stream, StreamProvider
from .._core.errors import ConfigError, ErrorCode, StreamRejected, StreamReset
from .._core.headers import Headers, HeadersLike, is_sensitive_header
from .._core.mux import MuxProvider
from .._core.stream import MuxStream
from ._delegate import (
    MUX_TYPES,
    DelegatingListener,
    DelegatingProvider,
    DelegatingStream,
    mux_core,
    observe_handler,
    serve_wrapped,
    wrap_handler,
)

__all__ = ["DURATION_BUCKETS", "LATENCY_BUCKETS", "MetricsProvider", "StreamMetrics"]

#: stream durations: from a quick request to an hour-long tunnel
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    3600.0,
)  # fmt: skip
#: open latency: one round trip on loopback is tens of microseconds, across a region tens of ms
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

OTHER_VALUE = "__other__"


class _Cell:
    """One series' value; streams hold cells directly so the hot path is one add."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        running = 0
        buckets = []
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            buckets.append((_float_text(bound), float(running)))
        running += self.counts[-1]
        buckets.append(("+Inf", float(running)))
        return buckets


def _float_text(value: float) -> str:
    return repr(float(value))


class _Bundle:
    """Every series one label set touches, looked up once and kept: a stream's hot path
    then only adds to attributes.

    A stream of the shared machinery is measured with no wrapper and no object of its own:
    the bundle's bound :meth:`closed` (made once) goes into the stream's close callbacks,
    and the stream's own byte counters and open time are read when it closes.
    """

    __slots__ = (
        "accepted",
        "active",
        "duration",
        "failed",
        "labels",
        "latency",
        "live",
        "metrics",
        "on_close",
        "received",
        "rejected",
        "sent",
    )

    def __init__(self, metrics: StreamMetrics, labels: tuple[str, ...]) -> None:
        self.metrics = metrics
        self.labels = labels
        self.accepted = metrics.counter(metrics.opens, (*labels, "accepted"))
        self.rejected = metrics.counter(metrics.opens, (*labels, "rejected"))
        self.failed = metrics.counter(metrics.opens, (*labels, "failed"))
        self.sent = metrics.counter(metrics.sent, labels)
        self.received = metrics.counter(metrics.received, labels)
        self.active = metrics.gauge(metrics.active, labels)
        self.duration = metrics.histogram(metrics.duration, labels)
        self.latency = metrics.histogram(metrics.latency, labels)
        #: open streams counted by their own byte counters (see :meth:`track`); a dict
        #: as an ordered set whose adds and removes are statements, not calls
        self.live: dict[MuxStream, None] = {}
        self.on_close: Callable[[MuxStream, StreamReset | None], None] = self.closed

    def track(self, stream: Stream) -> Stream:
        """Measure *stream* under these labels; returns what the caller hands on (*stream*
        itself, or a :class:`MetricsStream` around a stream that does not count itself or
        that is closed already, whose close callbacks have run)."""
        core = mux_core(stream)
        if core is not None and core.is_closed:
            return MetricsStream(stream, self)
        return self.track_new(stream)

    def track_new(self, stream: Stream) -> Stream:
        """:meth:`track` for a stream straight from ``open_stream`` or a listener, which
        nobody can have closed yet (so no property call asks)."""
        # the type test first: no call for the usual stream
        core: MuxStream | None = (
            stream  # type: ignore[assignment]
            if type(stream) in MUX_TYPES
            else mux_core(stream)
        )
        if core is None:
            return MetricsStream(stream, self)
        callbacks = core.close_callbacks
        if callbacks is None:
            core.close_callbacks = [self.on_close]
        else:
            callbacks.append(self.on_close)
        self.active.value += 1
        self.live[core] = None
        return stream

    def track_accepted(self, stream: Stream) -> Stream:
        """:meth:`track_new` for a stream that no handler decided on: count it accepted."""
        self.accepted.value += 1
        return self.track_new(stream)

    def serving(self, handler: Callable[[Stream], Any], *, count: bool) -> Callable[[Stream], Any]:
        """*handler* for a listener's ``serve``: each stream is tracked (and counted as
        accepted when *count*) as its handler's task starts.

        One plain function per stream, :meth:`track_new` inlined, that returns the
        handler's own awaitable: the usual stream costs this layer one call and no
        coroutine.
        """
        accepted = self.accepted
        active = self.active
        live = self.live
        on_close = self.on_close

        def tracked(stream: Stream) -> Any:
            if type(stream) in MUX_TYPES:
                if count:
                    accepted.value += 1
                core: MuxStream = stream  # type: ignore[assignment]
                callbacks = core.close_callbacks
                if callbacks is None:
                    core.close_callbacks = [on_close]
                else:
                    callbacks.append(on_close)
                active.value += 1
                live[core] = None
                return handler(stream)
            # the first stream of its type, or one that does not count itself
            outer = self.track_accepted(stream) if count else self.track_new(stream)
            if outer is stream:
                return handler(stream)
            return serve_wrapped(outer, handler)

        return tracked

    def closed(self, stream: MuxStream, reset: StreamReset | None) -> None:
        """A tracked stream closed: fold its bytes and lifetime into the series."""
        # a close callback runs once, and only for a stream track_new put in the table
        del self.live[stream]
        self.active.value -= 1
        self.sent.value += stream.bytes_sent
        self.received.value += stream.bytes_received
        elapsed = time.monotonic() - stream.opened_at
        duration = self.duration
        duration.counts[bisect_left(duration.bounds, elapsed)] += 1
        duration.total += elapsed
        if reset is not None:
            self.metrics.record_reset(self, reset)


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    documentation: str
    labels: tuple[str, ...]


class StreamMetrics(Collector):
    """The metric families of every :class:`MetricsProvider` that uses it.

    :param registry: where to register (the default registry when ``None``; pass
        ``registry=False`` semantics by giving a fresh :class:`CollectorRegistry`)
    :param namespace: the prefix of every metric name
    :param header_label: a header whose value becomes one more label (for example a
        tenant), or ``None``
    :param header_label_limit: the most distinct values that label takes; later values are
        reported as ``__other__`` so the series count stays bounded
    :raises ~streams.ConfigError: if *header_label* names a header that carries
        credentials (``Authorization``, ``Cookie``, ...): its values would be published
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        namespace: str = "streams",
        header_label: str | None = None,
        header_label_limit: int = 20,
    ) -> None:
        if header_label and is_sensitive_header(header_label):
            raise ConfigError(
                f"{header_label!r} carries credentials; its values must not become a label",
                path="header_label",
            )
        self.namespace = namespace
        self.header_label = header_label.lower() if header_label else None
        self.header_label_limit = header_label_limit
        self._header_values: set[str] = set()
        extra = (self._label_name(),) if self.header_label else ()
        base = ("upstream", "backend", "direction", *extra)
        n = namespace
        self.opens = _Family(f"{n}_opened", "Streams opened, by outcome.", (*base, "outcome"))
        self.active = _Family(f"{n}_active", "Streams open right now.", base)
        self.sent = _Family(f"{n}_sent_bytes", "Bytes sent on streams.", base)
        self.received = _Family(f"{n}_received_bytes", "Bytes received on streams.", base)
        self.resets = _Family(
            f"{n}_resets", "Stream resets, by code and side.", (*base, "code", "side")
        )
        self.duration = _Family(f"{n}_duration_seconds", "How long streams lived.", base)
        self.latency = _Family(
            f"{n}_open_duration_seconds", "Time until the peer accepted an open.", base
        )
        self._counters: dict[_Family, dict[tuple[str, ...], _Cell]] = {
            family: {} for family in (self.opens, self.sent, self.received, self.resets)
        }
        self._gauges: dict[_Family, dict[tuple[str, ...], _Cell]] = {self.active: {}}
        self._histograms: dict[_Family, dict[tuple[str, ...], _Histogram]] = {
            self.duration: {},
            self.latency: {},
        }
        self._buckets = {self.duration: DURATION_BUCKETS, self.latency: LATENCY_BUCKETS}
        self._describers: list[tuple[str, Callable[[], Mapping[str, Any]]]] = []
        self._bundles: dict[tuple[str, ...], _Bundle] = {}
        if registry is not None:
            registry.register(self)

    def _label_name(self) -> str:
        assert self.header_label is not None
        return self.header_label.replace("-", "_").removeprefix("x_")

    def header_value(self, headers: Headers) -> tuple[str, ...]:
        """The extra label's value for a stream with *headers* (empty without the option)."""
        if self.header_label is None:
            return ()
        value = headers.get(self.header_label, "")
        if value not in self._header_values:
            if len(self._header_values) >= self.header_label_limit:
                return (OTHER_VALUE,)
            self._header_values.add(value)
        return (value,)

    def bundle(self, labels: tuple[str, ...]) -> _Bundle:
        """The series of one label set, cached."""
        bundle = self._bundles.get(labels)
        if bundle is None:
            bundle = self._bundles[labels] = _Bundle(self, labels)
        return bundle

    def counter(self, family: _Family, labels: tuple[str, ...]) -> _Cell:
        """The cell of one counter series, created at zero on first use."""
        series = self._counters[family]
        cell = series.get(labels)
        if cell is None:
            cell = series[labels] = _Cell()
        return cell

    def gauge(self, family: _Family, labels: tuple[str, ...]) -> _Cell:
        """The cell of one gauge series."""
        series = self._gauges[family]
        cell = series.get(labels)
        if cell is None:
            cell = series[labels] = _Cell()
        return cell

    def histogram(self, family: _Family, labels: tuple[str, ...]) -> _Histogram:
        """One histogram series."""
        series = self._histograms[family]
        histogram = series.get(labels)
        if histogram is None:
            histogram = series[labels] = _Histogram(self._buckets[family])
        return histogram

    def wrap_inbound(self, stream: Stream, upstream: str, backend: str) -> Stream:
        """Count *stream*, accepted by a server, as an inbound stream of *upstream*."""
        bundle = self.bundle((upstream, backend, "inbound", *self.header_value(stream.headers)))
        bundle.accepted.value += 1
        return self.track(stream, bundle)

    def track(self, stream: Stream, bundle: _Bundle) -> Stream:
        """Measure *stream* under *bundle*'s labels.

        A stream of the shared stream machinery (under any delegating wrappers) counts its
        own bytes and says when it is closed, so it is measured without a wrapper and no
        call on it costs anything more; any other stream is wrapped.
        """
        return bundle.track(stream)

    def record_reset(self, bundle: _Bundle, error: StreamReset) -> None:
        """Count a reset of a stream under *bundle*'s labels."""
        code = error.code.name if isinstance(error.code, ErrorCode) else str(error.code)
        side = "remote" if error.remote else "local"
        self.counter(self.resets, (*bundle.labels, code, side)).value += 1

    def add_describer(self, upstream: str, describe: Callable[[], Mapping[str, Any]]) -> None:
        """Report connection and endpoint state from *describe* at every scrape."""
        self._describers.append((upstream, describe))

    def collect(self) -> Iterator[Metric]:
        # bytes of open tracked streams live in the streams' own counters until they close
        live: dict[int, float] = {}
        for bundle in self._bundles.values():
            if bundle.live:
                live[id(bundle.sent)] = sum(stream.bytes_sent for stream in bundle.live)
                live[id(bundle.received)] = sum(stream.bytes_received for stream in bundle.live)
        for family, series in self._counters.items():
            counter = CounterMetricFamily(family.name, family.documentation, labels=family.labels)
            for labels, cell in series.items():
                counter.add_metric(labels, cell.value + live.get(id(cell), 0))
            yield counter
        for family, series in self._gauges.items():
            gauge = GaugeMetricFamily(family.name, family.documentation, labels=family.labels)
            for labels, cell in series.items():
                gauge.add_metric(labels, cell.value)
            yield gauge
        for family, hseries in self._histograms.items():
            histogram = HistogramMetricFamily(
                family.name, family.documentation, labels=family.labels
            )
            for labels, values in hseries.items():
                histogram.add_metric(labels, values.cumulative(), values.total)
            yield histogram
        yield from _describe_metrics(self.namespace, self._describers)


def _describe_metrics(
    namespace: str, describers: list[tuple[str, Callable[[], Mapping[str, Any]]]]
) -> Iterator[Metric]:
    """Connection and endpoint metrics from the wrapped providers' ``describe()`` data.

    The data has ``endpoints``: a list of mappings with ``endpoint``, and any of
    ``connections`` (open now), ``connections_opened``, ``connection_failures``, ``rtt``
    (seconds), ``healthy`` (bool), ``ejected`` (bool), ``active_streams``; and at the top
    ``failovers``, ``retries`` (totals).
    """
    endpoint_labels = ["upstream", "endpoint"]
    gauges = {
        key: GaugeMetricFamily(f"{namespace}_{name}", text, labels=endpoint_labels)
        for key, name, text in (
            ("connections", "connections_active", "Connections open to an endpoint."),
            ("rtt", "connection_rtt_seconds", "Last measured round-trip time to an endpoint."),
            ("healthy", "endpoint_healthy", "1 if the endpoint passes its health checks."),
            ("ejected", "endpoint_ejected", "1 if outlier detection ejected the endpoint."),
        )
    }
    counters = {
        key: CounterMetricFamily(f"{namespace}_{name}", text, labels=endpoint_labels)
        for key, name, text in (
            ("connections_opened", "connections_opened", "Connections opened to an endpoint."),
            ("connection_failures", "connection_failures", "Connections that failed."),
        )
    }
    totals = {
        key: CounterMetricFamily(f"{namespace}_{name}", text, labels=["upstream"])
        for key, name, text in (
            ("failovers", "failovers", "Times traffic moved between priority groups."),
            ("retries", "open_retries", "Stream opens retried on another endpoint."),
        )
    }
    per_endpoint: dict[str, GaugeMetricFamily | CounterMetricFamily] = {**gauges, **counters}
    for upstream, describe in describers:
        data = describe()
        for endpoint in _endpoints(data):
            name = str(endpoint.get("endpoint", ""))
            for key, family in per_endpoint.items():
                value = endpoint.get(key)
                if isinstance(value, bool):
                    value = 1.0 if value else 0.0
                if isinstance(value, (int, float)):
                    family.add_metric([upstream, name], float(value))
        for key, total in totals.items():
            value = data.get(key)
            if isinstance(value, (int, float)):
                total.add_metric([upstream], float(value))
    yield from per_endpoint.values()
    yield from totals.values()


def _endpoints(data: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    endpoints = data.get("endpoints", ())
    for endpoint in endpoints if isinstance(endpoints, list) else ():
        if isinstance(endpoint, Mapping):
            yield endpoint
    for group in data.get("groups", ()) or ():
        if isinstance(group, Mapping):
            yield from _endpoints(group)


class MetricsStream(DelegatingStream):
    """A stream that counts its bytes and reports its end to :class:`StreamMetrics`."""

    __slots__ = ("_bundle", "_closed", "_opened", "_reset_seen", "_rx", "_tx")

    def __init__(self, inner: Stream, bundle: _Bundle) -> None:
        super().__init__(inner)
        self._bundle = bundle
        self._tx = bundle.sent
        self._rx = bundle.received
        bundle.active.value += 1
        self._opened = time.monotonic()
        self._closed = False
        self._reset_seen = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            data = await self._inner.receive(max_bytes)
        except StreamReset as exc:
            self._record_reset(exc)
            raise
        self._rx.value += len(data)
        return data

    async def send(self, item: bytes) -> None:
        try:
            await self._inner.send(item)
        except StreamReset as exc:
            self._record_reset(exc)
            raise
        self._tx.value += len(item)

    async def reset(self, code: int = ErrorCode.CANCEL) -> None:
        if not self._closed and not self._reset_seen:
            self._record_reset(StreamReset(code, remote=False))
        await self._inner.reset(code)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._bundle.active.value -= 1
            self._bundle.duration.observe(time.monotonic() - self._opened)
        await self._inner.aclose()

    def _record_reset(self, error: StreamReset) -> None:
        if not self._reset_seen:
            self._reset_seen = True
            self._bundle.metrics.record_reset(self._bundle, error)


class MetricsProvider(DelegatingProvider):
    """Wraps *inner* and records Prometheus metrics for every stream.

    :param inner: the provider to measure (a backend's, a pool, a failover group)
    :param upstream: the name in the ``upstream`` label
    :param metrics: the collector to record into (one per registry; shared by providers)
    """

    def __init__(self, inner: StreamProvider, *, upstream: str, metrics: StreamMetrics) -> None:
        super().__init__(inner)
        self.upstream = upstream
        self.metrics = metrics
        self._outbound = (upstream, self.backend_name, "outbound")
        self._inbound = (upstream, self.backend_name, "inbound")
        # with a header label the label set depends on each stream's headers
        self._outbound_bundle = (
            metrics.bundle(self._outbound) if metrics.header_label is None else None
        )
        #: the wrapped open is the shared one, whose stream's ``opened_at`` is read as the
        #: open starts: the open latency needs no clock read of its own then
        self._stream_clock = type(inner).open_stream is MuxProvider.open_stream
        describe = getattr(inner, "describe", None)
        if callable(describe):
            metrics.add_describer(upstream, describe)

    async def open_stream(
        self, headers: HeadersLike | None = None, *, wait_accept: bool = True
    ) -> Stream:
        bundle = self._outbound_bundle
        if bundle is None:
            metrics = self.metrics
            headers = Headers.coerce(headers)
            bundle = metrics.bundle(self._outbound + metrics.header_value(headers))
        # the shared open creates its stream (which reads the clock) before anything can
        # wait, so the stream's opened_at marks the start; any other open (a pool that
        # may dial first) is timed from here
        started = 0.0 if self._stream_clock else time.monotonic()
        try:
            stream = await self.inner.open_stream(headers, wait_accept=wait_accept)
        except StreamRejected:
            bundle.rejected.value += 1
            raise
        except BaseException:
            bundle.failed.value += 1
            raise
        bundle.accepted.value += 1
        if type(stream) not in MUX_TYPES:
            # the first stream of its type, or one that does not count itself
            if wait_accept:
                found = mux_core(stream)
                start = started or (found.opened_at if found is not None else started)
                bundle.latency.observe(time.monotonic() - start)
            return bundle.track_new(stream)
        # bundle.track_new, inlined: this is the hot path of every open
        core: MuxStream = stream  # type: ignore[assignment]
        if wait_accept:
            latency = bundle.latency
            elapsed = time.monotonic() - (started or core.opened_at)
            latency.counts[bisect_left(latency.bounds, elapsed)] += 1
            latency.total += elapsed
        callbacks = core.close_callbacks
        if callbacks is None:
            core.close_callbacks = [bundle.on_close]
        else:
            callbacks.append(bundle.on_close)
        bundle.active.value += 1
        bundle.live[core] = None
        return stream

    def listen(self, handler: Handler | None = None) -> Listener:
        """Listen on the wrapped provider, counting every stream it lets in.

        With a *handler*, each decision is counted as the handler takes it (accepted,
        rejected, or failed when it raises). Without one, the wrapped provider accepts
        every stream on its own and each is counted as accepted when it reaches the
        application (from :meth:`~streams.Listener.accept` or ``serve``): no handler call
        per stream, and a stream accepted but never taken (its listener closed first) is
        not counted.
        """
        metrics = self.metrics
        fixed = metrics.bundle(self._inbound) if metrics.header_label is None else None

        def bundle(headers: Headers) -> _Bundle:
            return metrics.bundle(self._inbound + metrics.header_value(headers))

        if handler is None:
            return _MetricsListener(self.inner.listen(None), fixed, bundle, count=True)

        def decided(headers: Headers, accept: bool) -> None:
            target = fixed if fixed is not None else bundle(headers)
            (target.accepted if accept else target.rejected).value += 1

        def failed(headers: Headers, error: Exception) -> None:
            (fixed if fixed is not None else bundle(headers)).failed.value += 1

        inner = self.inner.listen(observe_handler(handler, decided, failed))
        return _MetricsListener(inner, fixed, bundle, count=False)


class _MetricsListener(DelegatingListener):
    """Tracks each accepted stream under its bundle in one layer (no wrap function), and
    counts it as accepted there when no handler did."""

    def __init__(
        self,
        inner: Listener,
        fixed: _Bundle | None,
        bundle: Callable[[Headers], _Bundle],
        *,
        count: bool,
    ) -> None:
        super().__init__(inner, _no_wrap)
        self._fixed = fixed
        self._bundle = bundle
        self._count = count

    async def accept(self) -> Stream:
        return self._track(await self._inner.accept())

    def _track(self, stream: Stream) -> Stream:
        target = self._fixed
        if target is None:
            target = self._bundle(stream.headers)
        if self._count:
            target.accepted.value += 1
        return target.track_new(stream)

    async def serve(
        self, handler: Callable[[Stream], Any], task_group: TaskGroup | None = None
    ) -> None:
        # the wrapped listener's own serve (see DelegatingListener.serve), tracking each
        # stream as its handler's task starts
        fixed = self._fixed
        if fixed is not None:
            await self._inner.serve(fixed.serving(handler, count=self._count), task_group)
        else:
            await self._inner.serve(wrap_handler(self._track, handler), task_group)


def _no_wrap(stream: Stream) -> Stream:
    return stream
