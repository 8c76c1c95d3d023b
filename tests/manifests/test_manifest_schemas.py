"""Every manifest, as kustomize builds it, against the Kubernetes schemas (strict: unknown fields
are errors), and the custom resources against the CRDs tmd generates."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.manifests.kustomize import KUSTOMIZATIONS, MANIFESTS, REPO, build
from tmd.api.deployment import DeploymentSpec
from tmd.api.trained_model_resource import TrainedModelSpec

# The oldest Kubernetes that serves pods/resize (in-place resize), which the operator uses.
KUBERNETES_VERSION = "1.33.0"
CUSTOM_KINDS = {"TrainedModel", "TrainedModelDeployment"}


def builtin_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{path}:{d['kind']}/{d['metadata']['name']}", d)
            for path in KUSTOMIZATIONS for d in build(path) if d["kind"] not in CUSTOM_KINDS]


@pytest.mark.parametrize("doc", [d for _, d in builtin_docs()], ids=[i for i, _ in builtin_docs()])
def test_builtin_resources_are_valid_for_kubernetes_strictly(doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_an_unknown_field():
    """Guards the test above: strict validation must fail on a field Kubernetes does not know."""
    deployment = copy.deepcopy(next(d for d in build("base") if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_base_holds_the_generated_crds_unchanged():
    crds = {d["metadata"]["name"]: d for d in build("base") if d["kind"] == "CustomResourceDefinition"}
    generated = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        generated[doc["metadata"]["name"]] = doc
    labels = {"app.kubernetes.io/part-of": "tmd"}  # the only thing the base adds
    for doc in generated.values():
        doc["metadata"].setdefault("labels", {}).update(labels)
    assert crds == generated


def test_crds_kustomization_lists_every_generated_crd():
    kustomization = yaml.safe_load((REPO / "crds" / "Kustomization").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in (REPO / "crds").glob("*.yaml"))


def _strict_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 structural schema as JSON Schema that rejects unknown fields (as kubectl's
    --validate=strict does, where the API server would otherwise prune them)."""
    out = copy.deepcopy(schema)

    def walk(node: dict[str, Any]) -> None:
        if node.pop("nullable", False) and "type" in node:
            node["type"] = [node["type"], "null"]
        if "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for sub in node.get("properties", {}).values():
            walk(sub)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key])

    walk(out)
    return out


def crd_schema(kind: str) -> dict[str, Any]:
    crd = next(d for d in build("base") if d["kind"] == "CustomResourceDefinition"
               and d["spec"]["names"]["kind"] == kind)
    return _strict_json_schema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def test_examples_are_valid_against_their_crds_and_tmd_api():
    examples = build("examples")
    assert sorted(d["kind"] for d in examples) == ["TrainedModel", "TrainedModelDeployment", "TrainedModelDeployment"]
    for doc in examples:
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
        jsonschema.validate(body, crd_schema(doc["kind"]))
        if doc["kind"] == "TrainedModel":
            spec = TrainedModelSpec.model_validate(doc["spec"])
            assert spec.definition is not None and spec.definition.uri.startswith("https://")
            assert spec.definition.total_definition_length  # fully defined: the operator deploys it
        else:
            spec = DeploymentSpec.model_validate(doc["spec"])
            assert spec.validation_errors() == []
    priorities = sorted(d["spec"]["priority"] for d in examples if d["kind"] == "TrainedModelDeployment")
    assert priorities == ["low", "normal"]


def test_the_strict_crd_schema_rejects_an_unknown_field():
    with pytest.raises(jsonschema.ValidationError, match="threads_per_alocation"):
        jsonschema.validate({"spec": {"model_id": "m", "threads_per_alocation": 2}},
                            crd_schema("TrainedModelDeployment"))


def test_argocd_application_points_at_the_base():
    app = yaml.safe_load((MANIFESTS / "argocd" / "application.yaml").read_text())
    assert app["kind"] == "Application" and app["apiVersion"] == "argoproj.io/v1alpha1"
    source = app["spec"]["source"]
    assert (REPO / source["path"] / "kustomization.yaml").exists()
    namespace = next(d for d in build("base") if d["kind"] == "Namespace")["metadata"]["name"]
    assert app["spec"]["destination"]["namespace"] == namespace
