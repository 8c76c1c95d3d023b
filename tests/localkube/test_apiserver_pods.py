"""Built-in kinds: pod defaults, QoS, logs, in-place resize; events, nodes, priority classes."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiException

from tmd.localkube.apiserver import log_path

from .conftest import Cluster, kubectl_binaries


@pytest.fixture(scope="module")
def core(cluster: Cluster) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(cluster.api_client())


def resources(cpu: str | None, memory: str | None = None, limits: bool = True) -> dict[str, Any]:
    vals = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    return {"requests": dict(vals), **({"limits": dict(vals)} if limits else {})}


@pytest.mark.parametrize("res,qos", [
    (None, "BestEffort"),
    (resources("1", "1Gi"), "Guaranteed"),
    ({"limits": {"cpu": "2", "memory": "64Mi"}}, "Guaranteed"),
    (resources("500m", limits=False), "Burstable"),
    ({"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "1Gi"}}, "Burstable"),
])
def test_pod_defaults_and_qos(core: Any, res: dict[str, Any] | None, qos: str) -> None:
    container: dict[str, Any] = {"name": "c", "image": "img", "ports": [{"containerPort": 80}]}
    if res:
        container["resources"] = res
    pod = core.create_namespaced_pod("default", {"metadata": {"name": "qos"}, "spec": {"containers": [container]}})
    try:
        assert pod.status.phase == "Pending" and pod.status.qos_class == qos
        assert pod.metadata.generation == 1
        spec = pod.spec
        assert (spec.restart_policy, spec.termination_grace_period_seconds, spec.dns_policy, spec.scheduler_name,
                spec.enable_service_links, spec.service_account_name) == (
            "Always", 30, "ClusterFirst", "default-scheduler", True, "default")
        c = spec.containers[0]
        assert c.image_pull_policy == "Always" and c.termination_message_path == "/dev/termination-log"
        assert c.ports[0].protocol == "TCP"
    finally:
        core.delete_namespaced_pod("qos", "default")


def test_pod_validation(core: Any) -> None:
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod("default", {"metadata": {"name": "invalid"}, "spec": {"containers": [
            {"name": "Bad_Name"}]}})
    body = json.loads(e.value.body)
    assert e.value.status == 422
    fields = {c["field"] for c in body["details"]["causes"]}
    assert fields == {"spec.containers[0].name", "spec.containers[0].image"}


def test_priority_class_resolution(cluster: Cluster, core: Any) -> None:
    sched = kubernetes.client.SchedulingV1Api(cluster.api_client())
    sched.create_priority_class({"metadata": {"name": "ml-low"}, "value": -10, "description": "low"})
    pod = core.create_namespaced_pod("default", {"metadata": {"name": "prio"}, "spec": {
        "priorityClassName": "ml-low", "containers": [{"name": "c", "image": "img"}]}})
    assert pod.spec.priority == -10
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod("default", {"metadata": {"name": "prio2"}, "spec": {
            "priorityClassName": "nope", "containers": [{"name": "c", "image": "img"}]}})
    assert e.value.status == 403 and "no PriorityClass with name nope was found" in e.value.body
    core.delete_namespaced_pod("prio", "default")
    sched.delete_priority_class("ml-low")


def test_events_accept_offsets_and_generate_name(core: Any) -> None:
    ev = core.create_namespaced_event("default", {
        "metadata": {"namespace": "default", "generateName": "kopf-event-"}, "action": "Action",
        "type": "Normal", "reason": "Logging", "message": "hello", "reportingComponent": "kopf",
        "reportingInstance": "dev", "source": {"component": "kopf"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u1", "namespace": "default"},
        "firstTimestamp": "2026-01-01T12:00:00.123456+01:00", "lastTimestamp": "2026-01-01T12:00:00+01:00",
        "eventTime": "2026-01-01T12:00:00.123456+01:00"})
    assert ev.metadata.name.startswith("kopf-event-")
    raw = core.read_namespaced_event(ev.metadata.name, "default", _preload_content=False)
    body = json.loads(raw.data)
    assert body["eventTime"] == "2026-01-01T11:00:00.123456Z" and body["firstTimestamp"] == "2026-01-01T11:00:00Z"
    found = core.list_namespaced_event("default", field_selector="involvedObject.uid=u1,involvedObject.kind=Pod")
    assert [e.metadata.name for e in found.items] == [ev.metadata.name]


def test_node_status_is_a_subresource(core: Any) -> None:
    node = core.create_node({"metadata": {"name": "node-x", "labels": {"node-role.kubernetes.io/ml": ""}},
                             "status": {"capacity": {"cpu": "4"}, "allocatable": {"cpu": "4"}}})
    assert node.status.allocatable == {"cpu": "4"}  # kubelets register with a status
    node = core.patch_node("node-x", {"status": {"allocatable": {"cpu": "8"}}, "spec": {"unschedulable": True}})
    assert node.status.allocatable == {"cpu": "4"} and node.spec.unschedulable is True
    node = core.patch_node_status("node-x", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert node.status.conditions[0].type == "Ready" and node.status.node_info.boot_id == ""
    assert [n.metadata.name for n in core.list_node(field_selector="spec.unschedulable=true").items] == ["node-x"]
    core.delete_node("node-x")


# --- pods/log ---------------------------------------------------------------------------------------

def test_pod_logs(cluster: Cluster, core: Any) -> None:
    core.create_namespaced_pod("default", {"metadata": {"name": "logger"}, "spec": {"containers": [
        {"name": "main", "image": "img"}, {"name": "side", "image": "img"}]}})
    data_dir = cluster.server.data_dir
    assert core.read_namespaced_pod_log("logger", "default", container="main") == ""
    path = log_path(data_dir, "default", "logger", "main", previous=False)
    assert path == pathlib.Path(data_dir) / "pods" / "default" / "logger" / "main.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("one\ntwo\nthree\n")
    log_path(data_dir, "default", "logger", "main", previous=True).write_text("before restart\n")
    assert core.read_namespaced_pod_log("logger", "default", container="main") == "one\ntwo\nthree\n"
    assert core.read_namespaced_pod_log("logger", "default", container="main", tail_lines=2) == "two\nthree\n"
    assert core.read_namespaced_pod_log("logger", "default", container="main", previous=True) == "before restart\n"
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod_log("logger", "default")
    assert e.value.status == 400
    assert json.loads(e.value.body)["message"] == ("a container name must be specified for pod logger, choose one "
                                                   "of: [main side]")
    for kubectl in (p.values[0] for p in kubectl_binaries() if not p.marks):
        out = cluster.kubectl(kubectl, "logs", "logger", "-c", "main", "--tail=1")
        assert out.stdout == "three\n"
    core.delete_namespaced_pod("logger", "default")


# --- pods/resize --------------------------------------------------------------------------------------

def test_in_place_resize(cluster: Cluster, core: Any) -> None:
    core.create_namespaced_pod("default", {"metadata": {"name": "resizable"}, "spec": {"nodeName": "n1", "containers": [
        {"name": "w", "image": "img", "resources": resources("1", "1Gi")}]}})
    with pytest.raises(ApiException) as e:  # the main endpoint treats resources as immutable
        core.patch_namespaced_pod("resizable", "default", {"spec": {"containers": [
            {"name": "w", "resources": resources("2", "1Gi")}]}})
    assert e.value.status == 422 and "spec: Forbidden: pod updates may not change fields" in e.value.body
    pod = core.patch_namespaced_pod_resize("resizable", "default", {"spec": {"containers": [
        {"name": "w", "resources": resources("2", "1Gi")}]}})
    assert pod.spec.containers[0].resources.requests == {"cpu": "2", "memory": "1Gi"}
    assert pod.metadata.generation == 2
    assert core.read_namespaced_pod_resize("resizable", "default").spec.containers[0].resources.limits["cpu"] == "2"
    with pytest.raises(ApiException) as e:  # Guaranteed → Burstable is a QoS change
        core.patch_namespaced_pod_resize("resizable", "default", {"spec": {"containers": [
            {"name": "w", "resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                                        "limits": {"cpu": "2", "memory": "1Gi"}}}]}})
    assert e.value.status == 422 and "Pod QoS is immutable" in e.value.body
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_pod_resize("resizable", "default", {"spec": {"containers": [
            {"name": "w", "image": "other"}]}})
    assert e.value.status == 422 and "only cpu and memory resources are mutable" in e.value.body
    kubectl = str(kubectl_binaries()[0].values[0])
    cluster.kubectl(kubectl, "patch", "pod", "resizable", "--subresource=resize", "-p",
                    json.dumps({"spec": {"containers": [{"name": "w", "resources": resources("3", "1Gi")}]}}))
    assert core.read_namespaced_pod("resizable", "default").spec.containers[0].resources.requests["cpu"] == "3"
    core.delete_namespaced_pod("resizable", "default", grace_period_seconds=0)


# --- Table output of built-ins ------------------------------------------------------------------------

@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_builtin_tables(cluster: Cluster, core: Any, example_crd: str, kubectl: str) -> None:
    info = {k: "" for k in ("architecture", "bootID", "containerRuntimeVersion", "kernelVersion", "kubeProxyVersion",
                            "machineID", "operatingSystem", "osImage", "systemUUID")}
    core.create_node({"metadata": {"name": "tbl-node"}, "status": {
        "conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {**info, "kubeletVersion": "v1.33.2"}}})
    try:
        nodes = cluster.kubectl(kubectl, "get", "nodes").stdout.splitlines()
        assert nodes[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        row = nodes[1].split()
        assert row[:3] == ["tbl-node", "Ready", "<none>"] and row[4] == "v1.33.2"
        ns = cluster.kubectl(kubectl, "get", "ns", "default").stdout.splitlines()
        assert ns[0].split() == ["NAME", "STATUS", "AGE"] and ns[1].split()[:2] == ["default", "Active"]
        crds = cluster.kubectl(kubectl, "get", "crd").stdout.splitlines()
        assert crds[0].split() == ["NAME", "CREATED", "AT"]
        sa = cluster.kubectl(kubectl, "get", "sa", "-n", "kube-system").stdout.splitlines()
        assert sa[0].split() == ["NAME", "SECRETS", "AGE"] and sa[1].split()[:2] == ["default", "0"]
        described = cluster.kubectl(kubectl, "describe", "node", "tbl-node").stdout
        assert "Name:               tbl-node" in described
    finally:
        core.delete_node("tbl-node")
