"""``streams check`` and ``streams schema`` as a user runs them."""

import json
import subprocess
from pathlib import Path

from tests.peers import streams_command


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(streams_command(*args), capture_output=True, text=True, timeout=60)


def test_check_accepts_a_good_file_and_names_line_of_a_bad_one(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "version: 1\nupstreams:\n  - name: a\n    backend: framer\n"
        "    groups: [{endpoints: ['127.0.0.1:1']}]\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("framer", "telegraph"))
    result = run("check", str(good))
    assert result.returncode == 0, result.stderr
    assert "ok (1 upstreams, 0 servers, 0 tunnels)" in result.stdout
    result = run("check", str(good), str(bad))
    assert result.returncode == 1
    assert f"{bad}:4: upstreams[0].backend: unknown backend 'telegraph'" in result.stderr


def test_schema_prints_json_schema() -> None:
    result = run("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "streams topology"


def test_bench_lists_its_benchmarks() -> None:
    result = run("bench", "--list")
    assert result.returncode == 0, result.stderr
    assert {"framer", "metrics"} <= set(result.stdout.split())
    result = run("bench", "--only", "nope")
    assert result.returncode == 2
    assert "no benchmark nope" in result.stderr
