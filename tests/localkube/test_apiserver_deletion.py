"""Finalizers, garbage collection, namespace lifecycle, graceful pod deletion (§8 checks 13–15)."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any, Callable

import kubernetes
import pytest
from kubernetes.client import ApiException

from .conftest import Cluster, kubectl_binaries

GROUP, VERSION, PLURAL = "kopf.dev", "v1", "kopfexamples"


@pytest.fixture(scope="module")
def core(cluster: Cluster) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(cluster.api_client())


@pytest.fixture(scope="module")
def custom(cluster: Cluster, example_crd: str) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(cluster.api_client())


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def exists(fn: Callable[..., Any], *args: Any) -> bool:
    try:
        fn(*args)
        return True
    except ApiException as e:
        assert e.status == 404
        return False


def owner_with_children(core: Any, custom: Any, name: str, count: int = 2) -> tuple[dict[str, Any], list[str]]:
    """An owner CR with pods adopted the way kopf.adopt() does (controller + blockOwnerDeletion)."""
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, {
        "apiVersion": "kopf.dev/v1", "kind": "KopfExample", "metadata": {"name": name}, "spec": {}})
    ref = {"apiVersion": "kopf.dev/v1", "kind": "KopfExample", "name": name, "uid": owner["metadata"]["uid"],
           "controller": True, "blockOwnerDeletion": True}
    names = []
    for i in range(count):
        child = f"{name}-child-{i}"
        core.create_namespaced_pod("default", {"metadata": {"name": child, "ownerReferences": [ref]},
                                               "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
        names.append(child)
    return owner, names


# --- check 13: finalizers ----------------------------------------------------------------------------

@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_finalizer_blocks_deletion(cluster: Cluster, custom: Any, kubectl: str) -> None:
    name = f"fin-{abs(hash(kubectl)) % 1000}"
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, {
        "apiVersion": "kopf.dev/v1", "kind": "KopfExample",
        "metadata": {"name": name, "finalizers": ["example.com/block"]}, "spec": {}})
    cluster.kubectl(kubectl, "delete", "kex", name, "--wait=false")
    obj = json.loads(cluster.kubectl(kubectl, "get", "kex", name, "-o", "json").stdout)
    assert obj["metadata"]["deletionTimestamp"] and obj["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name,
                                              {"metadata": {"finalizers": ["example.com/block", "example.com/new"]}})
    assert e.value.status == 422
    assert "no new finalizers can be added if the object is being deleted" in json.loads(e.value.body)["message"]
    waiter = subprocess.Popen([kubectl, "delete", "kex", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=cluster.env())
    time.sleep(1.0)
    assert waiter.poll() is None, "kubectl delete must wait while the finalizer is there"
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name,
                                          [{"op": "remove", "path": "/metadata/finalizers"}],
                                          _content_type="application/json-patch+json")
    out, err = waiter.communicate(timeout=15)
    assert waiter.returncode == 0, err
    assert not exists(custom.get_namespaced_custom_object, GROUP, VERSION, "default", PLURAL, name)


# --- check 14: owner references ----------------------------------------------------------------------

def test_background_cascade(core: Any, custom: Any) -> None:
    _, children = owner_with_children(core, custom, "gc-bg")
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "gc-bg",
                                           body={"propagationPolicy": "Background"})
    eventually(lambda: not any(exists(core.read_namespaced_pod, c, "default") for c in children))


@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_kubectl_cascades(cluster: Cluster, core: Any, custom: Any, kubectl: str) -> None:
    suffix = abs(hash(kubectl)) % 1000
    fg, fg_children = owner_with_children(core, custom, f"gc-fg-{suffix}")
    # a finalizer on one child keeps the foreground owner visible with foregroundDeletion
    core.patch_namespaced_pod(fg_children[0], "default", {"metadata": {"finalizers": ["example.com/hold"]}})
    cluster.kubectl(kubectl, "delete", "kex", fg["metadata"]["name"], "--cascade=foreground", "--wait=false")
    eventually(lambda: bool(core.read_namespaced_pod(fg_children[0], "default").metadata.deletion_timestamp))
    owner = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, fg["metadata"]["name"])
    assert "foregroundDeletion" in owner["metadata"]["finalizers"] and owner["metadata"]["deletionTimestamp"]
    assert not exists(core.read_namespaced_pod, fg_children[1], "default")
    core.patch_namespaced_pod(fg_children[0], "default", [{"op": "remove", "path": "/metadata/finalizers"}])
    eventually(lambda: not exists(custom.get_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                                  fg["metadata"]["name"]))

    orphan, orphan_children = owner_with_children(core, custom, f"gc-or-{suffix}")
    cluster.kubectl(kubectl, "delete", "kex", orphan["metadata"]["name"], "--cascade=orphan")
    assert not exists(custom.get_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                      orphan["metadata"]["name"])
    time.sleep(0.5)
    for child in orphan_children:
        assert core.read_namespaced_pod(child, "default").metadata.owner_references is None
        core.delete_namespaced_pod(child, "default")


def test_dependent_of_missing_owner_is_collected(core: Any) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "stray", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "00000000-0000-0000-0000-000000000000"}]}})
    eventually(lambda: not exists(core.read_namespaced_config_map, "stray", "default"))


def test_delete_preconditions(core: Any) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "pre"}})
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map("pre", "default", body=kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid="wrong")))
    assert e.value.status == 409 and "Precondition failed: UID in precondition: wrong" in e.value.body
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map("pre", "default", body=kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(resource_version="1")))
    assert e.value.status == 409
    status = core.delete_namespaced_config_map("pre", "default", body=kubernetes.client.V1DeleteOptions(
        preconditions=kubernetes.client.V1Preconditions(uid=cm.metadata.uid)))
    assert status["kind"] == "Status" and status["status"] == "Success"
    assert status["details"] == {"name": "pre", "kind": "configmaps", "uid": cm.metadata.uid}


# --- pods: graceful deletion -------------------------------------------------------------------------

def test_pod_graceful_deletion(core: Any) -> None:
    core.create_namespaced_pod("default", {"metadata": {"name": "unbound"},
                                           "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    core.delete_namespaced_pod("unbound", "default")
    assert not exists(core.read_namespaced_pod, "unbound", "default")
    core.create_namespaced_pod("default", {"metadata": {"name": "bound"}, "spec": {
        "nodeName": "n1", "terminationGracePeriodSeconds": 12, "containers": [{"name": "c", "image": "x:1"}]}})
    returned = core.delete_namespaced_pod("bound", "default")
    assert returned.metadata.deletion_grace_period_seconds == 12
    shorter = core.delete_namespaced_pod("bound", "default", grace_period_seconds=5)
    assert shorter.metadata.deletion_grace_period_seconds == 5
    assert shorter.metadata.deletion_timestamp < returned.metadata.deletion_timestamp
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_pod("bound", "default", body=kubernetes.client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=kubernetes.client.V1Preconditions(uid="other")))
    assert e.value.status == 409
    core.delete_namespaced_pod("bound", "default", body=kubernetes.client.V1DeleteOptions(
        grace_period_seconds=0, preconditions=kubernetes.client.V1Preconditions(uid=returned.metadata.uid)))
    assert not exists(core.read_namespaced_pod, "bound", "default")


# --- check 15: namespaces ----------------------------------------------------------------------------

@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_namespace_lifecycle(cluster: Cluster, core: Any, kubectl: str) -> None:
    ns = f"doomed-{abs(hash(kubectl)) % 1000}"
    cluster.kubectl(kubectl, "apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n")
    assert [s.metadata.name for s in core.list_namespaced_service_account(ns).items] == ["default"]
    core.create_namespaced_config_map(ns, {"metadata": {"name": "c1", "finalizers": ["example.com/hold"]}})
    cluster.kubectl(kubectl, "delete", "namespace", ns, "--wait=false")
    assert core.read_namespace(ns).status.phase == "Terminating"
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "c2"}})
    assert e.value.status == 403
    assert json.loads(e.value.body)["message"] == (f'configmaps "c2" is forbidden: unable to create new content in '
                                                   f'namespace {ns} because it is being terminated')
    core.patch_namespaced_config_map("c1", ns, {"metadata": {"$deleteFromPrimitiveList/finalizers":
                                                             ["example.com/hold"]}})
    eventually(lambda: not exists(core.read_namespace, ns))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "c3"}})
    assert e.value.status == 404 and json.loads(e.value.body)["message"] == f'namespaces "{ns}" not found'
    bad = cluster.kubectl(kubectl, "apply", "-n", "missing-ns", "-f", "-", check=False,
                          input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    assert bad.returncode == 1 and 'namespaces "missing-ns" not found' in bad.stderr


def test_crd_deletion_cascades_to_custom_resources(cluster: Cluster, core: Any) -> None:
    from .conftest import CRD_MANIFEST
    manifest = CRD_MANIFEST.replace("kopf.dev", "doomed.example.com").replace("KopfExample", "Doomed") \
        .replace("kopfexamples", "dooms").replace("kopfexample", "doom").replace("[kex]", "[dm]")
    kubectl = str(kubectl_binaries()[0].values[0])
    cluster.kubectl(kubectl, "apply", "-f", "-", input=manifest)
    cluster.kubectl(kubectl, "apply", "-f", "-", input="apiVersion: doomed.example.com/v1\nkind: Doomed\n"
                                                       "metadata: {name: d1}\nspec: {}\n")
    cluster.kubectl(kubectl, "delete", "crd", "dooms.doomed.example.com", "--timeout=20s")
    assert cluster.kubectl(kubectl, "get", "crd", "dooms.doomed.example.com", check=False).returncode == 1
    custom = kubernetes.client.CustomObjectsApi(cluster.api_client())
    with pytest.raises(ApiException) as e:
        custom.list_namespaced_custom_object("doomed.example.com", "v1", "default", "dooms")
    assert e.value.status == 404


def test_terminating_pod_on_missing_node_is_collected_after_grace(core: Any) -> None:
    core.create_namespaced_pod("default", {"metadata": {"name": "nodeless"}, "spec": {
        "nodeName": "no-such-node", "terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "x"}]}})
    core.delete_namespaced_pod("nodeless", "default")
    assert core.read_namespaced_pod("nodeless", "default").metadata.deletion_timestamp
    eventually(lambda: not exists(core.read_namespaced_pod, "nodeless", "default"), timeout=15)
