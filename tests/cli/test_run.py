"""``streams run`` on its embedded default topology, driven as a user would: traffic
through the tunnel, the metrics endpoint, a killed primary, fail-over with no failed
connection, and an error (not a clean close) for connections that were on the primary."""

from __future__ import annotations

import re
import socket
import urllib.request

import pytest

from tests.peers import running, streams_command


def http(url: str, method: str = "GET") -> str:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode())


def echo_through(address: tuple[str, int], payload: bytes) -> bytes:
    with socket.create_connection(address, timeout=10) as connection:
        connection.sendall(payload)
        connection.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_the_embedded_default_topology_runs_and_fails_over(loop: str) -> None:
    command = streams_command("run", "--any-port", "--loop", loop)
    with running(command, ready_line="Ctrl-C", timeout=30) as process:
        output = "".join(process.output)  # type: ignore[attr-defined]
        tunnel_text = re.search(r"tunnel echo listening on ([\d.]+):(\d+)", output)
        admin_text = re.search(r"admin listening on http://([\d.:]+)", output)
        assert tunnel_text and admin_text, output
        tunnel = (tunnel_text.group(1), int(tunnel_text.group(2)))
        admin = f"http://{admin_text.group(1)}"

        for index in range(20):
            payload = f"message {index}".encode() * 100
            assert echo_through(tunnel, payload) == payload
        metrics = http(f"{admin}/metrics")
        assert metric(metrics, "streams_opened_total", upstream="echo", outcome="accepted") == 20
        assert metric(metrics, "streams_opened_total", upstream="echo-primary") == 20
        assert "ok" in http(f"{admin}/healthz")

        held = socket.create_connection(tunnel, timeout=10)
        held.sendall(b"still there?")
        assert held.recv(100) == b"still there?"

        assert "killed echo-primary" in http(f"{admin}/servers/echo-primary/kill", "POST")

        for index in range(30):
            payload = f"after {index}".encode()
            assert echo_through(tunnel, payload) == payload, f"connection {index} failed"
        metrics = http(f"{admin}/metrics")
        assert metric(metrics, "streams_opened_total", upstream="echo-secondary") >= 30
        assert metric(metrics, "streams_opened_total", upstream="echo", outcome="failed") == 0

        with pytest.raises(OSError):
            for _ in range(100):
                held.sendall(b"x")
                if not held.recv(100):
                    raise AssertionError(
                        "the held connection was closed cleanly, not with an error"
                    )
        held.close()
    assert process.returncode == 0, "".join(process.errors)  # type: ignore[attr-defined]
    assert "streams: stopped" in "".join(process.output)  # type: ignore[attr-defined]
