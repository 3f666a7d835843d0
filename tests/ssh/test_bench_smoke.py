"""The benchmark runs (tiny sizes): it is measured by hand, never timed in tests."""

import json

import pytest

from benchmarks import bench_ssh


def test_bench_ssh_prints_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_ssh.main(["--mib", "1", "--opens", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    cases = [row["case"] for row in report["results"]]
    assert cases[:3] == ["asyncssh channel", "asyncssh channel, AES-GCM first", "streams ssh"]
    assert report["results"][0]["throughput_ratio"] == 1.0
    assert all(row["throughput_mb_s"] > 0 and row["opens_per_s"] > 0 for row in report["results"])


def test_bench_ssh_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_ssh.main(["--count", "--opens", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["results"]
    assert set(report) == {"asyncssh channel", "asyncssh channel, AES-GCM first", "streams ssh"}
    # the stream's headers and answer ride in the open and its confirmation: the messages
    # of a bare channel
    assert report["streams ssh"]["ssh messages"] == report["asyncssh channel"]["ssh messages"]
    # and no IGNORE before each packet under AES-GCM, where the bare channel sends one
    assert report["streams ssh"]["IGNORE packets"] == 0
    assert report["asyncssh channel, AES-GCM first"]["IGNORE packets"] > 0


def test_bench_ssh_cpu_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_ssh.main(["--cpu", "--blocks", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["results"]
    assert report["bare_us_best"] > 0 and report["ours_us_best"] > 0
    ratio = report["bare_us_best"] / report["ours_us_best"]
    assert report["ratio_best"] == pytest.approx(ratio, rel=0.01)
