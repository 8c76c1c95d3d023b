"""§8 check 19: every object the server emits deserialises with the `kubernetes` 37 models (strict pydantic)
and, for built-ins, validates against the Kubernetes JSON schemas of `kubernetes-validate`."""

from __future__ import annotations

import http.client
import json
from typing import Any

import kubernetes
import pytest
from kubernetes.client import models

from .conftest import Cluster

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is optional")

MODELS = {"Namespace": models.V1Namespace, "Pod": models.V1Pod, "Node": models.V1Node, "Event": models.CoreV1Event,
          "ConfigMap": models.V1ConfigMap, "Secret": models.V1Secret, "ServiceAccount": models.V1ServiceAccount,
          "Lease": models.V1Lease, "CustomResourceDefinition": models.V1CustomResourceDefinition,
          "PriorityClass": models.V1PriorityClass}
PATHS = {"Namespace": "/api/v1/namespaces", "Pod": "/api/v1/pods", "Node": "/api/v1/nodes",
         "Event": "/api/v1/events", "ConfigMap": "/api/v1/configmaps", "Secret": "/api/v1/secrets",
         "ServiceAccount": "/api/v1/serviceaccounts", "Lease": "/apis/coordination.k8s.io/v1/leases",
         "CustomResourceDefinition": "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
         "PriorityClass": "/apis/scheduling.k8s.io/v1/priorityclasses"}


def fetch(cluster: Cluster, path: str, watch: bool = False) -> list[dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", cluster.server.port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200, body
    if watch:
        return [json.loads(line) for line in body.splitlines() if line.strip()]
    return [json.loads(body)]


@pytest.fixture(scope="module")
def populated(cluster: Cluster, example_crd: str) -> str:
    """One object of every served kind, written through the python client and kubectl."""
    api = cluster.api_client()
    core = kubernetes.client.CoreV1Api(api)
    rv = core.list_namespace().metadata.resource_version
    core.create_namespace({"metadata": {"name": "sanity"}})
    core.create_namespaced_pod("sanity", {"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {
        "nodeName": "n1", "containers": [{"name": "c", "image": "img:1", "resources": {"limits": {"cpu": "1"}},
                                          "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                                          "ports": [{"containerPort": 8080}]}]}})
    core.patch_namespaced_pod_status("p", "sanity", {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    core.create_node({"metadata": {"name": "sanity-node"}, "status": {"capacity": {"cpu": "4"}}})
    core.create_namespaced_event("sanity", {"metadata": {"generateName": "e-"}, "reason": "R", "message": "m",
                                            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "sanity"},
                                            "eventTime": "2026-01-01T01:00:00.5+01:00", "reportingComponent": "t",
                                            "reportingInstance": "i", "action": "A", "type": "Normal"})
    core.create_namespaced_config_map("sanity", {"metadata": {"name": "cm"}, "data": {"a": "b"}})
    core.create_namespaced_secret("sanity", {"metadata": {"name": "s"}, "stringData": {"a": "b"}})
    kubernetes.client.CoordinationV1Api(api).create_namespaced_lease("sanity", {"metadata": {"name": "l"}, "spec": {
        "holderIdentity": "h", "renewTime": "2026-01-01T00:00:00.000001Z"}})
    kubernetes.client.SchedulingV1Api(api).create_priority_class({"metadata": {"name": "pc"}, "value": 5})
    kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
        "kopf.dev", "v1", "sanity", "kopfexamples", {"apiVersion": "kopf.dev/v1", "kind": "KopfExample",
                                                    "metadata": {"name": "k"}, "spec": {"field": "x"}})
    return rv


@pytest.fixture(scope="module")
def watched(cluster: Cluster, populated: str) -> dict[str, list[dict[str, Any]]]:
    """Watch events of every kind since before `populated`, collected concurrently (1 s timeouts)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(len(PATHS)) as pool:
        futures = {kind: pool.submit(fetch, cluster, f"{path}?watch=true&timeoutSeconds=1&resourceVersion={populated}",
                                     True) for kind, path in PATHS.items()}
        return {kind: f.result() for kind, f in futures.items()}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_emitted_objects_deserialise_and_validate(cluster: Cluster, watched: dict[str, Any], kind: str) -> None:
    lists = fetch(cluster, PATHS[kind])
    items = lists[0]["items"]
    assert items, f"no {kind} objects"
    model = MODELS[kind]
    models_list = getattr(models, model.__name__ + "List", None) or getattr(models, "CoreV1EventList")
    models_list.from_dict(lists[0])
    emitted = items + [e["object"] for e in watched[kind] if e["type"] != "BOOKMARK"]
    for obj in emitted:
        model.from_dict(obj)
        kubernetes_validate.validate(obj, "1.33.0", strict=True)  # raises ValidationError


def test_custom_resources_deserialise_as_objects(cluster: Cluster, populated: str) -> None:
    item = fetch(cluster, "/apis/kopf.dev/v1/namespaces/sanity/kopfexamples/k")[0]
    meta = models.V1ObjectMeta.from_dict(item["metadata"])
    assert isinstance(meta.resource_version, str) and meta.generation == 1
