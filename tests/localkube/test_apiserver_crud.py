"""CRUD semantics, patches, status subresource, CRD schemas and bad input (§8 checks 4–8)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiException

from .conftest import Cluster, kubectl_binaries

GROUP, VERSION, PLURAL = "kopf.dev", "v1", "kopfexamples"


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Any:
    return cluster.api_client()


@pytest.fixture(scope="module")
def core(api: Any) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api)


@pytest.fixture(scope="module")
def custom(api: Any, example_crd: str) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api)


def cr(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kopf.dev/v1", "kind": "KopfExample", "metadata": {"name": name}, "spec": spec}


def raw(cluster: Cluster, method: str, path: str, body: bytes | None = None,
        content_type: str = "application/json") -> tuple[int, dict[str, Any], dict[str, str]]:
    req = urllib.request.Request(cluster.server.url + path, data=body, method=method,
                                 headers={"Content-Type": content_type} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as e:
        assert e.headers.get("Content-Type") == "application/json"
        return e.code, json.loads(e.read()), dict(e.headers)


def status_of(e: ApiException) -> dict[str, Any]:
    body = json.loads(e.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == e.status
    return body


# --- check 4: identity ----------------------------------------------------------------------------

@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_create_sets_identity_and_recreate_fails(cluster: Cluster, example_crd: str, kubectl: str) -> None:
    name = f"ident-{abs(hash(kubectl)) % 1000}"
    manifest = f"apiVersion: kopf.dev/v1\nkind: KopfExample\nmetadata: {{name: {name}}}\nspec: {{field: a}}\n"
    cluster.kubectl(kubectl, "create", "-f", "-", input=manifest)
    obj = json.loads(cluster.kubectl(kubectl, "get", "kex", name, "-o", "json").stdout)
    meta = obj["metadata"]
    assert meta["uid"] and meta["generation"] == 1 and isinstance(meta["resourceVersion"], str)
    assert meta["creationTimestamp"].endswith("Z") and len(meta["creationTimestamp"]) == 20
    again = cluster.kubectl(kubectl, "create", "-f", "-", input=manifest, check=False)
    assert again.returncode == 1
    assert f'kopfexamples.kopf.dev "{name}" already exists' in again.stderr and "AlreadyExists" in again.stderr
    cluster.kubectl(kubectl, "delete", "kex", name)


def test_resource_versions_increase_and_generate_name(custom: Any) -> None:
    a = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL,
                                               {**cr(""), "metadata": {"generateName": "gen-"}})
    b = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL,
                                               {**cr(""), "metadata": {"generateName": "gen-"}})
    assert a["metadata"]["name"].startswith("gen-") and len(a["metadata"]["name"]) == 9
    assert a["metadata"]["name"] != b["metadata"]["name"]
    assert int(b["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
    lst = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert int(lst["metadata"]["resourceVersion"]) >= int(b["metadata"]["resourceVersion"])
    for o in (a, b):
        custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, o["metadata"]["name"])


# --- check 5: generation and the status subresource ----------------------------------------------

@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_generation_rules(cluster: Cluster, custom: Any, kubectl: str) -> None:
    name = f"gen-rules-{abs(hash(kubectl)) % 1000}"
    manifest = f"apiVersion: kopf.dev/v1\nkind: KopfExample\nmetadata: {{name: {name}}}\nspec: {{field: a}}\n"
    cluster.kubectl(kubectl, "apply", "-f", "-", input=manifest)
    cluster.kubectl(kubectl, "apply", "-f", "-", input=manifest.replace("field: a", "field: b"))
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    assert obj["metadata"]["generation"] == 2 and obj["spec"]["field"] == "b"
    cluster.kubectl(kubectl, "patch", "kex", name, "--subresource=status", "--type=merge",
                    "-p", '{"status":{"phase":"Ready"}}')
    obj = custom.patch_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, name,
                                                       {"status": {"observedGeneration": 2}})
    assert obj["metadata"]["generation"] == 2
    assert obj["status"] == {"phase": "Ready", "observedGeneration": 2}
    # status in the main endpoint is ignored; metadata through /status is ignored
    obj = custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name,
                                                {"status": {"phase": "Hacked"}})
    assert obj["status"]["phase"] == "Ready" and obj["metadata"]["generation"] == 2
    obj = custom.patch_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, name,
                                                       {"metadata": {"labels": {"x": "y"}}, "spec": {"field": "z"}})
    assert "labels" not in obj["metadata"] and obj["spec"]["field"] == "b"
    # metadata-only changes do not bump generation
    obj = custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name,
                                                {"metadata": {"annotations": {"a": "b"}}})
    assert obj["metadata"]["generation"] == 2
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)


def test_noop_patch_keeps_resource_version(custom: Any) -> None:
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, cr("noop", field="a"))
    same = custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "noop", {"spec": {"field": "a"}})
    assert same["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "noop")


# --- check 6: optimistic concurrency and patch types ---------------------------------------------

def test_replace_with_stale_or_missing_resource_version(custom: Any) -> None:
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, cr("occ", field="a"))
    stale = dict(obj, spec={"field": "b"})
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "occ", {"spec": {"field": "c"}})
    with pytest.raises(ApiException) as e:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "occ", stale)
    body = status_of(e.value)
    assert e.value.status == 409 and body["reason"] == "Conflict"
    assert body["message"] == ('Operation cannot be fulfilled on kopfexamples.kopf.dev "occ": the object has been '
                               'modified; please apply your changes to the latest version and try again')
    no_rv = dict(obj, metadata={"name": "occ"}, spec={"field": "d"})
    with pytest.raises(ApiException) as e:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "occ", no_rv)
    body = status_of(e.value)
    assert e.value.status == 422 and body["reason"] == "Invalid"
    assert "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update" in body["message"]
    assert custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "occ")["spec"]["field"] == "c"
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "occ")


def test_json_patch_test_failure_and_smp_on_cr(core: Any, custom: Any) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "jp"}, "data": {"a": "1"}})
    pod = core.create_namespaced_pod("default", {"metadata": {"name": "jp-pod"},
                                                 "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_pod("jp-pod", "default", [{"op": "test", "path": "/metadata/resourceVersion",
                                                         "value": "1"}, {"op": "add", "path": "/metadata/labels",
                                                                         "value": {"a": "b"}}])
    assert e.value.status == 422 and status_of(e.value)["reason"] == "Invalid"
    assert core.read_namespaced_pod("jp-pod", "default").metadata.labels is None
    ok = core.patch_namespaced_pod("jp-pod", "default", [
        {"op": "test", "path": "/metadata/resourceVersion", "value": pod.metadata.resource_version},
        {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
        {"op": "copy", "from": "/metadata/labels/a", "path": "/metadata/labels/c"},
        {"op": "move", "from": "/metadata/labels/c", "path": "/metadata/labels/d"},
        {"op": "replace", "path": "/metadata/labels/a", "value": "z"},
        {"op": "remove", "path": "/metadata/labels/d"}])
    assert ok.metadata.labels == {"a": "z"}
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, cr("smp", field="a"))
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "smp", {"spec": {"field": "b"}},
                                              _content_type="application/strategic-merge-patch+json")
    assert e.value.status == 415 and status_of(e.value)["reason"] == "UnsupportedMediaType"
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "smp")
    core.delete_namespaced_pod("jp-pod", "default")
    core.delete_namespaced_config_map("jp", "default")


# --- check 7: kubectl apply on pods (SMP) and server-side apply -------------------------------------

POD = """\
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: web}}}}
spec:
  containers:
  - name: main
    image: {image}
    command: [sleep, "100"]
    env: [{{name: A, value: "1"}}]
"""


@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_kubectl_apply_pod_twice_merges_containers_by_name(cluster: Cluster, core: Any, kubectl: str) -> None:
    name = f"apply-pod-{abs(hash(kubectl)) % 1000}"
    cluster.kubectl(kubectl, "apply", "-f", "-", input=POD.format(name=name, image="img:1"))
    cluster.kubectl(kubectl, "apply", "-f", "-", input=POD.format(name=name, image="img:2"))
    pod = core.read_namespaced_pod(name, "default")
    assert [c.name for c in pod.spec.containers] == ["main"]
    assert pod.spec.containers[0].image == "img:2" and pod.spec.containers[0].env[0].value == "1"
    assert pod.metadata.generation == 2
    # a changed command is immutable on a real server too
    changed = POD.format(name=name, image="img:2").replace('"100"', '"200"')
    bad = cluster.kubectl(kubectl, "apply", "-f", "-", input=changed, check=False)
    assert bad.returncode == 1 and "spec: Forbidden: pod updates may not change fields" in bad.stderr
    # server-side apply twice is idempotent
    ssa = cluster.kubectl(kubectl, "apply", "--server-side", "-f", "-", input=POD.format(name=name, image="img:3"))
    assert "serverside-applied" in ssa.stdout
    rv = core.read_namespaced_pod(name, "default").metadata.resource_version
    cluster.kubectl(kubectl, "apply", "--server-side", "-f", "-", input=POD.format(name=name, image="img:3"))
    pod = core.read_namespaced_pod(name, "default")
    assert pod.metadata.resource_version == rv and pod.spec.containers[0].image == "img:3"
    core.delete_namespaced_pod(name, "default")


def test_server_side_apply_creates_missing_object(cluster: Cluster, custom: Any) -> None:
    status, body, _ = raw(cluster, "PATCH", "/apis/kopf.dev/v1/namespaces/default/kopfexamples/ssa-new"
                          "?fieldManager=test", json.dumps(cr("ssa-new", field="x")).encode(),
                          "application/apply-patch+yaml")
    assert status == 201 and body["spec"] == {"field": "x", "replicas": 1}
    status, body, _ = raw(cluster, "PATCH", "/apis/kopf.dev/v1/namespaces/default/kopfexamples/ssa-new",
                          b"spec: {field: y}\n", "application/apply-patch+yaml")
    assert status == 400 and "fieldManager" in body["message"]
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "ssa-new")


def test_strategic_merge_patch_merges_by_key(core: Any) -> None:
    core.create_namespaced_pod("default", {"metadata": {"name": "smp-pod", "finalizers": ["a.io/x"]},
                                           "spec": {"containers": [{"name": "a", "image": "x:1"}]}})
    core.patch_namespaced_pod_status("smp-pod", "default", {"status": {"conditions": [
        {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]}})
    pod = core.patch_namespaced_pod_status("smp-pod", "default", {"status": {"conditions": [
        {"type": "Ready", "status": "True"}]}})
    assert [(c.type, c.status) for c in pod.status.conditions] == [("PodScheduled", "True"), ("Ready", "True")]
    pod = core.patch_namespaced_pod("smp-pod", "default", {"metadata": {"finalizers": ["b.io/y"]}})
    assert pod.metadata.finalizers == ["a.io/x", "b.io/y"]
    pod = core.patch_namespaced_pod("smp-pod", "default", {"metadata": {"$deleteFromPrimitiveList/finalizers":
                                                                        ["a.io/x", "b.io/y"]}})
    assert pod.metadata.finalizers is None
    pod = core.patch_namespaced_pod("smp-pod", "default", {"spec": {"containers": [{"name": "a", "image": "x:2"}]}})
    assert [(c.name, c.image) for c in pod.spec.containers] == [("a", "x:2")]
    core.delete_namespaced_pod("smp-pod", "default")


# --- check 8: CRD structural schema ---------------------------------------------------------------

def test_schema_validation_defaulting_pruning(cluster: Cluster, custom: Any) -> None:
    with pytest.raises(ApiException) as e:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, cr("typed", replicas="three"))
    body = status_of(e.value)
    assert e.value.status == 422 and body["reason"] == "Invalid"
    assert body["message"] == ('KopfExample.kopf.dev "typed" is invalid: spec.replicas: Invalid value: "string": '
                               'spec.replicas in body must be of type integer: "string"')
    assert body["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                                          "message": 'Invalid value: "string": spec.replicas in body must be of '
                                                     'type integer: "string"'}]
    assert body["details"]["group"] == "kopf.dev" and body["details"]["kind"] == "KopfExample"
    with pytest.raises(ApiException) as e:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, cr("typed", replicas=-1,
                                                                                      mode="medium"))
    causes = {c["field"]: c for c in status_of(e.value)["details"]["causes"]}
    assert causes["spec.replicas"]["message"] == ("Invalid value: -1: spec.replicas in body should be greater "
                                                  "than or equal to 0")
    assert causes["spec.mode"]["reason"] == "FieldValueNotSupported"
    assert causes["spec.mode"]["message"] == 'Unsupported value: "medium": supported values: "fast", "slow"'
    with pytest.raises(ApiException):
        custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "typed")
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL,
                                                 {**cr("typed", field="f", unknown=1), "extra": {"a": 1}})
    assert obj["spec"] == {"field": "f", "replicas": 1} and "extra" not in obj
    out = cluster.kubectl(str(kubectl_binaries()[0].values[0]), "get", "kex", "typed", "-o", "yaml").stdout
    assert "replicas: 1" in out
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "typed")


# --- bad input: status code, Status object, state unchanged ----------------------------------------

def test_malformed_bodies(cluster: Cluster, custom: Any) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, cr("bad-input", field="a"))
    before = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "bad-input")
    base = "/apis/kopf.dev/v1/namespaces/default/kopfexamples"
    status, body, _ = raw(cluster, "POST", base, b'{"apiVersion": "kopf.dev/v1", "kind": ')
    assert status == 400 and body["reason"] == "BadRequest" and "json parse error" in body["message"]
    status, body, _ = raw(cluster, "POST", base, b"metadata: {name: [", "application/yaml")
    assert status == 400 and body["reason"] == "BadRequest"
    status, body, _ = raw(cluster, "PATCH", base + "/bad-input", b"{not json", "application/merge-patch+json")
    assert status == 400 and body["reason"] == "BadRequest"
    status, body, _ = raw(cluster, "PATCH", base + "/bad-input", b'{"op": "add"}', "application/json-patch+json")
    assert status == 400 and body["reason"] == "BadRequest"
    status, body, _ = raw(cluster, "PATCH", base + "/bad-input", b"{}", "text/plain")
    assert status == 415 and body["reason"] == "UnsupportedMediaType"
    status, body, _ = raw(cluster, "PUT", base + "/bad-input", json.dumps(
        {**before, "metadata": {**before["metadata"], "resourceVersion": "1"}, "spec": {"field": "x"}}).encode())
    assert status == 409 and body["reason"] == "Conflict"
    after = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "bad-input")
    assert after == before
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "bad-input")


def test_strict_warn_ignore_field_validation(cluster: Cluster, core: Any) -> None:
    base = "/api/v1/namespaces/default/configmaps"
    body = json.dumps({"metadata": {"name": "fv"}, "data": {"a": "b"}, "bogus": 1}).encode()
    status, out, _ = raw(cluster, "POST", base + "?fieldValidation=Strict", body)
    assert status == 400 and out["message"] == 'strict decoding error: unknown field "bogus"'
    status, out, headers = raw(cluster, "POST", base + "?fieldValidation=Warn", body)
    assert status == 201 and "bogus" not in out
    assert headers["Warning"] == '299 - "unknown field \\"bogus\\""'
    dup = b'{"metadata": {"name": "fv2"}, "data": {"a": "b"}, "data": {"c": "d"}}'
    status, out, _ = raw(cluster, "POST", base + "?fieldValidation=Strict", dup)
    assert status == 400 and out["message"] == 'strict decoding error: duplicate field "data"'
    status, out, _ = raw(cluster, "POST", base + "?fieldValidation=Ignore", dup)
    assert status == 201 and out["data"] == {"c": "d"}
    status, out, _ = raw(cluster, "POST", base + "?fieldValidation=Sloppy", body)
    assert status == 400
    core.delete_namespaced_config_map("fv", "default")
    core.delete_namespaced_config_map("fv2", "default")


@pytest.mark.parametrize("name,message", [
    ("Upper", 'ConfigMap "Upper" is invalid: metadata.name: Invalid value: "Upper": a lowercase RFC 1123 subdomain'),
    ("a_b", 'ConfigMap "a_b" is invalid: metadata.name: Invalid value: "a_b": a lowercase RFC 1123 subdomain'),
])
def test_invalid_names(core: Any, name: str, message: str) -> None:
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("default", {"metadata": {"name": name}})
    assert e.value.status == 422 and status_of(e.value)["message"].startswith(message)


def test_invalid_labels_and_namespace_names(core: Any) -> None:
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("default", {"metadata": {"name": "lbl", "labels": {"a": "-bad-"}}})
    assert e.value.status == 422 and "metadata.labels: Invalid value: \"-bad-\"" in status_of(e.value)["message"]
    with pytest.raises(ApiException) as e:
        core.create_namespace({"metadata": {"name": "a.b"}})
    assert e.value.status == 422 and "a lowercase RFC 1123 label" in status_of(e.value)["message"]
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("lbl", "default")
    assert e.value.status == 404
    assert status_of(e.value)["message"] == 'configmaps "lbl" not found'
    assert status_of(e.value)["details"] == {"name": "lbl", "kind": "configmaps"}


def test_unconditional_update_allowed_for_builtins_and_lease_lock(core: Any, api: Any) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "uu"}, "data": {"a": "1"}})
    cm = core.replace_namespaced_config_map("uu", "default", {"metadata": {"name": "uu"}, "data": {"a": "2"}})
    assert cm.data == {"a": "2"}
    coord = kubernetes.client.CoordinationV1Api(api)
    lease = coord.create_namespaced_lease("default", {"metadata": {"name": "lock"}, "spec": {
        "holderIdentity": "me", "leaseDurationSeconds": 15, "renewTime": "2026-01-01T10:00:00.5+02:00"}})
    assert lease.spec.renew_time.isoformat() == "2026-01-01T08:00:00.500000+00:00"
    with pytest.raises(ApiException) as e:
        coord.create_namespaced_lease("default", {"metadata": {"name": "lock"}})
    assert e.value.status == 409 and status_of(e.value)["reason"] == "AlreadyExists"
    lease.spec.holder_identity = "you"
    coord.replace_namespaced_lease("lock", "default", lease)
    with pytest.raises(ApiException) as e:
        coord.replace_namespaced_lease("lock", "default", lease)
    assert e.value.status == 409 and status_of(e.value)["reason"] == "Conflict"
    coord.delete_namespaced_lease("lock", "default")
    core.delete_namespaced_config_map("uu", "default")


@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_kubectl_create_typed_objects_sent_as_protobuf(cluster: Cluster, core: Any, kubectl: str) -> None:
    suffix = abs(hash(kubectl)) % 1000
    ns = f"proto-{suffix}"
    cluster.kubectl(kubectl, "create", "namespace", ns)
    cluster.kubectl(kubectl, "create", "configmap", "cm", "-n", ns, "--from-literal=a=b", "--from-literal=c=d")
    cluster.kubectl(kubectl, "create", "secret", "generic", "s", "-n", ns, "--from-literal=k=v")
    cluster.kubectl(kubectl, "create", "serviceaccount", "robot", "-n", ns)
    cluster.kubectl(kubectl, "create", "priorityclass", f"pc-{suffix}", "--value=7", "--description=d")
    assert core.read_namespace(ns).status.phase == "Active"
    assert core.read_namespaced_config_map("cm", ns).data == {"a": "b", "c": "d"}
    assert core.read_namespaced_secret("s", ns).data == {"k": "dg=="}
    assert core.read_namespaced_service_account("robot", ns).metadata.name == "robot"
    sched = kubernetes.client.SchedulingV1Api(cluster.api_client())
    assert sched.read_priority_class(f"pc-{suffix}").value == 7
    sched.delete_priority_class(f"pc-{suffix}")
    core.delete_namespace(ns)


@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_scale_subresource(cluster: Cluster, api: Any, kubectl: str) -> None:
    import yaml
    from .conftest import CRD_MANIFEST
    suffix = abs(hash(kubectl)) % 1000
    group = f"scale{suffix}.example.com"
    crd = yaml.safe_load(CRD_MANIFEST.replace("kopf.dev", group).replace("[kex]", f"[sc{suffix}]"))
    crd["spec"]["versions"][0]["subresources"]["scale"] = {
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}
    kubernetes.client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    custom = kubernetes.client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(group, "v1", "default", PLURAL, {
        "apiVersion": f"{group}/v1", "kind": "KopfExample", "metadata": {"name": "s1"}, "spec": {"replicas": 2}})
    scale = custom.get_namespaced_custom_object_scale(group, "v1", "default", PLURAL, "s1")
    assert scale["kind"] == "Scale" and scale["spec"] == {"replicas": 2} and scale["status"] == {"replicas": 0}
    cluster.kubectl(kubectl, "scale", f"kopfexamples.{group}/s1", "--replicas=5")
    obj = custom.get_namespaced_custom_object(group, "v1", "default", PLURAL, "s1")
    assert obj["spec"]["replicas"] == 5 and obj["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object_scale(group, "v1", "default", PLURAL, "s1",
                                                    {"spec": {"replicas": -1}})
    assert e.value.status == 422
    kubernetes.client.ApiextensionsV1Api(api).delete_custom_resource_definition(f"kopfexamples.{group}")


@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_kubectl_strict_validation_of_builtin(cluster: Cluster, core: Any, kubectl: str) -> None:
    manifest = ("apiVersion: v1\nkind: Pod\nmetadata: {name: strict-pod}\n"
                "spec:\n  containers: [{name: c, image: i, bogus: 1}]\n")
    bad = cluster.kubectl(kubectl, "apply", "-f", "-", input=manifest, check=False)
    assert bad.returncode == 1
    assert 'strict decoding error: unknown field "spec.containers[0].bogus"' in bad.stderr
    with pytest.raises(ApiException):
        core.read_namespaced_pod("strict-pod", "default")
