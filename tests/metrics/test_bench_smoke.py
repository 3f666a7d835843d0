"""The metrics benchmark runs (tiny sizes): it is measured by hand, never timed in tests."""

import anyio
import pytest

from benchmarks import bench_metrics


@pytest.mark.anyio
async def test_bench_metrics_measures_every_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_metrics, "BULK_BYTES", 2 * 1024 * 1024)
    monkeypatch.setattr(bench_metrics, "OPENS", 20)
    monkeypatch.setattr(bench_metrics, "ROUNDS", 2)
    with anyio.fail_after(60):
        figures = await bench_metrics.measure("test")
    names = [figure.name for figure in figures]
    for label in ("open-echo-close", "bulk"):
        assert f"metrics wrapper {label}, best of each" in names
        assert f"metrics wrapper {label}, median of 2 round ratios" in names
        assert f"metrics wrapper {label}, median of 2 round CPU-time ratios" in names
        assert f"failover+pool+metrics {label}, median of 2 round ratios" in names
    assert all(figure.value > 0 for figure in figures)


@pytest.mark.anyio
async def test_a_round_runs_bare_and_wrapped_alternately_on_one_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench_metrics, "OPENS", 10)
    with anyio.fail_after(30):
        samples = await bench_metrics.same_connection_round("rate", 1)
    assert {name: len(runs) for name, runs in samples.items()} == {"bare": 2, "metrics": 2}
    assert all(rate > 0 and cpu > 0 for runs in samples.values() for rate, cpu in runs)
