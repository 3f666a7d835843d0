"""The HTTP/2 benchmark runs (tiny sizes, no h2load): it is measured by hand, never timed
in tests."""

import pytest

from benchmarks import bench_http2


@pytest.mark.anyio
async def test_bench_http2_measures_every_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_http2, "BULK_BYTES", 4 * 1024 * 1024)
    monkeypatch.setattr(bench_http2, "ROUND_TRIPS", 20)
    monkeypatch.setattr(bench_http2, "ROUNDS", 1)
    monkeypatch.setattr(bench_http2, "IDLE_STREAMS", 50)
    monkeypatch.setattr(bench_http2, "h2load_rates", lambda loop: None)
    figures = await bench_http2.measure("test")
    names = [figure.name for figure in figures]
    assert "http2 bulk, one stream" in names
    assert "http2 open-echo-close (wait_accept=False)" in names
    assert all(figure.value > 0 for figure in figures)
    bulk = next(figure for figure in figures if figure.name == "http2 bulk, one stream")
    assert bulk.ratio is not None
