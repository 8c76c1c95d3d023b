"""Structural OpenAPI v3 schemas of CRDs: pruning, defaulting and validation.

Follows apiextensions-apiserver (`pkg/apiserver/schema/{pruning,defaulting}`, `pkg/apiserver/validation`)
closely enough that messages read like kube-apiserver's, e.g.
`spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"`.
Hand-written: `jsonschema` is not structural-schema aware (no pruning, no `x-kubernetes-*`).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from .errors import FieldError, invalid_field

OBJECT_META_FIELDS = {
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def prune(value: Any, schema: dict[str, Any] | None, path: str = "", root: bool = True) -> list[str]:
    """Drop fields the schema does not specify, in place; returns the dropped paths."""
    dropped: list[str] = []
    if schema is None:
        return dropped
    if isinstance(value, dict):
        if root or schema.get("x-kubernetes-embedded-resource"):
            meta = value.get("metadata")
            if isinstance(meta, dict) and root:
                for k in list(meta):
                    if k not in OBJECT_META_FIELDS:
                        del meta[k]
                        dropped.append(_join(_join(path, "metadata"), k))
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        for k in list(value):
            if (root or schema.get("x-kubernetes-embedded-resource")) and k in ("apiVersion", "kind", "metadata"):
                continue
            if props is not None and k in props:
                dropped += prune(value[k], props[k], _join(path, k), False)
            elif isinstance(addl, dict):
                dropped += prune(value[k], addl, _join(path, k), False)
            elif addl is True or preserve:
                continue
            else:
                del value[k]
                dropped.append(_join(path, k))
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, x in enumerate(value):
                dropped += prune(x, items, f"{path}[{i}]", False)
    return dropped


def apply_defaults(value: Any, schema: dict[str, Any] | None) -> None:
    """Fill `default`s of missing object properties, recursively, in place."""
    if schema is None:
        return
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for k, sub in props.items():
            if k not in value and isinstance(sub, dict) and "default" in sub:
                value[k] = copy.deepcopy(sub["default"])
            if k in value:
                apply_defaults(value[k], sub)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for k, v in value.items():
                if k not in props:
                    apply_defaults(v, addl)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for x in value:
            apply_defaults(x, schema["items"])


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: Any, typ: str) -> bool:
    have = json_type(value)
    if typ == "number":
        return have in ("integer", "number")
    return have == typ


def validate(value: Any, schema: dict[str, Any] | None, path: str = "") -> list[FieldError]:
    """Validate against a structural schema; returns field errors (empty when valid)."""
    if not schema:
        return []
    errs: list[FieldError] = []
    shown = path or "<root>"
    if value is None:
        if schema.get("nullable"):
            return []
        typ = schema.get("type")
        if typ:
            return [invalid_field(path, "null", f"{shown} in body must be of type {typ}: \"null\"")]
        return []
    if schema.get("x-kubernetes-int-or-string"):
        if json_type(value) not in ("integer", "string"):
            errs.append(invalid_field(path, json_type(value),
                                      f"{shown} in body must be of type integer,string: {json.dumps(json_type(value))}"))
            return errs
    else:
        typ = schema.get("type")
        if typ and not _type_ok(value, typ):
            return [invalid_field(path, json_type(value),
                                  f"{shown} in body must be of type {typ}: {json.dumps(json_type(value))}")]
    if "enum" in schema and value not in schema["enum"]:
        errs.append(FieldError("NotSupported", path, value=value, has_value=True,
                               supported=[v if isinstance(v, str) else json.dumps(v) for v in schema["enum"]]))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema:
            m = schema["minimum"]
            if value < m or (schema.get("exclusiveMinimum") and value == m):
                rel = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
                errs.append(invalid_field(path, value, f"{shown} in body should be {rel} {m}"))
        if "maximum" in schema:
            m = schema["maximum"]
            if value > m or (schema.get("exclusiveMaximum") and value == m):
                rel = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
                errs.append(invalid_field(path, value, f"{shown} in body should be {rel} {m}"))
        if "multipleOf" in schema and schema["multipleOf"] and value % schema["multipleOf"] != 0:
            errs.append(invalid_field(path, value, f"{shown} in body should be a multiple of {schema['multipleOf']}"))
        fmt = schema.get("format")
        if fmt == "int32" and isinstance(value, int) and not -2**31 <= value < 2**31:
            errs.append(invalid_field(path, value, f"{shown} in body must be of type int32"))
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errs.append(FieldError("TooLong", path, f"may not be more than {schema['maxLength']} bytes"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            errs.append(invalid_field(path, value, f"{shown} in body should be at least {schema['minLength']} chars long"))
        if "pattern" in schema:
            try:
                if not re.search(schema["pattern"], value):
                    errs.append(invalid_field(path, value, f"{shown} in body should match '{schema['pattern']}'"))
            except re.error:
                pass
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append(FieldError("TooMany", path, f"must have at most {schema['maxItems']} items", len(value), True))
        if "minItems" in schema and len(value) < schema["minItems"]:
            errs.append(invalid_field(path, len(value), f"{shown} in body should have at least {schema['minItems']} items"))
        items = schema.get("items")
        if isinstance(items, dict):
            for i, x in enumerate(value):
                errs += validate(x, items, f"{path}[{i}]")
        list_type = schema.get("x-kubernetes-list-type")
        if schema.get("uniqueItems") or list_type == "set":
            seen: list[Any] = []
            for i, x in enumerate(value):
                if x in seen:
                    errs.append(FieldError("Duplicate", f"{path}[{i}]", value=x, has_value=True))
                seen.append(x)
        if list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen_keys: list[Any] = []
            for i, x in enumerate(value):
                if isinstance(x, dict):
                    k = tuple(x.get(key) for key in keys)
                    if k in seen_keys:
                        errs.append(FieldError("Duplicate", f"{path}[{i}]", value={key: x.get(key) for key in keys},
                                               has_value=True))
                    seen_keys.append(k)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for req in schema.get("required") or []:
            if req not in value:
                errs.append(FieldError("Required", _join(path, req)))
        for k, v in value.items():
            if k in props:
                errs += validate(v, props[k], _join(path, k))
            elif isinstance(schema.get("additionalProperties"), dict):
                errs += validate(v, schema["additionalProperties"], _join(path, k))
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errs.append(FieldError("TooMany", path, f"must have at most {schema['maxProperties']} items", len(value), True))
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            errs.append(invalid_field(path, len(value), f"{shown} in body should have at least "
                                      f"{schema['minProperties']} properties"))
    for sub in schema.get("allOf") or []:
        errs += validate(value, sub, path)
    if schema.get("anyOf"):
        if all(validate(value, sub, path) for sub in schema["anyOf"]):
            errs.append(invalid_field(path, value, f"{shown} in body must be of one of the allowed schemas (anyOf)"))
    if schema.get("oneOf"):
        ok = sum(1 for sub in schema["oneOf"] if not validate(value, sub, path))
        if ok != 1:
            errs.append(invalid_field(path, value, f"{shown} in body must match exactly one schema in oneOf"))
    if isinstance(schema.get("not"), dict) and not validate(value, schema["not"], path):
        errs.append(invalid_field(path, value, f"{shown} in body must not validate the schema (not)"))
    return errs


def validate_crd_spec(crd: dict[str, Any]) -> list[FieldError]:
    """The checks of apiextensions validation a user can realistically trip over."""
    errs: list[FieldError] = []
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [FieldError("Required", "spec")]
    group = spec.get("group") or ""
    names = spec.get("names") or {}
    if not group:
        errs.append(FieldError("Required", "spec.group"))
    elif "." not in group:
        errs.append(invalid_field("spec.group", group, "should be a domain with at least one dot"))
    for key in ("plural", "kind"):
        if not names.get(key):
            errs.append(FieldError("Required", f"spec.names.{key}"))
    plural = names.get("plural", "")
    if plural and group and crd.get("metadata", {}).get("name") != f"{plural}.{group}":
        errs.append(invalid_field("metadata.name", crd.get("metadata", {}).get("name", ""),
                                  'must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errs.append(FieldError("NotSupported", "spec.scope", value=spec.get("scope", ""), has_value=True,
                               supported=["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions:
        errs.append(invalid_field("spec.versions", versions, "must have exactly one version marked as storage version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errs.append(invalid_field("spec.versions", [v.get("name") for v in versions],
                                  "must have exactly one version marked as storage version"))
    for i, v in enumerate(versions):
        if not v.get("name"):
            errs.append(FieldError("Required", f"spec.versions[{i}].name"))
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            errs.append(FieldError("Required", f"spec.versions[{i}].schema.openAPIV3Schema",
                                   "schemas are required"))
        elif schema.get("type") != "object":
            errs.append(FieldError("Required", f"spec.versions[{i}].schema.openAPIV3Schema.type",
                                   "must not be empty at the root"))
    return errs
