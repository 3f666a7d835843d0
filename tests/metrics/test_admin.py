"""The admin endpoint and the debug view, over real HTTP on loopback."""

import json
import logging
import urllib.error
import urllib.request
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

from streams import ConfigError
from streams.admin import AdminEndpoint, AdminState
from streams.backends import memory
from streams.testing import read_all
from streams.wrappers.debug import DebugProvider, redact_headers
from streams.wrappers.metrics import MetricsProvider, StreamMetrics

pytestmark = pytest.mark.anyio


async def get(url: str) -> tuple[int, str, str]:
    def fetch() -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.headers["content-type"], response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["content-type"], error.read().decode()

    return await anyio.to_thread.run_sync(fetch)


async def test_endpoints_report_metrics_streams_pool_and_health() -> None:
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    healthy = [True]
    with anyio.fail_after(20):
        async with memory.pair() as (client, server), anyio.create_task_group() as group:
            debug = DebugProvider(
                MetricsProvider(client, upstream="api", metrics=metrics), name="api"
            )
            state = AdminState(
                registry=registry,
                debug=[debug],
                describers={"api": lambda: {"endpoints": [{"endpoint": "memory:x"}]}},
                explainer=lambda name: {"upstream": name, "endpoint": "memory:x"},
                healthy=lambda: healthy[0],
            )
            admin = AdminEndpoint(state)
            address = await group.start(admin.serve)
            base = f"http://{address}"
            listener = server.listen()
            stream = await debug.open_stream({"x-path": "/a", "Authorization": "Bearer secret"})
            accepted = await listener.accept()
            await stream.send(b"12345")
            assert await accepted.receive() == b"12345"

            status, kind, body = await get(f"{base}/metrics")
            assert status == 200
            assert kind.startswith("text/plain")
            assert (
                'streams_sent_bytes_total{backend="memory",direction="outbound",upstream="api"} 5.0'
                in body
            )

            status, kind, body = await get(f"{base}/debug/streams")
            rows: list[dict[str, Any]] = json.loads(body)
            assert status == 200
            assert kind == "application/json"
            assert len(rows) == 1
            assert rows[0]["bytes_sent"] == 5
            assert rows[0]["state"] == "open"
            assert ["Authorization", "<redacted>"] in rows[0]["headers"]
            assert "secret" not in body

            status, _, text = await get(f"{base}/debug/streams?format=text")
            assert "x-path=/a" in text
            assert "secret" not in text

            status, _, body = await get(f"{base}/debug/pool")
            assert json.loads(body) == {"api": {"endpoints": [{"endpoint": "memory:x"}]}}
            status, _, body = await get(f"{base}/explain?upstream=api")
            assert json.loads(body)["endpoint"] == "memory:x"
            status, _, body = await get(f"{base}/explain?upstream=nope")
            assert status == 404
            assert "known: api" in body

            assert (await get(f"{base}/healthz"))[0] == 200
            healthy[0] = False
            assert (await get(f"{base}/healthz"))[0] == 503
            assert (await get(f"{base}/nope"))[0] == 404

            await stream.send_eof()
            await accepted.send_eof()
            assert await read_all(stream) == b""
            await stream.aclose()
            await accepted.aclose()
            status, _, body = await get(f"{base}/debug/streams")
            assert json.loads(body) == []
            group.cancel_scope.cancel()


async def test_lifecycle_log_has_structured_fields_and_no_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streams.debug")
    with anyio.fail_after(10):
        async with memory.pair() as (client, server):
            debug = DebugProvider(client, name="api")
            listener = server.listen()
            stream = await debug.open_stream({"cookie": "c=1", "x-a": "b"})
            accepted = await listener.accept()
            await stream.reset()
            await stream.aclose()
            await accepted.aclose()
    events = [record.stream["event"] for record in caplog.records if hasattr(record, "stream")]
    assert events == ["stream_opened", "stream_reset", "stream_closed"]
    assert all("c=1" not in record.getMessage() for record in caplog.records)
    opened = caplog.records[0].stream
    assert opened["provider"] == "api"
    assert opened["direction"] == "outbound"


def test_redaction_covers_the_usual_secret_headers() -> None:
    from streams import Headers

    headers = Headers(
        [("authorization", "a"), ("X-Api-Key", "b"), ("x-auth-token", "c"), ("x-trace", "d")]
    )
    assert redact_headers(headers) == [
        ("authorization", "<redacted>"),
        ("X-Api-Key", "<redacted>"),
        ("x-auth-token", "<redacted>"),
        ("x-trace", "d"),
    ]


def test_admin_binds_to_loopback_unless_told_otherwise() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        AdminEndpoint(AdminState(), "0.0.0.0:9000")
    AdminEndpoint(AdminState(), "0.0.0.0:9000", allow_remote=True)
