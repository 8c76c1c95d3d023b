"""Discovery, /version, health and OpenAPI (localkube.md §8 checks 1–3)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from .conftest import CRD_MANIFEST, Cluster, kubectl_binaries


def get(cluster: Cluster, path: str, accept: str = "application/json") -> tuple[int, str, bytes]:
    req = urllib.request.Request(cluster.server.url + path, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def test_version_health_and_root(cluster: Cluster) -> None:
    status, ctype, body = get(cluster, "/version")
    assert status == 200 and ctype == "application/json"
    info = json.loads(body)
    assert info["gitVersion"].startswith("v1.33.") and info["major"] == "1" and info["minor"] == "33"
    for path in ("/healthz", "/livez", "/readyz"):
        assert get(cluster, path)[2] == b"ok"
    assert "/api/v1" in json.loads(get(cluster, "/")[2])["paths"]


def test_legacy_discovery_even_when_aggregated_is_preferred(cluster: Cluster) -> None:
    aggregated = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                  "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
    status, ctype, body = get(cluster, "/apis", aggregated)
    assert status == 200 and ctype == "application/json"
    doc = json.loads(body)
    assert doc["kind"] == "APIGroupList"
    groups = {g["name"]: g for g in doc["groups"]}
    assert groups["coordination.k8s.io"]["preferredVersion"]["version"] == "v1"
    assert {"apiextensions.k8s.io", "scheduling.k8s.io"} <= set(groups)
    core = json.loads(get(cluster, "/api/v1")[2])
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods["shortNames"] == ["po"] and pods["categories"] == ["all"] and pods["namespaced"] is True
    assert {"get", "list", "watch", "patch", "create", "delete", "update"} <= set(pods["verbs"])
    subs = {r["name"] for r in core["resources"] if "/" in r["name"]}
    assert {"pods/status", "pods/log", "pods/resize", "pods/binding", "nodes/status", "namespaces/status"} <= subs
    assert get(cluster, "/apis/nothing.example.com/v1")[0] == 404


def test_openapi_v3_index_and_v2_absent(cluster: Cluster) -> None:
    index = json.loads(get(cluster, "/openapi/v3")[2])
    url = index["paths"]["api/v1"]["serverRelativeURL"]
    assert "?hash=" in url
    doc = json.loads(get(cluster, url)[2])
    pod_path = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert pod_path["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert any(p["name"] == "fieldValidation" for p in pod_path["parameters"])
    assert get(cluster, "/openapi/v2")[0] == 404


def test_crd_updates_discovery_and_openapi_hash(cluster: Cluster) -> None:
    before = json.loads(get(cluster, "/openapi/v3")[2])["paths"]
    assert "apis/kopf.dev/v1" not in before
    client = cluster.api_client()
    import kubernetes
    import yaml
    ext = kubernetes.client.ApiextensionsV1Api(client)
    body = yaml.safe_load(CRD_MANIFEST)
    body["metadata"]["name"] = "widgets.disco.example.com"
    body["spec"].update(group="disco.example.com", names={"kind": "Widget", "plural": "widgets",
                                                          "shortNames": ["wd"], "categories": ["all"]})
    crd = ext.create_custom_resource_definition(body)
    conds = {c.type: c.status for c in crd.status.conditions}
    assert conds == {"NamesAccepted": "True", "Established": "True"}
    assert crd.status.accepted_names.kind == "Widget" and crd.status.stored_versions == ["v1"]
    resources = json.loads(get(cluster, "/apis/disco.example.com/v1")[2])["resources"]
    widgets = next(r for r in resources if r["name"] == "widgets")
    assert widgets["shortNames"] == ["wd"] and widgets["categories"] == ["all"] and widgets["singularName"] == "widget"
    assert any(r["name"] == "widgets/status" for r in resources)
    after = json.loads(get(cluster, "/openapi/v3")[2])["paths"]
    assert "apis/disco.example.com/v1" in after
    body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["extra"] = {
        "type": "string"}
    body["metadata"]["resourceVersion"] = crd.metadata.resource_version
    ext.replace_custom_resource_definition("widgets.disco.example.com", body)
    again = json.loads(get(cluster, "/openapi/v3")[2])["paths"]
    assert again["apis/disco.example.com/v1"] != after["apis/disco.example.com/v1"]
    ext.delete_custom_resource_definition("widgets.disco.example.com")
    assert get(cluster, "/apis/disco.example.com/v1")[0] == 404


@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_kubectl_api_resources_and_versions(cluster: Cluster, example_crd: str, kubectl: str) -> None:
    out = cluster.kubectl(kubectl, "api-resources").stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["pods"][1:] == ["po", "v1", "true", "Pod"]
    assert rows["kopfexamples"][1:] == ["kex", "kopf.dev/v1", "true", "KopfExample"]
    assert rows["nodes"][1:] == ["no", "v1", "false", "Node"]
    versions = cluster.kubectl(kubectl, "api-versions").stdout.split()
    assert {"v1", "kopf.dev/v1", "coordination.k8s.io/v1", "apiextensions.k8s.io/v1"} <= set(versions)
    raw = json.loads(cluster.kubectl(kubectl, "get", "--raw", "/version").stdout)
    assert raw["gitVersion"].startswith("v1.33.")


@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_kubectl_apply_crd_wait_established_then_get_by_short_name(cluster: Cluster, kubectl: str) -> None:
    manifest = CRD_MANIFEST.replace("kopf.dev", "short.example.com").replace("KopfExample", "Gadget") \
        .replace("kopfexamples", "gadgets").replace("kopfexample", "gadget").replace("[kex]", "[gdg]")
    cluster.kubectl(kubectl, "apply", "-f", "-", input=manifest)
    cluster.kubectl(kubectl, "wait", "--for=condition=established", "crd/gadgets.short.example.com",
                    "--timeout=10s")
    out = cluster.kubectl(kubectl, "get", "gdg")
    assert "No resources found" in out.stderr
    cluster.kubectl(kubectl, "apply", "-f", "-", input="apiVersion: short.example.com/v1\nkind: Gadget\n"
                                                       "metadata: {name: g1}\nspec: {field: x}\n")
    table = cluster.kubectl(kubectl, "get", "gdg").stdout.splitlines()
    assert table[0].split() == ["NAME", "REPLICAS", "READY"]
    assert table[1].split() == ["g1", "1"]
    cluster.kubectl(kubectl, "delete", "crd", "gadgets.short.example.com")
    assert "gadgets" not in cluster.kubectl(kubectl, "api-resources").stdout


@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_kubectl_strict_validation_of_unknown_field(cluster: Cluster, example_crd: str, kubectl: str) -> None:
    name = "strict-" + str(abs(hash(kubectl)) % 10000)
    manifest = f"apiVersion: kopf.dev/v1\nkind: KopfExample\nmetadata: {{name: {name}}}\n" \
               "spec: {field: v, bogus: 1}\n"
    bad = cluster.kubectl(kubectl, "apply", "-f", "-", input=manifest, check=False)
    assert bad.returncode == 1
    assert 'strict decoding error: unknown field "spec.bogus"' in bad.stderr
    assert cluster.kubectl(kubectl, "get", "kex", name, check=False).returncode == 1
    cluster.kubectl(kubectl, "apply", "--validate=false", "-f", "-", input=manifest)
    spec = json.loads(cluster.kubectl(kubectl, "get", "kex", name, "-o", "json").stdout)["spec"]
    assert spec == {"field": "v", "replicas": 1}
    cluster.kubectl(kubectl, "delete", "kex", name)
