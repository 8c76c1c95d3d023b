"""Generate the CustomResourceDefinitions under crds/ from the pydantic models of tmd.api.

pydantic writes JSON Schema (with $refs and anyOf-null); Kubernetes wants a *structural*
OpenAPI v3 schema (inline, `nullable`, no $ref). `structural()` does that translation so the
models stay the one definition. Run `python -m tmd.api.crds crds/` to regenerate.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tmd.api import resources as r
from tmd.api.deployment import MAX_THREADS_PER_ALLOCATION, DeploymentSpec
from tmd.api.status import DeploymentStatus
from tmd.api.trained_model_resource import TrainedModelSpec, TrainedModelStatus

_KEEP = {"type", "properties", "items", "required", "enum", "default", "description", "minimum", "maximum",
         "minLength", "maxLength", "pattern", "format", "nullable", "additionalProperties", "minItems",
         "maxItems", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations"}


def structural(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Inline $refs, turn `anyOf: [X, null]` into `X` + `nullable`, drop what CRDs reject."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        nullable = len(options) < len(schema["anyOf"])
        base = structural(options[0], defs) if len(options) == 1 else {"x-kubernetes-preserve-unknown-fields": True}
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        out = {**base, **_clean(rest, defs)}
        if nullable:
            out["nullable"] = True
            if out.get("default", 0) is None:
                del out["default"]
        return out
    out = _clean(schema, defs)
    if "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _clean(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Keep the keywords CRDs accept, recursing into sub-schemas."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _KEEP:
            continue
        if key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = structural(value, defs)
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = structural(value, defs)
        else:
            out[key] = value
    if out.get("x-kubernetes-preserve-unknown-fields") and out.get("type") == "object":
        out.pop("additionalProperties", None)
    if out.get("default", 0) is None:
        del out["default"]
    return out


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return structural(model.model_json_schema(mode="serialization"))


def _crd(kind: str, plural: str, short: str, spec: dict[str, Any], status: dict[str, Any],
         columns: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{r.GROUP}"},
        "spec": {
            "group": r.GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "shortNames": [short],
                      "listKind": f"{kind}List", "categories": ["ml"]},
            "versions": [{
                "name": r.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": spec, "status": status},
                    "required": ["spec"],
                }},
            }],
        },
    }


def deployment_crd() -> dict[str, Any]:
    spec = _schema(DeploymentSpec)
    powers = [2 ** i for i in range(MAX_THREADS_PER_ALLOCATION.bit_length())]
    spec["x-kubernetes-validations"] = [
        {"rule": f"self.threads_per_allocation in {powers}",
         "message": f"[threads_per_allocation] must be a power of 2 less than or equal to {MAX_THREADS_PER_ALLOCATION}"},
        {"rule": "self.priority != 'low' || self.number_of_allocations == 1",
         "message": "[number_of_allocations] must be 1 when [priority] is low"},
        {"rule": "self.priority != 'low' || self.threads_per_allocation == 1",
         "message": "[threads_per_allocation] must be 1 when [priority] is low"},
        {"rule": "self.model_id == oldSelf.model_id", "message": "[model_id] is immutable"},
        {"rule": "has(self.deployment_id) == has(oldSelf.deployment_id) && "
                 "(!has(self.deployment_id) || self.deployment_id == oldSelf.deployment_id)",
         "message": "[deployment_id] is immutable"},
    ]
    spec["properties"]["tmd_batching"]["x-kubernetes-validations"] = [
        {"rule": "!has(self.max_batch_delay) || duration(self.max_batch_delay) <= duration('1s')",
         "message": "[tmd_batching.max_batch_delay] must be between 0ms and 1000ms"}]
    columns = [
        {"name": "Model", "type": "string", "jsonPath": ".spec.model_id"},
        {"name": "Deployment", "type": "string", "jsonPath": ".spec.deployment_id"},
        {"name": "Allocations", "type": "integer", "jsonPath": ".status.allocation_status.allocation_count",
         "description": "Started allocations"},
        {"name": "Target", "type": "integer", "jsonPath": ".spec.number_of_allocations"},
        {"name": "State", "type": "string", "jsonPath": ".status.assignment_state"},
        {"name": "Priority", "type": "string", "jsonPath": ".spec.priority", "priority": 1},
        {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return _crd(r.DEPLOYMENT, r.DEPLOYMENT_PLURAL, "tmd", spec, _schema(DeploymentStatus), columns)


def trained_model_crd() -> dict[str, Any]:
    columns = [
        {"name": "Model", "type": "string", "jsonPath": ".spec.model_id"},
        {"name": "Type", "type": "string", "jsonPath": ".spec.model_type"},
        {"name": "Defined", "type": "boolean", "jsonPath": ".status.fully_defined"},
        {"name": "Size", "type": "integer", "jsonPath": ".status.model_size_bytes"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return _crd(r.TRAINED_MODEL, r.TRAINED_MODEL_PLURAL, "tm", _schema(TrainedModelSpec),
                _schema(TrainedModelStatus), columns)


def render_all() -> dict[str, str]:
    """File name → YAML text of every CRD."""
    header = "# Generated by `python -m tmd.api.crds crds/` from tmd.api; do not edit by hand.\n"
    return {
        f"{r.TRAINED_MODEL_PLURAL}.yaml": header + yaml.safe_dump(trained_model_crd(), sort_keys=False),
        f"{r.DEPLOYMENT_PLURAL}.yaml": header + yaml.safe_dump(deployment_crd(), sort_keys=False),
    }


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "crds")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (out / name).write_text(text)
        print(out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
