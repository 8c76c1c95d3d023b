"""PATCH bodies: JSON patch (RFC 6902, via `jsonpatch`), merge patch (RFC 7386) and strategic merge.

Merge patch and strategic merge are hand-written: `jsonpatch` only implements RFC 6902, and no Python
library implements Kubernetes' strategic-merge-patch. The strategic merge covers the kinds this server
serves: list merge keys by field name, and the directives `$patch`, `$setElementOrder/…`,
`$retainKeys` and `$deleteFromPrimitiveList/…`.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from .errors import StatusError, bad_request, unprocessable

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"

#: list field name -> merge key (None: merge as a set of primitives)
MERGE_KEYS: dict[str, str | None] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "finalizers": None,
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "addresses": "type",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
    "taints": "key",
}

#: lists replaced as a whole even though a key exists elsewhere
ATOMIC = {"tolerations", "args", "command", "containerStatuses", "initContainerStatuses", "images", "podIPs",
          "hostIPs", "secrets"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def json_patch(target: dict[str, Any], ops: Any) -> dict[str, Any]:
    """RFC 6902; malformed patch → 400, failed application (incl. `test`) → 422 like patch.go."""
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        patch = jsonpatch.JsonPatch(ops)
    except (jsonpatch.InvalidJsonPatch, TypeError) as e:
        raise bad_request(str(e))
    try:
        return patch.apply(target)
    except jsonpatch.JsonPatchTestFailed as e:
        raise unprocessable(f"the server rejected our request due to an error in our request: {e}")
    except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException, jsonpatch.InvalidJsonPatch,
            KeyError, IndexError, TypeError) as e:
        raise unprocessable(f"the server rejected our request due to an error in our request: {e}")


def strategic_merge(target: Any, patch: Any) -> Any:
    """Strategic merge patch of `patch` onto `target` (both JSON-shaped)."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        if isinstance(patch, dict):
            return _strip_directives(patch)
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return None
    result = copy.deepcopy(target)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [x for x in result[field] if x not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        cur = result.get(key)
        if isinstance(value, list):
            result[key] = _merge_list(key, cur, value)
        elif isinstance(value, dict):
            merged = strategic_merge(cur if isinstance(cur, dict) else {}, value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    if isinstance(retain, list):
        for key in list(result):
            if key not in retain:
                del result[key]
    for key, order in patch.items():
        if key.startswith("$setElementOrder/") and isinstance(order, list):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = _reorder(field, result[field], order)
    return result


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items()
                if not (k.startswith("$setElementOrder/") or k.startswith("$deleteFromPrimitiveList/")
                        or k in ("$patch", "$retainKeys"))}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value if not (isinstance(v, dict) and v.get("$patch") == "delete")]
    return value


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    if field in ATOMIC or field not in MERGE_KEYS:
        if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
            return [_strip_directives(x) for x in patch if not (isinstance(x, dict) and "$patch" in x)]
        return _strip_directives(patch)
    current = list(current) if isinstance(current, list) else []
    key = MERGE_KEYS[field]
    if key is None:  # set of primitives
        out = list(current)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [_strip_directives(x) for x in patch if not (isinstance(x, dict) and x.get("$patch") == "replace")]
    out = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            out.append(_strip_directives(item))
            continue
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_strip_directives(item))
        else:
            out[idx] = strategic_merge(out[idx], item)
    return out


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = MERGE_KEYS.get(field)

    def ident(x: Any) -> Any:
        return x.get(key) if key and isinstance(x, dict) else x
    wanted = [ident(o) if isinstance(o, dict) else o for o in order]
    ordered = [x for w in wanted for x in items if ident(x) == w]
    rest = [x for x in items if ident(x) not in wanted]
    return ordered + rest


def apply_merge(target: dict[str, Any], applied: dict[str, Any], builtin: bool) -> dict[str, Any]:
    """Minimal server-side apply onto an existing object: merge the applied configuration in.

    Lists of built-ins merge by their strategic merge keys, other lists are replaced; fields a manager
    stops applying are not removed (no managedFields bookkeeping).
    """
    if builtin:
        return strategic_merge(target, applied)
    return _apply_dict(target, applied)


def _apply_dict(target: Any, applied: Any) -> Any:
    if not isinstance(applied, dict) or not isinstance(target, dict):
        return copy.deepcopy(applied)
    out = copy.deepcopy(target)
    for k, v in applied.items():
        out[k] = _apply_dict(out.get(k), v) if isinstance(v, dict) else copy.deepcopy(v)
    return out


def check_patch_type(content_type: str, builtin: bool) -> str:
    accepted = [JSON_PATCH, MERGE_PATCH] + ([STRATEGIC_PATCH] if builtin else []) + [APPLY_PATCH, APPLY_PATCH_CBOR]
    if content_type not in accepted:
        from .errors import unsupported_media_type
        raise unsupported_media_type(accepted)
    return content_type


__all__ = ["StatusError", "merge_patch", "json_patch", "strategic_merge", "apply_merge", "check_patch_type"]
