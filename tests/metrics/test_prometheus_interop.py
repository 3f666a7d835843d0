"""A real Prometheus and promtool against our metrics, alert rules, scrape configuration and
dashboard (Debian package `prometheus`)."""

import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import anyio
import pytest
from prometheus_client import CollectorRegistry

from streams.admin import AdminEndpoint, AdminState
from streams.backends import memory
from streams.testing import read_all
from streams.wrappers.metrics import MetricsProvider, StreamMetrics
from tests.peers import free_port, require_program, running

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_program("promtool"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_scrape_config_passes_promtool() -> None:
    result = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    result = promtool("check", "rules", str(DEPLOY / "prometheus" / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    result = promtool("test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "streams-dashboard.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert expressions
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for index, expression in enumerate(expressions):
        concrete = expression.replace("$__rate_interval", "5m").replace("$job", ".*")
        concrete = concrete.replace("$upstream", ".*")
        rules += [f"      - record: dashboard:expression_{index}", f"        expr: '{concrete}'"]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text("\n".join(rules) + "\n")
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    used = set(re.findall(r"\b(streams_[a-z_]+)", " ".join(expressions)))
    exported = exported_metric_names()
    assert used <= exported, f"the dashboard uses metrics nobody exports: {used - exported}"


def exported_metric_names() -> set[str]:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    metrics.add_describer(
        "x",
        lambda: {
            "failovers": 0,
            "retries": 0,
            "endpoints": [
                {
                    "endpoint": "e",
                    "connections": 0,
                    "rtt": 0.0,
                    "healthy": True,
                    "ejected": False,
                    "connections_opened": 0,
                    "connection_failures": 0,
                }
            ],
        },
    )
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    return names


async def run_traffic_and_serve_admin(registry: CollectorRegistry, *, scrape) -> None:  # type: ignore[no-untyped-def]
    metrics = StreamMetrics(registry)
    async with memory.pair() as (client, server), anyio.create_task_group() as group:
        upstream = MetricsProvider(client, upstream="api", metrics=metrics)
        MetricsProvider(server, upstream="edge", metrics=metrics)
        admin = AdminEndpoint(AdminState(registry=registry))
        address = await group.start(admin.serve)
        listener = server.listen()
        for _ in range(10):
            stream = await upstream.open_stream({"x-a": "1"})
            accepted = await listener.accept()
            await stream.send(b"y" * 1000)
            await stream.send_eof()
            assert await read_all(accepted) == b"y" * 1000
            await accepted.aclose()
            await stream.aclose()
        await scrape(address)
        group.cancel_scope.cancel()


@pytest.mark.anyio
async def test_scraped_metrics_pass_promtool_check_metrics() -> None:
    async def scrape(address: str) -> None:
        def fetch() -> str:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
                return str(response.read().decode())

        text = await anyio.to_thread.run_sync(fetch)
        assert "streams_opened_total" in text
        result = await anyio.to_thread.run_sync(lambda: promtool("check", "metrics", stdin=text))
        assert result.returncode == 0, result.stdout + result.stderr
        assert (result.stdout + result.stderr).strip() == "", "promtool warned about the metrics"

    with anyio.fail_after(30):
        await run_traffic_and_serve_admin(CollectorRegistry(), scrape=scrape)


@pytest.mark.anyio
async def test_a_real_prometheus_scrapes_the_admin_endpoint(tmp_path: Path) -> None:
    prometheus = require_program("prometheus")
    port = free_port()

    async def scrape(address: str) -> None:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n  - job_name: streams\n"
            f"    static_configs:\n      - targets: ['{address}']\n"
        )
        command = [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        query = urllib.parse.urlencode(
            {"query": 'sum(streams_sent_bytes_total{upstream="api",direction="outbound"})'}
        )
        url = f"http://127.0.0.1:{port}/api/v1/query?{query}"

        def ask() -> list[dict[str, object]]:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.loads(response.read())
            except urllib.error.HTTPError as error:
                # Prometheus answers 503 until its storage is ready: ask again
                if error.code == 503:
                    return []
                raise
            assert body["status"] == "success"
            return list(body["data"]["result"])

        with running(command, port=port, timeout=30):
            for _ in range(150):
                result = await anyio.to_thread.run_sync(ask)
                if result:
                    assert float(result[0]["value"][1]) == 10_000  # type: ignore[index]
                    return
                await anyio.sleep(0.2)
            raise AssertionError("Prometheus never scraped the stream counters")

    with anyio.fail_after(60):
        await run_traffic_and_serve_admin(CollectorRegistry(), scrape=scrape)
