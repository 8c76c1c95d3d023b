"""Legacy discovery documents and the minimal OpenAPI v3 that lets kubectl use server-side validation."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .kinds import ResourceType


def _group_versions(types: list[ResourceType]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in types:
        if t.group:
            vs = out.setdefault(t.group, [])
            if t.version not in vs:
                vs.append(t.version)
    return out


def _preferred(t_versions: list[str], types: list[ResourceType], group: str) -> str:
    for t in types:
        if t.group == group and t.crd is not None:
            for v in t.crd["spec"].get("versions", []):
                if v.get("storage") and v["name"] in t_versions:
                    return v["name"]
    return sorted(t_versions, key=_version_priority)[0]


def _version_priority(v: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first."""
    import re
    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", v)
    if not m:
        return (3, 0, 0)
    level = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (level, -int(m.group(1)), -int(m.group(3) or 0))


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}


def api_group(group: str, types: list[ResourceType]) -> dict[str, Any] | None:
    versions = _group_versions(types).get(group)
    if not versions:
        return None
    ordered = sorted(versions, key=_version_priority)
    pref = _preferred(versions, types, group)
    ordered.remove(pref)
    ordered.insert(0, pref)
    return {"name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered],
            "preferredVersion": {"groupVersion": f"{group}/{pref}", "version": pref}}


def api_group_list(types: list[ResourceType]) -> dict[str, Any]:
    groups = [g for g in (api_group(name, types) for name in sorted(_group_versions(types))) if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def resource_list(group: str, version: str, types: list[ResourceType]) -> dict[str, Any] | None:
    selected = [t for t in types if t.group == group and t.version == version]
    if not selected:
        return None
    resources: list[dict[str, Any]] = []
    for t in sorted(selected, key=lambda t: t.plural):
        resources += t.api_resources()
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": resources}


def root_paths(types: list[ResourceType]) -> dict[str, Any]:
    paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/openapi/v3", "/version"]
    for group, versions in _group_versions(types).items():
        paths.append(f"/apis/{group}")
        paths += [f"/apis/{group}/{v}" for v in versions]
    return {"paths": sorted(paths)}


# --- OpenAPI v3 -------------------------------------------------------------------------------------

PATCH_TYPES_CR = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def openapi_doc(group: str, version: str, types: list[ResourceType], server_version: str) -> dict[str, Any] | None:
    selected = [t for t in types if t.group == group and t.version == version]
    if not selected:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for t in selected:
        prefix = "/" + _gv_path(group, version)
        obj_path = f"{prefix}/namespaces/{{namespace}}/{t.plural}/{{name}}" if t.namespaced \
            else f"{prefix}/{t.plural}/{{name}}"
        gvk = {"group": group, "version": version, "kind": t.kind}
        params = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                  {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                  {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}}]
        op = {"x-kubernetes-group-version-kind": gvk, "parameters": params,
              "requestBody": {"content": {ct: {"schema": {}} for ct in PATCH_TYPES_CR}},
              "responses": {"200": {"description": "OK"}}}
        paths[obj_path] = {"patch": op, "put": {**op, "requestBody": {"content": {"application/json": {"schema": {}}}}}}
        if t.crd is not None:
            for v in t.crd["spec"].get("versions", []):
                if v.get("name") == version:
                    schema = dict((v.get("schema") or {}).get("openAPIV3Schema") or {})
                    schema["x-kubernetes-group-version-kind"] = [gvk]
                    schemas[f"{group}.{version}.{t.kind}"] = schema
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": server_version},
            "paths": paths, "components": {"schemas": schemas}}


def openapi_index(types: list[ResourceType], server_version: str) -> dict[str, Any]:
    gvs = sorted({(t.group, t.version) for t in types})
    out: dict[str, Any] = {}
    for g, v in gvs:
        doc = openapi_doc(g, v, types, server_version)
        digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:128].upper()
        out[_gv_path(g, v)] = {"serverRelativeURL": f"/openapi/v3/{_gv_path(g, v)}?hash={digest}"}
    return {"paths": out}
