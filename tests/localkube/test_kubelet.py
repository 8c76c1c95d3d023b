"""Process kubelet against the real API server, with kubectl (both binaries) and the python client 37
(localkube.md §8 check 18): nodes, pods running as local processes on their own loopback IPs,
logs, probes, CrashLoopBackOff, graceful deletion, in-place resize, strict-model deserialisation."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request
from typing import Any

import pytest
from kubernetes import client, watch

from tmd.localkube.kubelet.process import start_ticks
from tmd.localkube.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.localkube(nodes=2, node_cpus="4", node_memory="8Gi", backoff_base=1.0)]

PY = sys.executable


def pod(name: str, script: str, *, node: str = "node-1", restart: str = "Always", **container: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeName": node,
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": container.pop("grace", 30),
        "containers": [{"name": "main", "image": "python:3.11", "command": [PY, "-u", "-c", script], **container}],
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"test": "kubelet"}}, "spec": spec}


@pytest.fixture(scope="module")
def core(k8s_client) -> client.CoreV1Api:
    return client.CoreV1Api(k8s_client)


@pytest.fixture(scope="module")
def recorder(k8s_client):
    """Watches every pod for the whole module through the python client, which deserialises each
    event into its strict V1Pod model; records failures and the container states seen."""
    seen: dict[str, Any] = {"events": 0, "errors": [], "reasons": set(), "phases": set()}
    stop = threading.Event()

    def run() -> None:
        api = client.CoreV1Api(k8s_client)
        rv = None
        while not stop.is_set():
            try:
                for event in watch.Watch().stream(api.list_pod_for_all_namespaces, resource_version=rv, timeout_seconds=2):
                    obj = event["object"]
                    assert isinstance(obj, client.V1Pod), type(obj)
                    rv = obj.metadata.resource_version
                    seen["events"] += 1
                    seen["phases"].add(obj.status.phase if obj.status else None)
                    for status in (obj.status.container_statuses or []) if obj.status else []:
                        state = status.state
                        if state and state.waiting:
                            seen["reasons"].add(state.waiting.reason)
                        if state and state.terminated:
                            seen["reasons"].add("terminated:" + state.terminated.reason)
            except Exception as error:  # noqa: BLE001 - every failure is a finding
                seen["errors"].append(repr(error))
                rv = None
                time.sleep(0.2)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield seen
    stop.set()
    thread.join(5)


def read(core: client.CoreV1Api, name: str) -> client.V1Pod:
    return core.read_namespaced_pod(name, "default")


def container_status(core: client.CoreV1Api, name: str) -> client.V1ContainerStatus | None:
    statuses = read(core, name).status.container_statuses or []
    return statuses[0] if statuses else None


def test_nodes_ready_with_version(kubectl, core, recorder):
    out = kubectl("get", "nodes").stdout
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert set(lines) == {"node-1", "node-2"}, out
    for columns in lines.values():
        assert columns[1] == "Ready" and columns[-1] == "v1.33.2", out
    wide = kubectl("get", "nodes", "-o", "wide").stdout
    assert "127.0.0.1" in wide and "linux" in wide.lower()
    nodes = {n.metadata.name: n for n in core.list_node().items}  # strict models
    assert nodes["node-1"].metadata.labels["topology.kubernetes.io/zone"] != nodes["node-2"].metadata.labels["topology.kubernetes.io/zone"]
    assert nodes["node-1"].metadata.labels["node-role.kubernetes.io/ml"] == "true"
    assert nodes["node-1"].status.allocatable["cpu"] == "4" and nodes["node-1"].status.allocatable["memory"] == "8Gi"


def test_describe_node_shows_allocatable_and_lease(kubectl, recorder):
    out = kubectl("describe", "node", "node-1").stdout
    assert "Allocatable:" in out and "HolderIdentity:  node-1" in out, out
    assert "KubeletReady" in out and "topology.kubernetes.io/zone=" in out


HTTP_SERVER = """
import http.server, os, socketserver
ip = os.environ["POD_IP"]
print("pod", os.environ["POD_NAME"], os.environ["POD_NAMESPACE"], "on", os.environ["NODE_NAME"], "ip", ip, "cpu", os.environ["CPU_LIMIT"], "key", os.environ["KEY"])
print("pid", os.getpid())
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + ip).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.ThreadingHTTPServer((ip, 8080), Handler).serve_forever()
"""

DOWNWARD_ENV = [
    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
    {"name": "KEY", "valueFrom": {"configMapKeyRef": {"name": "web-config", "key": "key"}}},
]


def test_pod_runs_on_its_own_ip_with_logs_and_readiness(kubectl, core, recorder):
    name = "web-" + kubectl.id.replace(".", "-")
    try:
        core.create_namespaced_config_map("default", {"metadata": {"name": "web-config"}, "data": {"key": "value-1"}})
    except client.ApiException as error:
        assert error.status == 409  # created by the run with the other kubectl
    manifest = pod(name, HTTP_SERVER, env=DOWNWARD_ENV, ports=[{"name": "http", "containerPort": 8080}],
                   readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                   resources={"limits": {"cpu": "1", "memory": "256Mi"}})
    kubectl("apply", "-f", "-", input=json.dumps(manifest))
    kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s")
    live = read(core, name)
    ip = live.status.pod_ip
    assert ip.startswith("127.") and ip != "127.0.0.1" and live.status.host_ip == "127.0.0.1"
    assert live.status.qos_class == "Guaranteed" and live.status.start_time is not None
    assert {c.type for c in live.status.conditions} >= {"PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"}
    status = live.status.container_statuses[0]
    previous = kubectl("logs", name, "--previous", check=False) if status.restart_count else None
    assert status.ready and status.started and status.restart_count == 0 and status.state.running and status.container_id, previous
    with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as response:
        assert response.read().decode() == f"hello from {ip}"
    logs = wait_for(lambda: (out := kubectl("logs", name).stdout) and "GET /" in out and out, message="request log line")
    assert f"pod {name} default on node-1 ip {ip} cpu 1 key value-1" in logs
    wide = kubectl("get", "pod", name, "-o", "wide").stdout
    assert "Running" in wide and ip in wide and "node-1" in wide and "1/1" in wide
    others = [p.status.pod_ip for p in core.list_pod_for_all_namespaces().items if p.metadata.name != name and p.status.pod_ip]
    assert ip not in others
    kubectl("delete", "pod", name, "--grace-period=1")


def test_crash_loop_back_off(core, recorder, kubectl):
    name = "crasher-" + kubectl.id.replace(".", "-")
    core.create_namespaced_pod("default", pod(name, "print('boom', flush=True); raise SystemExit(3)", grace=1))
    status = wait_for(lambda: (s := container_status(core, name)) and s.restart_count >= 2 and s.state.waiting
                      and s.state.waiting.reason == "CrashLoopBackOff" and s, timeout=60, message="CrashLoopBackOff")
    assert status.last_state.terminated.exit_code == 3 and status.last_state.terminated.reason == "Error"
    assert "back-off" in status.state.waiting.message and not status.ready
    assert read(core, name).status.phase == "Running"
    assert "boom" in kubectl("logs", name, "--previous").stdout
    out = kubectl("get", "pod", name).stdout
    assert "CrashLoopBackOff" in out or "Error" in out, out
    core.delete_namespaced_pod(name, "default")
    wait_for(lambda: not core.list_namespaced_pod("default", field_selector=f"metadata.name={name}").items, message="crasher gone")


@pytest.mark.parametrize("code, phase, reason", [(0, "Succeeded", "Completed"), (4, "Failed", "Error")])
def test_restart_policy_never(core, recorder, code, phase, reason):
    name = f"once-{code}"
    core.create_namespaced_pod("default", pod(name, f"print('done'); raise SystemExit({code})", restart="Never"))
    wait_for(lambda: read(core, name).status.phase == phase, message=phase)
    status = container_status(core, name)
    assert status.state.terminated.exit_code == code and status.state.terminated.reason == reason and status.restart_count == 0
    ready = {c.type: c for c in read(core, name).status.conditions}["Ready"]
    assert ready.status == "False" and ready.reason == "PodCompleted"
    core.delete_namespaced_pod(name, "default")  # terminal pods go at once
    wait_for(lambda: not core.list_namespaced_pod("default", field_selector=f"metadata.name={name}").items, message="deleted")


STUBBORN = """
import os, signal, sys, time
marker = os.environ["MARKER"]
def on_term(*_):
    open(marker, "a").write("TERM\\n")
signal.signal(signal.SIGTERM, on_term)
open(marker, "a").write(f"pid {os.getpid()}\\n")
while True:
    time.sleep(0.1)
"""


def test_graceful_delete_sigterm_then_sigkill(core, recorder, tmp_path):
    name = "stubborn"
    marker = tmp_path / "marker"
    core.create_namespaced_pod("default", pod(name, STUBBORN, grace=2, env=[{"name": "MARKER", "value": str(marker)}]))
    wait_for(lambda: read(core, name).status.phase == "Running" and marker.exists(), message="running")
    pid = int(marker.read_text().split()[1])
    events: list[tuple[str, client.V1Pod]] = []
    rv = read(core, name).metadata.resource_version

    def follow() -> None:
        for event in watch.Watch().stream(core.list_namespaced_pod, "default", field_selector=f"metadata.name={name}",
                                          resource_version=rv, timeout_seconds=30):
            events.append((event["type"], event["object"]))
            if event["type"] == "DELETED":
                return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    began = time.monotonic()
    core.delete_namespaced_pod(name, "default")
    deleting = read(core, name)
    assert deleting.metadata.deletion_timestamp is not None and deleting.metadata.deletion_grace_period_seconds == 2
    wait_for(lambda: "TERM" in marker.read_text(), timeout=5, message="SIGTERM delivered")
    assert start_ticks(pid) is not None  # still alive during the grace period
    wait_for(lambda: not core.list_namespaced_pod("default", field_selector=f"metadata.name={name}").items, timeout=20, message="pod removed")
    assert time.monotonic() - began >= 2.0
    wait_for(lambda: start_ticks(pid) is None, timeout=5, message="SIGKILL")
    follower.join(10)
    assert events and events[-1][0] == "DELETED", [t for t, _ in events]
    final = events[-2][1]  # the kubelet's last status write, before its DELETE
    terminated = final.status.container_statuses[0].state.terminated
    assert final.status.phase == "Failed" and terminated.exit_code == 137 and terminated.signal == 9 and terminated.reason == "Error"
    assert not final.status.container_statuses[0].ready


def test_liveness_failure_restarts_container(core, recorder, tmp_path):
    name = "unhealthy"
    flag = tmp_path / "healthy"
    flag.write_text("ok")
    script = "import time\nprint('start', flush=True)\nwhile True: time.sleep(1)"
    core.create_namespaced_pod("default", pod(name, script, grace=1, livenessProbe={
        "exec": {"command": ["test", "-e", str(flag)]}, "periodSeconds": 1, "failureThreshold": 2}))
    wait_for(lambda: (s := container_status(core, name)) and s.ready, message="ready")
    flag.unlink()
    status = wait_for(lambda: (s := container_status(core, name)) and s.restart_count >= 1 and s, timeout=30, message="liveness restart")
    assert status.last_state.terminated is not None and "Liveness probe failed" in (status.last_state.terminated.message or "")
    core.delete_namespaced_pod(name, "default", grace_period_seconds=1)


def test_in_place_resize_keeps_the_process(core, recorder, tmp_path):
    name = "resizable"
    marker = tmp_path / "pids"
    script = "import os, time\nopen(os.environ['MARKER'], 'a').write(f'{os.getpid()}\\n')\nwhile True: time.sleep(1)"
    resources = {"requests": {"cpu": "1", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}
    core.create_namespaced_pod("default", pod(name, script, grace=1, resources=resources, env=[{"name": "MARKER", "value": str(marker)}]))
    wait_for(lambda: (s := container_status(core, name)) and s.ready, message="running")
    assert container_status(core, name).resources.limits["cpu"] == "1"
    patch = {"spec": {"containers": [{"name": "main", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "2"}}}]}}
    core.patch_namespaced_pod_resize(name, "default", patch)
    status = wait_for(lambda: (s := container_status(core, name)) and s.resources.limits.get("cpu") == "2" and s, message="resized")
    assert status.allocated_resources["cpu"] == "2" and status.restart_count == 0
    assert len(marker.read_text().split()) == 1  # same process, not restarted
    conditions = {c.type for c in read(core, name).status.conditions}
    assert "PodResizeInProgress" not in conditions and "PodResizePending" not in conditions
    too_big = {"spec": {"containers": [{"name": "main", "resources": {"requests": {"cpu": "16"}, "limits": {"cpu": "16"}}}]}}
    core.patch_namespaced_pod_resize(name, "default", too_big)
    pending = wait_for(lambda: next((c for c in read(core, name).status.conditions if c.type == "PodResizePending"), None), message="pending")
    assert pending.reason == "Infeasible"
    assert container_status(core, name).resources.limits["cpu"] == "2"
    core.delete_namespaced_pod(name, "default", grace_period_seconds=1)


def test_init_containers_and_missing_config(core, recorder, tmp_path):
    """Init containers run first, in order; a container whose ConfigMap is missing waits with
    CreateContainerConfigError and starts once the ConfigMap exists."""
    name = "initialised"
    shared = tmp_path / "shared"
    manifest = pod(name, f"import os\nprint(open({str(shared)!r}).read(), os.environ['GREETING'], flush=True)\nimport time\nwhile True: time.sleep(1)",
                   grace=1, env=[{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "late-config", "key": "greeting"}}}])
    manifest["spec"]["initContainers"] = [
        {"name": f"init-{i}", "image": "busybox", "command": [PY, "-c", f"open({str(shared)!r}, 'a').write('step{i} ')"]} for i in (1, 2)
    ]
    core.create_namespaced_pod("default", manifest)
    waiting = wait_for(lambda: (s := container_status(core, name)) and s.state.waiting and s.state.waiting.reason == "CreateContainerConfigError" and s,
                       message="CreateContainerConfigError")
    assert 'configmap "late-config" not found' in waiting.state.waiting.message
    live = read(core, name)
    assert live.status.phase == "Pending" and [c.state.terminated.reason for c in live.status.init_container_statuses] == ["Completed", "Completed"]
    assert {c.type: c.status for c in live.status.conditions}["Initialized"] == "True"
    assert shared.read_text() == "step1 step2 "
    core.create_namespaced_config_map("default", {"metadata": {"name": "late-config"}, "data": {"greeting": "hi"}})
    wait_for(lambda: read(core, name).status.phase == "Running", timeout=20, message="running after the ConfigMap appeared")
    assert "step1 step2  hi" in wait_for(lambda: core.read_namespaced_pod_log(name, "default"), message="log")
    core.delete_namespaced_pod(name, "default", grace_period_seconds=1)


def test_startup_and_tcp_probes(core, recorder):
    """A startup probe (tcpSocket) gates `started` and readiness; an exec readiness probe follows."""
    name = "slow-start"
    script = ("import os, socket, time\ntime.sleep(1.5)\ns = socket.socket(); s.bind((os.environ['POD_IP'], 9090)); s.listen()\n"
              "while True: time.sleep(1)")
    core.create_namespaced_pod("default", pod(name, script, grace=1, env=DOWNWARD_ENV[:1],
                                              startupProbe={"tcpSocket": {"port": 9090}, "periodSeconds": 1, "failureThreshold": 10},
                                              readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1}))
    early = wait_for(lambda: container_status(core, name), message="status")
    assert not early.started and not early.ready
    ready = wait_for(lambda: (s := container_status(core, name)) and s.ready and s, timeout=20, message="ready after startup probe")
    assert ready.started and ready.restart_count == 0
    core.delete_namespaced_pod(name, "default", grace_period_seconds=1)


def test_every_pod_event_deserialised_with_strict_models(recorder):
    wait_for(lambda: recorder["events"] > 0, message="events")
    time.sleep(1)
    assert recorder["errors"] == []
    assert {"CrashLoopBackOff", "terminated:Completed", "terminated:Error"} <= recorder["reasons"], recorder["reasons"]
    assert {"Pending", "Running", "Succeeded", "Failed"} <= recorder["phases"], recorder["phases"]
