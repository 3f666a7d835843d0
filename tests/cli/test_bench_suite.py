"""``streams bench``: the suite's workloads, its ratios and targets, and one whole run in
its smallest size (JSON and the PNG plot) as a user starts it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from benchmarks import _workloads as workloads
from benchmarks._report import verdict
from benchmarks.bench_suite import OURS, WORKLOADS, Measurement, Report
from streams._core.mux import MuxSettings
from streams.backends import memory
from tests.peers import in_ci, streams_command

PNG = b"\x89PNG\r\n\x1a\n"


def test_percentile_is_the_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert workloads.percentile(values, 0.5) == 3.0
    assert workloads.percentile(values, 0.99) == 5.0
    assert workloads.percentile(values, 0.0) == 1.0
    assert workloads.percentile([], 0.5) == 0.0


@pytest.mark.anyio
async def test_workloads_move_real_bytes_on_the_memory_backend() -> None:
    settings = MuxSettings(close_grace=0.5, max_incoming_streams=1000, accept_backlog=1000)
    with anyio.fail_after(30):
        async with memory.pair(settings) as (client, server):
            latencies: list[float] = []
            rate = await workloads.open_echo_close(client, server.listen(), 20, latencies=latencies)
            assert rate > 0
            assert len(latencies) == 20
            assert all(latency > 0 for latency in latencies)
        async with memory.pair(settings) as (client, server):
            assert await workloads.concurrent_open_echo_close(client, server.listen(), 200) > 0
            assert client.active_streams == 0
        async with memory.pair(settings) as (client, server):
            total, fairness = await workloads.many_streams(client, server.listen(), 0.05)
            assert total > 0
            assert 0 <= fairness <= 1
        async with memory.pair(settings) as (client, server):
            per_stream = await workloads.idle_memory(client, server.listen(), 50)
            assert 0 < per_stream < 1_000_000


@pytest.mark.anyio
async def test_a_new_connection_per_exchange_echoes() -> None:
    with anyio.fail_after(30):
        assert await workloads.new_connection_per_exchange(10, concurrency=5) > 0


def _report(*figures: tuple[str, str, str, float]) -> Report:
    report = Report(sizes=workloads.TINY, loops=["asyncio", "trio"])
    for subject, workload, loop, value in figures:
        report.measurements.append(
            Measurement(
                subject=subject,
                workload=workload,
                loop=loop,
                value=value,
                baseline=subject not in OURS,
            )
        )
    return report


def test_ratios_use_the_same_loop_and_fall_back_to_where_a_baseline_runs() -> None:
    report = _report(
        ("framer", "rate", "asyncio", 3000.0),
        ("framer", "rate", "trio", 2000.0),
        ("grpcio", "rate", "asyncio", 1000.0),
        ("raw TCP", "ping_pong", "asyncio", 10000.0),
        ("raw TCP", "ping_pong", "trio", 4000.0),
        ("framer", "memory", "asyncio", 5000.0),
    )
    rows = {
        (row["loop"], row["baseline"], row["baseline_workload"], row["workload"]): row
        for row in report.comparisons()
    }
    on_asyncio = rows["asyncio", "grpcio", "rate", "rate"]
    assert on_asyncio["ratio"] == 3.0
    assert on_asyncio["met"] is True
    assert on_asyncio["note"] == ""
    on_trio = rows["trio", "grpcio", "rate", "rate"]
    assert on_trio["ratio"] == 2.0
    assert on_trio["note"] == "grpcio measured on asyncio"
    assert rows["trio", "raw TCP", "ping_pong", "rate"]["ratio"] == 0.5
    ping_pong = rows["asyncio", "raw TCP", "ping_pong", "rate"]
    assert ping_pong["ratio"] == pytest.approx(0.3)
    assert verdict(ping_pong) == ">= 0.35: missed by 14%"
    memory_row = rows["asyncio", None, None, "memory"]
    assert memory_row["met"] is False
    assert verdict(memory_row) == "<= 4096: over by 22%"
    # ours are never borrowed from another loop: no framer memory figure on trio
    assert ("trio", None, None, "memory") not in rows


def test_the_smallest_run_prints_json_and_draws_a_png(tmp_path: Path) -> None:
    plot = tmp_path / "ratios.png"
    command = streams_command("bench", "--tiny", "--loop", "asyncio", "--json")
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    if has_matplotlib or in_ci():
        command += ["--plot", str(plot)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(result.stdout)
    assert document["failures"] == []
    assert document["loops"] == ["asyncio"]
    for reason in document["skipped"].values():
        assert "install" in reason or "runs on" in reason
    found = {(m["subject"], m["workload"]) for m in document["measurements"]}
    for subject in OURS:
        for workload in ("bulk", "many", "fairness", "rate", "rate_0rtt", "rate_100"):
            assert (subject, workload) in found
        assert (subject, "open_p50") in found
        assert (subject, "memory") in found
    assert ("raw TCP", "ping_pong") in found
    for measurement in document["measurements"]:
        assert measurement["unit"] == WORKLOADS[measurement["workload"]][1]
        assert measurement["value"] >= 0
    targets = [row for row in document["comparisons"] if row["target"] is not None]
    assert any(row["subject"] == "framer" and row["baseline"] == "raw TCP" for row in targets)
    assert all(isinstance(row["met"], bool) for row in targets)
    if has_matplotlib or in_ci():
        assert plot.read_bytes().startswith(PNG)
    else:
        pytest.skip(
            "matplotlib is not installed, so the plot was not checked: "
            "./dev setup (or pip install 'streams[bench]') installs it"
        )


def test_a_missing_baseline_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.baselines import grpc_bidi, httpx_hypercorn

    monkeypatch.setitem(sys.modules, "grpc", None)
    monkeypatch.setitem(sys.modules, "hypercorn", None)
    assert grpc_bidi.missing() == "grpcio is not installed (pip install 'streams[bench]')"
    assert httpx_hypercorn.missing() == (
        "hypercorn is not installed (pip install 'streams[bench]')"
    )
