"""The baselines ``streams bench`` compares the backends with, each measured in the same run
on the same loopback: raw anyio TCP, a new TCP connection per exchange, a bare asyncssh
channel, httpx with HTTP/2 against hypercorn, grpcio's asyncio bidirectional streams, a
minimal h2 driver, and the Go yamux and spdystream peers.

Each is a :class:`Baseline`: the loops it runs on, why it cannot run here (a missing
package or program), and a ``measure`` that returns the workloads it has (keys as in
:data:`benchmarks.bench_suite.WORKLOADS`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .. import _workloads as workloads
from .._workloads import Sizes

__all__ = ["ANY_LOOP", "Baseline", "all_baselines"]

#: the loop of a baseline that does not run on a Python event loop (the Go peers)
ANY_LOOP = "go"


@dataclass(frozen=True, slots=True, kw_only=True)
class Baseline:
    """One baseline of the suite."""

    #: its name in tables, JSON and targets
    name: str
    #: the loops it runs on; ``(ANY_LOOP,)``: measured once, outside the Python loop
    loops: tuple[str, ...]
    #: why it cannot run here, or ``None``
    missing: Callable[[], str | None]
    #: its figures for the run's sizes; the flag asks for the memory figure too
    measure: Callable[[Sizes, bool], Awaitable[dict[str, float]]]
    #: what a reader of the table should know about it
    note: str = ""


def _nothing_missing() -> str | None:
    return None


async def _raw_tcp(sizes: Sizes, memory: bool) -> dict[str, float]:
    # at its best read size: the streams' own bulk receiver reads up to 1 MiB at a time
    best = 0.0
    for read_size in (64 * 1024, 256 * 1024, 1024 * 1024):
        best = max(best, await workloads.raw_bulk(read_size, sizes.bulk_bytes))
    return {"bulk": best, "ping_pong": await workloads.raw_ping_pong(sizes.opens)}


async def _new_connection(sizes: Sizes, memory: bool) -> dict[str, float]:
    return {
        "rate": await workloads.new_connection_per_exchange(sizes.opens),
        "rate_100": await workloads.new_connection_per_exchange(
            sizes.concurrent_opens, workloads.CONCURRENCY
        ),
    }


def all_baselines() -> list[Baseline]:
    """Every baseline, in the order the suite measures them."""
    from . import asyncssh_channel, go_peers, grpc_bidi, h2_minimal, httpx_hypercorn

    every = [
        Baseline(
            name="raw TCP",
            loops=("asyncio", "uvloop", "trio"),
            missing=_nothing_missing,
            measure=_raw_tcp,
            note="anyio socket, Nagle off; bulk at its best read size (64 KiB, 256 KiB or 1 MiB)",
        ),
        Baseline(
            name="TCP conn per exchange",
            loops=("asyncio", "uvloop", "trio"),
            missing=_nothing_missing,
            measure=_new_connection,
            note="connect, echo 64 bytes, close: no multiplexer at all",
        ),
    ]
    for module, note in (
        (h2_minimal, "one h2 connection, no abstraction: the ceiling h2 allows"),
        (httpx_hypercorn, "httpx (HTTP/2, prior knowledge) against hypercorn"),
        (grpc_bidi, "grpc.aio bidirectional streaming of raw bytes, C core; asyncio only"),
        (asyncssh_channel, "direct-streamlocal channels on one asyncssh connection"),
    ):
        every.append(
            Baseline(
                name=module.NAME,
                loops=module.LOOPS,
                missing=module.missing,
                measure=module.measure,
                note=note,
            )
        )
    for name, directory, import_path in go_peers.PEERS:

        async def measure(
            sizes: Sizes, memory: bool, directory: str = directory, import_path: str = import_path
        ) -> dict[str, float]:
            return await go_peers.measure(directory, import_path, sizes)

        every.append(
            Baseline(
                name=name,
                loops=(ANY_LOOP,),
                missing=lambda import_path=import_path: go_peers.missing(import_path),
                measure=measure,
                note="Go client and server in one process, GOMAXPROCS=1",
            )
        )
    return every
