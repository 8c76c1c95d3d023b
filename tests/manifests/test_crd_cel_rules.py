"""The CRD's CEL rules (x-kubernetes-validations), evaluated with cel-python the way a real API
server applies them: after defaulting, transition rules (those naming oldSelf) on updates only.
localkube does not evaluate CEL yet (test_manifests_localkube.py shows what it does instead)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.manifests.kustomize import build

celpy = pytest.importorskip("celpy", reason="cel-python evaluates the CRD's CEL rules")


def spec_schema() -> dict[str, Any]:
    crd = next(d for d in build("base") if d["kind"] == "CustomResourceDefinition"
               and d["spec"]["names"]["kind"] == "TrainedModelDeployment")
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def refusals(spec: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    schema = spec_schema()
    defaults = {k: p["default"] for k, p in schema["properties"].items() if "default" in p}
    new = {**defaults, **spec}
    env = celpy.Environment()
    messages = []
    for rule in schema["x-kubernetes-validations"]:
        transition = "oldSelf" in rule["rule"]
        if transition and old is None:
            continue
        activation = {"self": celpy.json_to_cel(new)}
        if transition:
            activation["oldSelf"] = celpy.json_to_cel({**defaults, **old})
        if not env.program(env.compile(rule["rule"])).evaluate(activation):
            messages.append(rule["message"])
    return messages


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
