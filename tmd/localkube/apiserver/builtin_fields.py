"""Known fields of the built-in kinds, read from the `kubernetes` client's pydantic models.

kube-apiserver decodes built-ins into Go structs, which silently drops unknown fields (or reports them
under `fieldValidation=Strict|Warn`). The python client's models carry the same field tree with the
wire names as aliases, so they serve as the schema here instead of a hand-copied one.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any

MODELS = {
    "Namespace": "V1Namespace", "Pod": "V1Pod", "Node": "V1Node", "Event": "CoreV1Event",
    "ConfigMap": "V1ConfigMap", "Secret": "V1Secret", "ServiceAccount": "V1ServiceAccount", "Lease": "V1Lease",
    "CustomResourceDefinition": "V1CustomResourceDefinition", "PriorityClass": "V1PriorityClass",
    "Binding": "V1Binding", "DeleteOptions": "V1DeleteOptions",
}

#: model classes whose content is free-form JSON
FREE_FORM = {"V1JSONSchemaProps", "V1ManagedFieldsEntry", "V1CustomResourceValidation"}

Tree = dict[str, Any]  # wire name -> sub tree | None (leaf / free form); "*" = map values


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Annotated; return (container, inner) with container in {None, 'list', 'dict'}."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else (None, None)
    if origin in (list, typing.List):
        return ("list", typing.get_args(annotation)[0])
    if origin in (dict, typing.Dict):
        return ("dict", typing.get_args(annotation)[1])
    return (None, annotation)


@functools.lru_cache(maxsize=None)
def _tree(model: type) -> Tree | None:
    if model.__name__ in FREE_FORM:
        return None
    tree: Tree = {}
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        wire = info.serialization_alias or name
        tree[wire] = _field_tree(info.annotation)
    return tree


def _field_tree(annotation: Any) -> Any:
    container, inner = _unwrap(annotation)
    while True:
        if container in ("list", "dict"):
            sub = _field_tree(inner)
            return {"*": sub} if sub is not None else None
        if isinstance(inner, type) and hasattr(inner, "model_fields"):
            return _tree(inner)
        return None


@functools.lru_cache(maxsize=None)
def tree_for(kind: str) -> Tree | None:
    name = MODELS.get(kind)
    if not name:
        return None
    from kubernetes.client import models  # heavy import: only when a built-in body is first checked
    return _tree(getattr(models, name))


def unknown_fields(obj: Any, tree: Tree | None, path: str = "", drop: bool = True) -> list[str]:
    """Paths of fields the kind does not define (dropped from `obj` in place when `drop`)."""
    found: list[str] = []
    if tree is None:
        return found
    if "*" in tree and len(tree) == 1:
        sub = tree["*"]
        if isinstance(obj, list):
            for i, x in enumerate(obj):
                found += unknown_fields(x, sub, f"{path}[{i}]", drop)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                found += unknown_fields(v, sub, f"{path}.{k}" if path else k, drop)
        return found
    if not isinstance(obj, dict):
        return found
    for k in list(obj):
        sub_path = f"{path}.{k}" if path else k
        if k not in tree:
            found.append(sub_path)
            if drop:
                del obj[k]
        else:
            found += unknown_fields(obj[k], tree[k], sub_path, drop)
    return found
