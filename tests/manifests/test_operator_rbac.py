"""The operator's ClusterRole grants exactly what the operator uses: every request `Kube` makes
(recorded by a loopback HTTP server standing in for the API server) and what kopf needs for the
handlers tmd registers. Nothing less (it would fail in a cluster), nothing more (least privilege)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client

from tests.manifests.kustomize import build, find
from tmd.operator.kube import Kube

Permission = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)


class Recorder(BaseHTTPRequestHandler):
    requests: list[tuple[str, str]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        Recorder.requests.append((self.command, self.path))
        body = json.dumps({"kind": "List", "apiVersion": "v1", "items": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def kube() -> Iterator[Kube]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Recorder.requests = []
    configuration = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    api = client.ApiClient(configuration)
    try:
        yield Kube(api)
    finally:
        api.close()
        server.shutdown()
        server.server_close()
        thread.join()


def permission(method: str, path: str) -> Permission:
    """The RBAC (group, resource, verb) of one API request, as the API server's authorizer sees it."""
    url = urlsplit(path)
    parts = url.path.strip("/").split("/")
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        group, rest = parts[1], parts[3:]
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
    watch = parse_qs(url.query).get("watch") == ["true"]
    verb = {"GET": "watch" if watch else ("get" if name else "list"), "POST": "create", "PATCH": "patch",
            "PUT": "update", "DELETE": "delete" if name else "deletecollection"}[method]
    return group, f"{resource}/{sub}" if sub else resource, verb


def operator_requests(kube: Kube) -> set[Permission]:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "namespace": "ns"},
           "spec": {"containers": [{"name": "worker", "image": "tmd"}]}}
    kube.list_nodes()
    kube.list_pods()
    kube.list_deployments()
    kube.list_models()
    kube.ensure_priority_class("tmd-low-priority", -100, "low")
    kube.create_pod(pod)
    kube.delete_pod("ns", "w")
    kube.annotate_pod("ns", "w", {"ml.tmd.dev/allocations": "2"})
    kube.resize_pod("ns", "w", "worker", {"requests": {"cpu": "2"}})
    kube.replace_deployment_status("ns", "d", {})
    kube.replace_model_status("ns", "m", {})
    calls = [name for name in vars(Kube) if not name.startswith("_")]
    assert set(calls) == {"list_nodes", "list_pods", "list_custom", "list_deployments", "list_models",
                          "ensure_priority_class", "create_pod", "delete_pod", "annotate_pod", "resize_pod",
                          "replace_status", "replace_deployment_status", "replace_model_status"}, \
        "Kube has a new call: exercise it here and grant it in manifests/base/operator-rbac.yaml"
    return {permission(method, path) for method, path in Recorder.requests}


def kopf_needs() -> set[Permission]:
    """kopf (clusterwide, standalone): list+watch every resource tmd's handlers watch, list+watch
    CRDs (it rescans resource kinds when they change), create events (it posts warnings)."""
    import kopf

    import tmd.operator.handlers  # noqa: F401  (registers the handlers)

    needs: set[Permission] = {("apiextensions.k8s.io", "customresourcedefinitions", "list"),
                              ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
                              ("", "events", "create")}
    registry = kopf.get_default_registry()
    handlers = registry._watching.get_all_handlers()
    assert not registry._changing.get_all_handlers(), \
        "change handlers make kopf patch the resources (progress, finalizers): grant patch on them"
    for handler in handlers:
        selector = handler.selector
        group = selector.group or ""
        for verb in ("list", "watch"):
            needs.add((group, selector.plural or str(selector.any_name), verb))
    assert {p[1] for p in needs} >= {"trainedmodels", "trainedmodeldeployments", "nodes", "pods"}
    return needs


def granted() -> set[Permission]:
    role = find(build("base"), "ClusterRole", "tmd-operator")
    out: set[Permission] = set()
    for rule in role["rules"]:
        assert "resourceNames" not in rule, "requests above are checked without names"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def test_cluster_role_grants_exactly_what_the_operator_uses(kube):
    needed = operator_requests(kube) | kopf_needs()
    have = granted()
    assert not needed - have, f"missing from the ClusterRole: {sorted(needed - have)}"
    assert not have - needed, f"granted but never used: {sorted(have - needed)}"


def test_recorded_requests_map_to_the_expected_permissions(kube):
    """Spot checks of the request → permission mapping the test above relies on."""
    used = operator_requests(kube)
    assert ("", "pods/resize", "patch") in used
    assert ("ml.tmd.dev", "trainedmodeldeployments/status", "patch") in used
    assert ("scheduling.k8s.io", "priorityclasses", "create") in used
    assert ("", "pods", "list") in used and ("", "nodes", "list") in used


def test_bindings_name_the_service_accounts_the_pods_run_as():
    docs = build("base")
    for kind, binding, deployment in (("ClusterRoleBinding", "tmd-operator", "tmd-operator"),
                                      ("RoleBinding", "tmd-shim", "tmd-shim")):
        subject = find(docs, kind, binding)["subjects"][0]
        pod = find(docs, "Deployment", deployment)["spec"]["template"]["spec"]
        assert subject["name"] == pod["serviceAccountName"]
        assert subject["namespace"] == find(docs, "Deployment", deployment)["metadata"]["namespace"]
        find(docs, "ServiceAccount", subject["name"])
