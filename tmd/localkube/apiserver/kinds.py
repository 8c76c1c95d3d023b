"""What the server serves: one `ResourceType` per resource, built-ins plus those derived from CRDs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def lookup(obj: Any, dotted: str) -> Any:
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def selector_string(value: Any, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    subresources: list[str] = field(default_factory=list)  # e.g. ["status", "log"]
    #: field selector name -> (dotted path, default string)
    field_selectors: dict[str, tuple[str, str]] = field(default_factory=dict)
    name_rule: str = "subdomain"  # subdomain | label | path
    generation: bool = False
    builtin: bool = True
    unconditional_update: bool = True
    crd: dict[str, Any] | None = None  # the CustomResourceDefinition for custom resources
    versions: list[str] = field(default_factory=list)  # all served versions (CRDs)

    @property
    def key(self) -> str:
        """Storage key: group + plural (independent of version)."""
        return f"{self.group}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def status_subresource(self) -> bool:
        return "status" in self.subresources

    def supports_field(self, name: str) -> bool:
        return name in ("metadata.name", "metadata.namespace") or name in self.field_selectors

    def field_value(self, obj: dict[str, Any], name: str) -> str:
        if name == "metadata.name":
            return obj.get("metadata", {}).get("name", "")
        if name == "metadata.namespace":
            return obj.get("metadata", {}).get("namespace", "")
        path, default = self.field_selectors[name]
        return selector_string(lookup(obj, path), default)

    def api_resources(self) -> list[dict[str, Any]]:
        """APIResource entries for discovery: the resource plus `<plural>/<sub>` entries."""
        main: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        out = [main]
        for sub in self.subresources:
            out.append(SUBRESOURCE_ENTRIES[sub](self))
        return out


def _sub(name: str, kind: str | None, verbs: list[str], group: str | None = None, version: str | None = None
         ) -> Callable[[ResourceType], dict[str, Any]]:
    def build(rt: ResourceType) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": f"{rt.plural}/{name}", "singularName": "", "namespaced": rt.namespaced,
                                 "kind": kind or rt.kind, "verbs": verbs}
        if group is not None:
            entry["group"] = group
            entry["version"] = version
        return entry
    return build


SUBRESOURCE_ENTRIES: dict[str, Callable[[ResourceType], dict[str, Any]]] = {
    "status": _sub("status", None, ["get", "patch", "update"]),
    "scale": _sub("scale", "Scale", ["get", "patch", "update"], "autoscaling", "v1"),
    "log": _sub("log", "Pod", ["get"]),
    "resize": _sub("resize", None, ["get", "patch", "update"]),
    "binding": _sub("binding", "Binding", ["create"]),
    "finalize": _sub("finalize", None, ["update"]),
}


def _core(kind: str, plural: str, namespaced: bool, **kw: Any) -> ResourceType:
    return ResourceType("", "v1", kind, plural, kind.lower(), namespaced, **kw)


INVOLVED = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")


def builtin_types() -> list[ResourceType]:
    return [
        _core("Namespace", "namespaces", False, short_names=["ns"], subresources=["status", "finalize"],
              field_selectors={"status.phase": ("status.phase", "")}, name_rule="label"),
        _core("Pod", "pods", True, short_names=["po"], categories=["all"],
              subresources=["status", "log", "resize", "binding"], generation=True,
              field_selectors={
                  "spec.nodeName": ("spec.nodeName", ""),
                  "spec.restartPolicy": ("spec.restartPolicy", ""),
                  "spec.schedulerName": ("spec.schedulerName", ""),
                  "spec.serviceAccountName": ("spec.serviceAccountName", ""),
                  "spec.hostNetwork": ("spec.hostNetwork", "false"),
                  "status.phase": ("status.phase", ""),
                  "status.podIP": ("status.podIP", ""),
                  "status.nominatedNodeName": ("status.nominatedNodeName", ""),
              }),
        _core("Node", "nodes", False, short_names=["no"], subresources=["status"],
              field_selectors={"spec.unschedulable": ("spec.unschedulable", "false")}),
        _core("Event", "events", True, short_names=["ev"], name_rule="path",
              field_selectors={
                  **{f"involvedObject.{f}": (f"involvedObject.{f}", "") for f in INVOLVED},
                  "reason": ("reason", ""),
                  "reportingComponent": ("reportingComponent", ""),
                  "source": ("source.component", ""),
                  "type": ("type", ""),
              }),
        _core("ConfigMap", "configmaps", True, short_names=["cm"]),
        _core("Secret", "secrets", True, field_selectors={"type": ("type", "")}),
        _core("ServiceAccount", "serviceaccounts", True, short_names=["sa"]),
        ResourceType("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
        ResourceType("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
                     "customresourcedefinition", False, short_names=["crd", "crds"], subresources=["status"],
                     generation=True),
        ResourceType("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", False,
                     short_names=["pc"]),
    ]


def crd_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The ResourceTypes one CRD serves (one per served version, all sharing the storage key)."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    served = [v for v in spec.get("versions", []) if v.get("served", True)]
    out = []
    for v in served:
        subs = v.get("subresources") or {}
        subresources = [s for s in ("status", "scale") if s in subs]
        selectable = {f["jsonPath"].lstrip("."): (f["jsonPath"].lstrip("."), "")
                      for f in v.get("selectableFields") or [] if isinstance(f, dict) and "jsonPath" in f}
        out.append(ResourceType(
            group=spec.get("group", ""), version=v["name"], kind=names.get("kind", ""),
            plural=names.get("plural", ""), singular=names.get("singular") or names.get("kind", "").lower(),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=list(names.get("shortNames") or []), categories=list(names.get("categories") or []),
            subresources=subresources, field_selectors=selectable, generation=True, builtin=False,
            unconditional_update=False, crd=crd, versions=[x["name"] for x in served],
        ))
    return out


def crd_version(crd: dict[str, Any], version: str) -> dict[str, Any]:
    for v in crd.get("spec", {}).get("versions", []):
        if v.get("name") == version:
            return v
    return {}


def storage_version(crd: dict[str, Any]) -> str:
    for v in crd.get("spec", {}).get("versions", []):
        if v.get("storage"):
            return v["name"]
    versions = crd.get("spec", {}).get("versions", [])
    return versions[0]["name"] if versions else "v1"
