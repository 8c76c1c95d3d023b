"""Simulated nodes (`--simulated-nodes`): pods bound to them become Running/Ready without a
process, resize in place at once and vanish at once when deleted; a real node beside them still
runs its pods as processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client, config

from tmd.localkube.cluster import LocalCluster
from tmd.localkube.kubelet.simulated import SIMULATED_LABEL
from tmd.localkube.testing import random_pod_subnet, wait_for

REPO = Path(__file__).resolve().parents[2]


def pod(name: str, node: str, cpu: str = "1") -> dict:
    script = "import time\nwhile True: time.sleep(1)"
    resources = {"requests": {"cpu": cpu, "memory": "64Mi"}, "limits": {"cpu": cpu, "memory": "64Mi"}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 30, "containers": [
                {"name": "main", "image": "python:3.11", "command": [sys.executable, "-c", script],
                 "resources": resources,
                 "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]}]}}


def ready(p: client.V1Pod) -> bool:
    return p.status.phase == "Running" and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with LocalCluster(tmp_path_factory.mktemp("sim"), nodes=1, simulated_nodes=50, pod_subnet=random_pod_subnet(),
                      shutdown_grace=5.0) as running:
        yield running


@pytest.fixture(scope="module")
def core(cluster: LocalCluster) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))


def test_simulated_nodes_register_beside_the_real_one(cluster, core):
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(nodes) == {"node-1", *(f"sim-{i}" for i in range(1, 51))}
    assert cluster.simulated_node_names == [f"sim-{i}" for i in range(1, 51)]
    sim = nodes["sim-7"]
    assert sim.metadata.labels[SIMULATED_LABEL] == "true"
    assert SIMULATED_LABEL not in (nodes["node-1"].metadata.labels or {})
    assert sim.status.allocatable["cpu"] == "4"
    assert [c.status for c in sim.status.conditions if c.type == "Ready"] == ["True"]


def test_pods_on_simulated_nodes_run_without_a_process_and_real_ones_with(cluster, core):
    for i in range(1, 21):
        core.create_namespaced_pod("default", pod(f"sim-pod-{i}", f"sim-{i}"))
    core.create_namespaced_pod("default", pod("real-pod", "node-1"))
    pods = wait_for(lambda: (lambda items: items if len(items) == 21 and all(map(ready, items)) else None)(
        core.list_namespaced_pod("default").items), timeout=60, message="all pods ready")
    simulated = [p for p in pods if p.spec.node_name.startswith("sim-")]
    ips = {p.status.pod_ip for p in pods}
    assert len(ips) == 21, "every pod has an address of its own"
    assert all(p.status.container_statuses[0].ready and p.status.container_statuses[0].started for p in simulated)
    assert all(p.status.qos_class == "Guaranteed" for p in simulated)
    # Only the real node's pod is a process.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert ps.count("while True: time.sleep(1)") >= 1
    real = next(p for p in pods if p.metadata.name == "real-pod")
    assert real.status.container_statuses[0].container_id.startswith("localkube://")
    assert simulated[0].status.container_statuses[0].container_id.startswith("simulated://")


def test_a_simulated_pod_resizes_in_place_at_once(cluster, core):
    core.patch_namespaced_pod_resize("sim-pod-1", "default", {"spec": {"containers": [
        {"name": "main", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "2"}}}]}})
    wait_for(lambda: core.read_namespaced_pod("sim-pod-1", "default").status.container_statuses[0]
             .resources.requests["cpu"] == "2", timeout=10, message="resize reported")


def test_a_deleted_simulated_pod_is_gone_at_once_and_its_address_freed(cluster, core):
    ip = core.read_namespaced_pod("sim-pod-2", "default").status.pod_ip
    core.delete_namespaced_pod("sim-pod-2", "default")  # graceful: 30 s for a real kubelet
    wait_for(lambda: "sim-pod-2" not in {p.metadata.name for p in core.list_namespaced_pod("default").items},
             timeout=5, message="simulated pod removed")
    core.create_namespaced_pod("default", pod("sim-pod-again", "sim-2"))
    again = wait_for(lambda: (lambda p: p if ready(p) else None)(core.read_namespaced_pod("sim-pod-again", "default")),
                     timeout=10, message="new pod ready")
    assert again.status.pod_ip == ip, "the freed address is handed out again, lowest first"


def test_the_cli_starts_simulated_nodes(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tmd", "localkube", "--nodes", "0", "--simulated-nodes", "30",
                             "--data-dir", str(tmp_path / "lk"), "--port", "0", "--pod-subnet", random_pod_subnet()],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        first = ""
        while not first.startswith("localkube: API server"):
            first = proc.stdout.readline()  # type: ignore[union-attr]
            assert first, "tmd localkube exited before it was up"
        assert "sim-1, sim-2" in first and "(30 in all)" in first, first
        kubeconfig = tmp_path / "lk" / "kubeconfig"
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        assert len(core.list_node().items) == 30
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_the_api_server_counts_requests_by_client_at_metrics(cluster, core):
    before = cluster.api_server.request_counts().get(("LIST", "nodes", "OpenAPI-Generator"), 0)
    core.list_node()
    core.list_node()
    counts = cluster.api_server.request_counts()
    assert counts[("LIST", "nodes", "OpenAPI-Generator")] == before + 2
    import httpx

    text = httpx.get(f"{cluster.url}/metrics").text
    assert f'apiserver_request_total{{verb="LIST",resource="nodes",client="OpenAPI-Generator"}} {before + 2}' in text
    assert 'verb="PATCH",resource="pods/resize"' in text  # the resize above
