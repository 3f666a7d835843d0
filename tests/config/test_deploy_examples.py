"""Every example in deploy/ is valid: topologies pass `streams check`, the Kubernetes
manifests parse and carry what the docs promise."""

import subprocess
from pathlib import Path

import pytest
import yaml

from streams.cli.run import default_topology_text
from streams.config import parse_topology
from tests.peers import streams_command

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TOPOLOGIES = sorted((DEPLOY / "topologies").glob("*.yaml"))


@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda p: p.name)
def test_example_topologies_pass_streams_check(path: Path) -> None:
    result = subprocess.run(
        streams_command("check", str(path)), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert ": ok (" in result.stdout


def test_there_are_the_usual_shapes() -> None:
    names = {path.stem for path in TOPOLOGIES}
    assert {"client-pool-failover", "sidecar-tunnel", "ssh-bastion"} <= names


def test_the_embedded_default_topology_is_valid() -> None:
    topology = parse_topology(default_topology_text(), source="default")
    assert [s.name for s in topology.servers] == ["echo-primary", "echo-secondary"]
    assert len(topology.upstream("echo").groups) == 2
    assert topology.tunnels and topology.admin


def test_kubernetes_manifests() -> None:
    documents = [
        document
        for path in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
    ]
    kinds = {document["kind"] for document in documents}
    assert {"Deployment", "Service", "ServiceMonitor", "ConfigMap"} <= kinds
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    containers = {c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert "streams" in containers
    config = next(d for d in documents if d["kind"] == "ConfigMap")
    parse_topology(config["data"]["topology.yaml"], source="configmap")
