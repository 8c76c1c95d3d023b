"""The shim's Deployment and Role against the shim's code: its settings parsed from the manifest's
environment, and its Role equal to the requests ShimKube makes. Skipped until `tmd shim` (branch
shim) is merged."""

from __future__ import annotations

import argparse
import inspect
import re

import pytest

from tests.manifests.apirecorder import granted, permission, recording_api
from tests.manifests.kustomize import build, env_of, find

shim_main = pytest.importorskip("tmd.shim.main", reason="`tmd shim` is not on this branch yet (branch shim)")
shim_kube = pytest.importorskip("tmd.shim.kube", reason="`tmd shim` is not on this branch yet (branch shim)")


def shim_deployment():
    return find(build("base"), "Deployment", "tmd-shim")


def manifest_env() -> dict[str, str]:
    """The container's environment as the kubelet sets it (fieldRefs resolved)."""
    deployment = shim_deployment()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return env_of(container, namespace=deployment["metadata"]["namespace"])


def test_every_variable_is_one_the_shim_reads():
    read = set(re.findall(r'env\("(TMD_[A-Z_]+)"', inspect.getsource(shim_main.add_arguments)))
    assert set(manifest_env()) <= read, sorted(set(manifest_env()) - read)


def test_shim_settings_from_the_manifest(monkeypatch):
    for name, value in manifest_env().items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    shim_main.add_arguments(parser)
    container = shim_deployment()["spec"]["template"]["spec"]["containers"][0]
    args = parser.parse_args(container["args"][1:])
    assert container["args"][0] == "shim"
    assert args.host == "0.0.0.0" and args.port == container["ports"][0]["containerPort"] == 9200
    assert args.namespace == "tmd-system"
    assert args.store in {m["mountPath"] for m in container["volumeMounts"]}
    assert args.auth_secret == "tmd-shim-auth" and not args.no_auth
    assert args.store_uri_base.startswith("http://tmd-shim.tmd-system.svc:")


def test_shim_role_grants_exactly_what_shimkube_calls():
    """The namespaced calls against the Role, the two cluster-wide lists (ML node capacity for
    `_ml/info` and `_ml/memory/_stats`) against the ClusterRole."""
    resources = build("base")
    role = find(resources, "Role", "tmd-shim")
    cluster_role = find(resources, "ClusterRole", "tmd-shim")
    spec = {"model_id": "m", "deployment_id": "m"}
    endpoint = {"inference_id": "e", "task_type": "text_embedding"}
    with recording_api() as (api, requests):
        kube = shim_kube.ShimKube("tmd-system", api)
        calls = {name for name in vars(shim_kube.ShimKube) if not name.startswith("_")}
        assert calls == {"list_models", "get_model", "create_model", "patch_model_spec", "delete_model",
                         "list_deployments", "get_deployment", "create_deployment", "patch_deployment_spec",
                         "delete_deployment", "list_worker_pods", "list_events", "read_secret",
                         "list_inference_endpoints", "get_inference_endpoint", "create_inference_endpoint",
                         "patch_inference_endpoint", "delete_inference_endpoint", "list_nodes", "list_all_pods"}, \
            "ShimKube has a new call: exercise it here and grant it in manifests/base/shim-rbac.yaml"
        kube.list_models(), kube.get_model("m"), kube.create_model(spec), kube.patch_model_spec("m", spec)
        kube.delete_model("m"), kube.list_deployments(), kube.get_deployment("m"), kube.create_deployment(spec)
        kube.patch_deployment_spec("m", spec), kube.delete_deployment("m"), kube.list_worker_pods(), kube.list_events()
        kube.read_secret(manifest_env()["TMD_AUTH_SECRET"])
        kube.list_inference_endpoints(), kube.get_inference_endpoint("e"), kube.create_inference_endpoint(endpoint)
        kube.patch_inference_endpoint(endpoint), kube.delete_inference_endpoint("e")
        namespaced = len(requests)
        kube.list_nodes(), kube.list_all_pods()
    assert all("/namespaces/tmd-system/" in path for _, path in requests[:namespaced])
    assert not any("/namespaces/" in path for _, path in requests[namespaced:])
    needed = {permission(method, path) for method, path in requests[:namespaced]}
    assert needed == granted(role)
    assert {permission(method, path) for method, path in requests[namespaced:]} == granted(cluster_role)
    secret_paths = [path for _, path in requests if "/secrets/" in path]
    names = [rule["resourceNames"] for rule in role["rules"] if "resourceNames" in rule]
    assert names == [[path.rsplit("/", 1)[1] for path in secret_paths]]
    binding = find(resources, "ClusterRoleBinding", "tmd-shim")
    assert binding["roleRef"]["name"] == "tmd-shim" and binding["subjects"][0]["name"] == "tmd-shim"
