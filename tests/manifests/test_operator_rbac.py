"""The operator's ClusterRole grants exactly what the operator uses: every request `Kube` makes
(recorded by a loopback HTTP server standing in for the API server) and what kopf needs for the
handlers tmd registers. Nothing less (it would fail in a cluster), nothing more (least privilege)."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.manifests.apirecorder import Permission, granted, permission, recording_api
from tests.manifests.kustomize import build, find
from tmd.operator.kube import Kube



@pytest.fixture
def kube() -> Iterator[tuple[Kube, list[tuple[str, str]]]]:
    with recording_api() as (api, requests):
        yield Kube(api), requests


def operator_requests(recorded: tuple[Kube, list[tuple[str, str]]]) -> set[Permission]:
    kube, requests = recorded
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
    kube.scale_deployment("ns", "d", 1, 2)
    kube.replace_deployment_status("ns", "d", {})
    kube.replace_model_status("ns", "m", {})
    for kind in ("deployments", "models", "nodes", "pods"):
        kube.list_versioned(kind)
    kube.get_lease("tmd-system", "tmd-operator")
    kube.create_lease("tmd-system", {"metadata": {"name": "tmd-operator"}})
    kube.replace_lease("tmd-system", "tmd-operator", {"metadata": {"name": "tmd-operator"}})
    assert kube.supports_pod_resize() is False
    calls = [name for name in vars(Kube) if not name.startswith("_")]
    assert set(calls) == {"list_nodes", "list_pods", "list_custom", "list_deployments", "list_models",
                          "ensure_priority_class", "create_pod", "delete_pod", "annotate_pod", "resize_pod",
                          "replace_status", "replace_deployment_status", "replace_model_status",
                          "supports_pod_resize", "scale_deployment", "list_versioned", "get_lease", "create_lease",
                          "replace_lease"}, \
        "Kube has a new call: exercise it here and grant it in manifests/base/operator-rbac.yaml"
    # Discovery (GET /api/v1) is a non-resource URL every authenticated user may read (the default
    # system:discovery binding), so it needs no rule in the ClusterRole.
    return {permission(method, path) for method, path in requests if path.split("?")[0].rstrip("/") != "/api/v1"}


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


def operator_granted() -> set[Permission]:
    """The ClusterRole, plus the Role in the operator's namespace for its leader-election Lease."""
    docs = build("base")
    roles = [find(docs, "ClusterRole", "tmd-operator"), find(docs, "Role", "tmd-operator-leader")]
    assert all("resourceNames" not in rule for role in roles for rule in role["rules"]), \
        "requests are checked without names"
    return granted(roles[0]) | granted(roles[1])


def test_cluster_role_grants_exactly_what_the_operator_uses(kube):
    needed = operator_requests(kube) | kopf_needs()
    have = operator_granted()
    assert not needed - have, f"missing from the ClusterRole: {sorted(needed - have)}"
    assert not have - needed, f"granted but never used: {sorted(have - needed)}"


def test_leases_are_granted_in_the_operator_namespace_only():
    docs = build("base")
    assert not any("leases" in rule["resources"] for rule in find(docs, "ClusterRole", "tmd-operator")["rules"])
    role = find(docs, "Role", "tmd-operator-leader")
    assert granted(role) == {("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")}


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
                                      ("RoleBinding", "tmd-operator-leader", "tmd-operator"),
                                      ("RoleBinding", "tmd-shim", "tmd-shim")):
        subject = find(docs, kind, binding)["subjects"][0]
        pod = find(docs, "Deployment", deployment)["spec"]["template"]["spec"]
        assert subject["name"] == pod["serviceAccountName"]
        assert subject["namespace"] == find(docs, "Deployment", deployment)["metadata"]["namespace"]
        find(docs, "ServiceAccount", subject["name"])
