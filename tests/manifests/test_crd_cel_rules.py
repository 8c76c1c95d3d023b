"""The CRD's CEL rules (x-kubernetes-validations) as the built manifests carry them, evaluated by
the same code localkube's API server runs (tmd.localkube.apiserver.cel, over cel-python): after
defaulting, transition rules (those naming oldSelf) on updates only."""

from __future__ import annotations

from typing import Any

import pytest

from tests.manifests.kustomize import build
from tmd.localkube.apiserver import cel


def spec_schema() -> dict[str, Any]:
    crd = next(d for d in build("base") if d["kind"] == "CustomResourceDefinition"
               and d["spec"]["names"]["kind"] == "TrainedModelDeployment")
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def refusals(spec: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    schema = spec_schema()
    defaults = {k: p["default"] for k, p in schema["properties"].items() if "default" in p}
    errors = cel.validate({**defaults, **spec}, schema, {**defaults, **old} if old is not None else None, "spec")
    assert all(e.path == "spec" and e.value == "object" for e in errors)
    return [e.detail for e in errors]


@pytest.mark.parametrize("doc", [d for d in build("examples") if d["kind"] == "TrainedModelDeployment"],
                         ids=lambda d: d["metadata"]["name"])
def test_examples_pass_every_rule(doc):
    assert refusals(doc["spec"]) == []
    assert refusals(doc["spec"], old=doc["spec"]) == []


@pytest.mark.parametrize("spec, messages", [
    ({"threads_per_allocation": 3}, ["[threads_per_allocation] must be a power of 2 less than or equal to 32"]),
    ({"priority": "low", "number_of_allocations": 2}, ["[number_of_allocations] must be 1 when [priority] is low"]),
    ({"priority": "low", "threads_per_allocation": 2}, ["[threads_per_allocation] must be 1 when [priority] is low"]),
    ({"priority": "low", "number_of_allocations": 2, "threads_per_allocation": 3},
     ["[threads_per_allocation] must be a power of 2 less than or equal to 32",
      "[number_of_allocations] must be 1 when [priority] is low",
      "[threads_per_allocation] must be 1 when [priority] is low"]),
])
def test_invalid_combinations_are_refused_on_create(spec, messages):
    assert refusals({"model_id": "m", **spec}) == messages


def test_model_and_deployment_ids_are_immutable():
    old = {"model_id": "m", "deployment_id": "d"}
    assert refusals({"model_id": "m", "deployment_id": "d", "number_of_allocations": 4}, old=old) == []
    assert refusals({"model_id": "other", "deployment_id": "d"}, old=old) == ["[model_id] is immutable"]
    assert refusals({"model_id": "m", "deployment_id": "e"}, old=old) == ["[deployment_id] is immutable"]
    assert refusals({"model_id": "m"}, old=old) == ["[deployment_id] is immutable"]


def test_tmd_batching_delay_is_at_most_one_second():
    """The rule of tmd's batching extension sits on the nested object and is checked with the spec."""
    schema = spec_schema()
    base = {k: p["default"] for k, p in schema["properties"].items() if "default" in p} | {"model_id": "m"}
    for delay in ("0ms", "20ms", "1s"):
        assert cel.validate({**base, "tmd_batching": {"max_batch_delay": delay}}, schema, None, "spec") == []
    errors = cel.validate({**base, "tmd_batching": {"max_batch_delay": "1500ms"}}, schema, None, "spec")
    assert [(e.path, e.detail) for e in errors] == [
        ("spec.tmd_batching", "[tmd_batching.max_batch_delay] must be between 0ms and 1000ms")]
