"""The whole comparison (issue 11): every backend and the wrapped stack against the
baselines, in one process run, on the same loopback, on each event loop asked for.

For each of ours (framer, http2, spdy, ssh, and failover over a pool over the framer inside
metrics): bulk through one stream, 100 streams at once (total and fairness), open-echo-close
one after another (default and zero-round-trip open) and 100 at once, the open latency's
p50 and p99, and the memory per idle stream with 10,000 open. The baselines
(:mod:`benchmarks.baselines`) measure the same workloads where they have them. Timed figures
run in interleaved rounds and keep the best of each, so a busy moment on a shared machine
does not decide a ratio. Targets are ratios computed from figures of the same run.

    python -m benchmarks.bench_suite [--quick] [--json] [--plot FILE.png] [--loop L|all]
    streams bench [--quick] [--json] [--plot FILE.png] [--loop L|all]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from streams import Listener, StreamProvider
from streams._core.backend import BackendOptions
from streams.backends import get_backend

from . import _workloads as workloads
from ._common import LOOPS, run_on_loop
from ._workloads import FULL, QUICK, TINY, Sizes
from .baselines import ANY_LOOP, Baseline, all_baselines

#: workload key: (what it is, unit, whether more is better)
WORKLOADS: dict[str, tuple[str, str, bool]] = {
    "bulk": ("bulk, one stream", "MB/s", True),
    "many": ("100 streams, total", "MB/s", True),
    "fairness": ("fairness, slowest/fastest of 100", "ratio", True),
    "ping_pong": ("ping-pong, 64 bytes", "round trips/s", True),
    "rate": ("open-echo-close, one at a time", "streams/s", True),
    "rate_0rtt": ("open-echo-close, zero-round-trip open", "streams/s", True),
    "rate_100": ("open-echo-close, 100 at once", "streams/s", True),
    "open_p50": ("open latency p50", "us", False),
    "open_p99": ("open latency p99", "us", False),
    "memory": ("memory per idle stream, per end", "bytes", False),
}
#: column headings of the figures table
SHORT = {
    "bulk": "bulk MB/s",
    "many": "100 streams MB/s",
    "fairness": "fairness",
    "ping_pong": "ping-pong /s",
    "rate": "open-echo-close /s",
    "rate_0rtt": "same, 0-RTT open /s",
    "rate_100": "100 at once /s",
    "open_p50": "open p50 us",
    "open_p99": "open p99 us",
    "memory": "idle B/stream",
}
OURS = ("framer", "http2", "spdy", "ssh", "stack")
#: idle streams for the memory figure where 10,000 would take minutes: h2 walks every
#: stream it knows on each new one (quadratic in open streams), and each SSH channel open
#: is several encrypted packets through asyncssh; the figure is per stream either way
IDLE_LIMITS = {"http2": 2000, "ssh": 2000}


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """One figure of one subject (ours or a baseline) on one loop."""

    subject: str
    workload: str
    loop: str
    value: float
    #: ``True`` for a baseline
    baseline: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly, with the workload's unit."""
        return {**dataclasses.asdict(self), "unit": WORKLOADS[self.workload][1]}


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """A ratio the suite reports: ``subject.workload / baseline.baseline_workload`` (or, with
    no baseline, the value itself), with the issue's target when it sets one."""

    subject: str
    workload: str
    baseline: str | None = None
    baseline_workload: str | None = None
    target: float | None = None
    #: ``"min"``: the ratio should be at least the target; ``"max"``: at most
    kind: str = "min"
    #: where the target comes from
    source: str = "issue 11"


def _c(
    subject: str,
    workload: str,
    baseline: str | None,
    other: str | None,
    target: float | None,
    kind: str = "min",
) -> Comparison:
    return Comparison(
        subject=subject,
        workload=workload,
        baseline=baseline,
        baseline_workload=other,
        target=target,
        kind=kind,
    )


#: every ratio reported, targets first
COMPARISONS: tuple[Comparison, ...] = (
    _c("framer", "bulk", "raw TCP", "bulk", 0.85),
    _c("framer", "rate", "raw TCP", "ping_pong", 0.35),
    _c("framer", "rate_0rtt", "raw TCP", "ping_pong", 0.6),
    _c("framer", "rate", "TCP conn per exchange", "rate", 5.0),
    _c("framer", "memory", None, None, 4096.0, "max"),
    _c("framer", "fairness", None, None, 0.6),
    _c("framer", "rate", "grpcio", "rate", 2.0),
    _c("framer", "rate_100", "grpcio", "rate_100", 2.0),
    _c("framer", "bulk", "grpcio", "bulk", 2.0),
    _c("http2", "bulk", "h2 minimal", "bulk", 0.9),
    _c("http2", "rate", "h2 minimal", "rate", 0.9),
    _c("http2", "rate_100", "h2 minimal", "rate_100", 0.9),
    _c("http2", "bulk", "httpx+hypercorn", "bulk", 1.5),
    _c("http2", "rate", "httpx+hypercorn", "rate", 1.5),
    _c("http2", "rate_100", "grpcio", "rate_100", 1.0),
    _c("ssh", "bulk", "asyncssh channel", "bulk", 0.9),
    _c("ssh", "rate", "asyncssh channel", "rate", 0.9),
    _c("stack", "rate", "framer", "rate", 0.92),
    _c("stack", "bulk", "framer", "bulk", 0.92),
    # no target: where each stands
    _c("framer", "rate_100", "TCP conn per exchange", "rate_100", None),
    _c("framer", "bulk", "Go yamux", "bulk", None),
    _c("framer", "rate", "Go yamux", "rate", None),
    _c("framer", "rate_100", "Go yamux", "rate_100", None),
    _c("http2", "rate_100", "httpx+hypercorn", "rate_100", None),
    _c("http2", "bulk", "grpcio", "bulk", None),
    _c("http2", "rate", "grpcio", "rate", None),
    _c("spdy", "bulk", "Go spdystream", "bulk", None),
    _c("spdy", "rate", "Go spdystream", "rate", None),
    _c("spdy", "rate_100", "Go spdystream", "rate_100", None),
    _c("ssh", "rate_100", "asyncssh channel", "rate_100", None),
    _c("stack", "rate_100", "framer", "rate_100", None),
    *(_c(name, "bulk", "raw TCP", "bulk", None) for name in OURS[1:]),
    *(_c(name, "rate", "raw TCP", "ping_pong", None) for name in OURS[1:]),
)


# -- our side ---------------------------------------------------------------------------


Pair = Callable[[], contextlib.AbstractAsyncContextManager[tuple[StreamProvider, Listener]]]


def _settings(sizes: Sizes) -> dict[str, Any]:
    room = max(2 * sizes.idle_streams, 1000)
    # the idle-memory figure resets all its streams at once: a benchmark, not a flood
    return {
        "close_grace": 0.5,
        "max_incoming_streams": room,
        "accept_backlog": room,
        "resets_per_second": 0,
    }


def our_pair(name: str, sizes: Sizes, directory: Path) -> Pair:
    """A factory of (client, listener) over loopback TCP for one of :data:`OURS`."""
    settings = _settings(sizes)

    @contextlib.asynccontextmanager
    async def pair() -> AsyncIterator[tuple[StreamProvider, Listener]]:
        if name == "stack":
            async with _stack(sizes, settings) as both:
                yield both
            return
        server_options = client_options = BackendOptions(settings=settings)
        if name == "ssh":
            from .bench_ssh import Keys

            keys = Keys(directory)
            server_options = dataclasses.replace(keys.server_options(), settings=settings)
        backend = get_backend(name)
        async with backend.serve("127.0.0.1:0", server_options) as server:
            if name == "ssh":
                port = int(server.address.rsplit(":", 1)[1])
                client_options = dataclasses.replace(keys.client_options(port), settings=settings)
            async with backend.connect(server.address, client_options) as client:
                yield client, server.listener

    return pair


@contextlib.asynccontextmanager
async def _stack(
    sizes: Sizes, settings: dict[str, Any]
) -> AsyncIterator[tuple[StreamProvider, Listener]]:
    """Failover over a pool over the framer, inside metrics, against a framer server. The
    pool keeps one connection, as the bare framer has."""
    from prometheus_client import CollectorRegistry

    from streams.wrappers.failover import Failover
    from streams.wrappers.metrics import MetricsProvider, StreamMetrics
    from streams.wrappers.pool import Pool, PoolOptions

    backend = get_backend("framer")
    options = BackendOptions(settings=settings)
    pool_options = PoolOptions(
        min_connections=1,
        max_connections_per_endpoint=1,
        max_streams_per_connection=settings["max_incoming_streams"],
        max_pending_opens=settings["max_incoming_streams"],
        idle_timeout=None,
    )
    async with backend.serve("127.0.0.1:0", options) as server:
        pool = Pool([backend.dialer(server.address, options)], options=pool_options)
        async with Failover([[(server.address, pool)]], name="bench") as failover:
            metrics = StreamMetrics(CollectorRegistry())
            client = MetricsProvider(failover, upstream="bench", metrics=metrics)
            # the first open waits for the pool's dial: keep it out of every figure
            opened = await client.open_stream()
            accepted = await server.listener.accept()
            await opened.aclose()
            await accepted.aclose()
            yield client, server.listener


async def measure_ours(
    pair: Pair, sizes: Sizes, memory: bool, limit: int = 1 << 30
) -> dict[str, float]:
    """Every workload on a fresh connection of its own; at most *limit* idle streams."""
    results: dict[str, float] = {}
    async with pair() as (client, listener):
        results["bulk"] = await workloads.bulk(client, listener, sizes.bulk_bytes)
    async with pair() as (client, listener):
        results["many"], results["fairness"] = await workloads.many_streams(
            client, listener, sizes.many_seconds
        )
    async with pair() as (client, listener):
        latencies: list[float] = []
        results["rate"] = await workloads.open_echo_close(
            client, listener, sizes.opens, latencies=latencies
        )
        results["open_p50"] = workloads.percentile(latencies, 0.5) * 1e6
        results["open_p99"] = workloads.percentile(latencies, 0.99) * 1e6
    async with pair() as (client, listener):
        results["rate_0rtt"] = await workloads.open_echo_close(
            client, listener, sizes.opens, wait_accept=False
        )
    async with pair() as (client, listener):
        results["rate_100"] = await workloads.concurrent_open_echo_close(
            client, listener, sizes.concurrent_opens
        )
    if memory:
        async with pair() as (client, listener):
            count = min(sizes.idle_streams, limit)
            both = await workloads.idle_memory(client, listener, count)
            results["memory"] = both / 2
    return results


# -- the run ------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything one ``streams bench`` run measured, skipped and failed."""

    sizes: Sizes
    loops: list[str]
    measurements: list[Measurement] = dataclasses.field(default_factory=list)
    #: baseline name -> why it was not measured
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    failures: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    #: "subject on loop" -> seconds it took, every round together
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    def value(self, subject: str, workload: str, loop: str) -> tuple[float, str] | None:
        """The figure and the loop it was measured on: *loop*, or for a baseline that runs
        elsewhere (grpcio on asyncio, the Go peers) the loop it has."""
        found = {
            m.loop: m.value
            for m in self.measurements
            if m.subject == subject and m.workload == workload
        }
        for where in (loop, "asyncio", ANY_LOOP):
            if where in found and (where == loop or subject not in OURS):
                return found[where], where
        return None

    def comparisons(self) -> list[dict[str, Any]]:
        """Every :data:`COMPARISONS` entry that has its figures, per loop."""
        rows: list[dict[str, Any]] = []
        for loop in self.loops:
            for comparison in COMPARISONS:
                mine = self.value(comparison.subject, comparison.workload, loop)
                if mine is None or mine[1] != loop:
                    continue
                note = ""
                if comparison.baseline is None:
                    ratio, other = mine[0], None
                else:
                    assert comparison.baseline_workload is not None
                    other = self.value(comparison.baseline, comparison.baseline_workload, loop)
                    if other is None or not other[0]:
                        continue
                    ratio = mine[0] / other[0]
                    if other[1] == ANY_LOOP:
                        note = "Go: no Python loop"
                    elif other[1] != loop:
                        note = f"{comparison.baseline} measured on {other[1]}"
                met = None
                if comparison.target is not None:
                    met = (
                        ratio >= comparison.target
                        if comparison.kind == "min"
                        else (ratio <= comparison.target)
                    )
                rows.append(
                    {
                        "loop": loop,
                        "subject": comparison.subject,
                        "workload": comparison.workload,
                        "baseline": comparison.baseline,
                        "baseline_workload": comparison.baseline_workload,
                        "value": mine[0],
                        "baseline_value": None if other is None else other[0],
                        "ratio": ratio,
                        "target": comparison.target,
                        "kind": comparison.kind,
                        "met": met,
                        "note": note,
                    }
                )
        return rows

    def as_json(self) -> dict[str, Any]:
        """The document ``--json`` prints."""
        import platform

        return {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "loops": self.loops,
            "sizes": dataclasses.asdict(self.sizes),
            "seconds": round(self.seconds, 1),
            "timings": {key: round(value, 1) for key, value in self.timings.items()},
            "idle_streams": {
                name: min(self.sizes.idle_streams, IDLE_LIMITS.get(name, self.sizes.idle_streams))
                for name in OURS
            },
            "measurements": [m.as_dict() for m in self.measurements],
            "comparisons": self.comparisons(),
            "skipped": self.skipped,
            "failures": self.failures,
        }


Progress = Callable[[str], None]


def _keep_best(best: dict[str, float], found: dict[str, float]) -> None:
    for workload, value in found.items():
        more_is_better = WORKLOADS[workload][2]
        if workload not in best:
            best[workload] = value
        elif more_is_better:
            best[workload] = max(best[workload], value)
        else:
            best[workload] = min(best[workload], value)


async def _measure_loop(
    loop: str,
    sizes: Sizes,
    ours: list[str],
    baselines: list[Baseline],
    report: Report,
    progress: Progress,
    *,
    memory: bool = True,
) -> None:
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as directory:
        for round_index in range(sizes.rounds):
            with_memory = memory and round_index == 0
            # baselines and ours alternate, so each ratio's two sides run close in time
            subjects: list[tuple[str, Callable[[], Any]]] = []
            for baseline in baselines:
                subjects.append(
                    (baseline.name, lambda b=baseline, m=with_memory: b.measure(sizes, m))
                )
            for name in ours:
                pair = our_pair(name, sizes, Path(directory))
                subjects.append(
                    (
                        name,
                        lambda p=pair, m=with_memory, n=name: measure_ours(
                            p, sizes, m, IDLE_LIMITS.get(n, sizes.idle_streams)
                        ),
                    )
                )
            order = _interleave(subjects)
            for name, run in order:
                progress(f"{name} on {loop} (round {round_index + 1} of {sizes.rounds})")
                started = time.perf_counter()
                try:
                    with anyio.fail_after(600):
                        _keep_best(best.setdefault(name, {}), await run())
                except Exception as exc:
                    report.failures.append(f"{name} on {loop}: {exc!r}")
                key = f"{name} on {loop}"
                report.timings[key] = report.timings.get(key, 0.0) + (time.perf_counter() - started)
    loop_of = {b.name: (ANY_LOOP if b.loops == (ANY_LOOP,) else loop) for b in baselines}
    for name, found in best.items():
        for workload, value in found.items():
            report.measurements.append(
                Measurement(
                    subject=name,
                    workload=workload,
                    loop=loop_of.get(name, loop),
                    value=value,
                    baseline=name in loop_of,
                )
            )


def _interleave(subjects: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Each of ours right after the baselines it is compared with."""
    partners = {
        "framer": ("raw TCP", "TCP conn per exchange", "grpcio", "Go yamux"),
        "http2": ("h2 minimal", "httpx+hypercorn"),
        "spdy": ("Go spdystream",),
        "ssh": ("asyncssh channel",),
    }
    by_name = dict(subjects)
    order: list[tuple[str, Any]] = []
    for name in (*OURS, *by_name):
        for partner in partners.get(name, ()):
            if partner in by_name and all(partner != done for done, _ in order):
                order.append((partner, by_name[partner]))
        if name in by_name and all(name != done for done, _ in order):
            order.append((name, by_name[name]))
    return order


def run_suite(
    loops: list[str],
    sizes: Sizes,
    *,
    only: list[str] | None = None,
    progress: Progress = lambda text: None,
) -> Report:
    """Measure everything (or the subjects named in *only*) on each of *loops*."""
    started = time.perf_counter()
    report = Report(sizes=sizes, loops=loops)
    ours = [name for name in OURS if not only or name in only]
    baselines: list[Baseline] = []
    for baseline in all_baselines():
        if only and baseline.name not in only:
            continue
        reason = baseline.missing()
        if reason is not None:
            report.skipped[baseline.name] = reason
        else:
            baselines.append(baseline)
    extra_asyncio = [b for b in baselines if b.loops == ("asyncio",)]
    once = [b for b in baselines if b.loops == (ANY_LOOP,)]
    for index, loop in enumerate(loops):
        here = [b for b in baselines if loop in b.loops or (index == 0 and b in once)]
        run_on_loop(
            lambda loop=loop, here=here, first=index == 0: _measure_loop(
                loop, sizes, ours, here, report, progress, memory=first
            ),
            "asyncio" if loop == ANY_LOOP else loop,
        )
    if "asyncio" not in loops and extra_asyncio:
        # their figure is the one a user of any loop gets: measure it where it runs
        run_on_loop(
            lambda: _measure_loop("asyncio", sizes, [], extra_asyncio, report, progress),
            "asyncio",
        )
    for baseline in baselines:
        if baseline.loops != (ANY_LOOP,):
            for loop in loops:
                if loop not in baseline.loops:
                    report.skipped.setdefault(
                        f"{baseline.name} on {loop}",
                        f"runs on {', '.join(baseline.loops)} only",
                    )
    report.seconds = time.perf_counter() - started
    return report


SIZES = {"full": FULL, "quick": QUICK, "tiny": TINY}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The suite's options, shared by ``streams bench`` and ``python -m``."""
    parser.add_argument(
        "--loop",
        action="append",
        choices=(*LOOPS, "all"),
        help="event loop to measure on; repeatable; 'all' for every one (default: asyncio)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the ratios into a PNG")
    parser.add_argument(
        "--quick", action="store_true", help="smaller counts, one round: about a minute a loop"
    )
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--subject",
        action="append",
        metavar="NAME",
        help="measure only this backend or baseline (repeatable)",
    )


def chosen_loops(args: argparse.Namespace) -> list[str]:
    """The loops named by ``--loop`` (``all``: every one; none: asyncio)."""
    loops: list[str] = args.loop or ["asyncio"]
    return list(LOOPS) if "all" in loops else list(dict.fromkeys(loops))


def chosen_sizes(args: argparse.Namespace) -> Sizes:
    """The sizes ``--quick`` or ``--tiny`` ask for."""
    return TINY if args.tiny else QUICK if args.quick else FULL


def main(argv: list[str] | None = None) -> int:
    from . import _report

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_suite", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    report = run_suite(
        chosen_loops(args),
        chosen_sizes(args),
        only=args.subject,
        progress=lambda text: print(text, file=sys.stderr),
    )
    return _report.emit(report, json_output=args.json, plot=args.plot)


if __name__ == "__main__":
    raise SystemExit(main())
