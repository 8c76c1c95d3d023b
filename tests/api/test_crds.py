"""crds/ is generated from tmd.api; this keeps the two from drifting."""

from pathlib import Path

import yaml

from tmd.api.crds import deployment_crd, render_all, trained_model_crd

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_directory_matches_the_models():
    rendered = render_all()
    on_disk = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    assert on_disk == rendered, "crds/ is stale: run `python -m tmd.api.crds crds/`"


def _walk(schema, path="spec"):
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def test_schemas_are_structural():
    for crd in (deployment_crd(), trained_model_crd()):
        root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, schema in _walk(root):
            assert "$ref" not in schema and "anyOf" not in schema, path
            assert "type" in schema or schema.get("x-kubernetes-preserve-unknown-fields"), path


def test_deployment_crd_has_short_name_status_and_rules():
    crd = deployment_crd()
    assert crd["spec"]["names"]["shortNames"] == ["tmd"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["priority"]["enum"] == ["normal", "low"]
    messages = [rule["message"] for rule in spec["x-kubernetes-validations"]]
    assert "[number_of_allocations] must be 1 when [priority] is low" in messages
    assert yaml.safe_load(render_all()["trainedmodeldeployments.yaml"]) == crd


def test_kubectl_apply_of_the_crds_directory_sees_only_crds():
    """`kubectl apply -f crds/` reads *.yaml, *.yml and *.json: each must be a CRD."""
    for path in CRDS.iterdir():
        if path.suffix in (".yaml", ".yml", ".json"):
            assert yaml.safe_load(path.read_text())["kind"] == "CustomResourceDefinition", path
