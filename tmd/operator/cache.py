"""The operator's view of the cluster, kept from its watch streams (an informer's store).

A pass plans from here instead of listing everything: the cache is filled by one list per kind
at start (and again on a slow clock, `relist_seconds`, which also repairs anything a watch
restart missed: kopf re-lists after a 410 but reports no deletions), then kept current by the
events kopf already receives and by the objects the operator's own writes return. Writes and
events can arrive in any order, so every object is only ever replaced by a newer resourceVersion,
and a deletion leaves a tombstone that keeps an older event from bringing the object back.

`apply` says whether an event matters for planning, so that, say, a node's heartbeat does not
cost a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

from tmd.api.resources import LABEL_ROLE
from tmd.operator.pods import WORKER_ROLE

Kind = Literal["deployments", "models", "nodes", "pods"]
KINDS: tuple[Kind, ...] = ("deployments", "models", "nodes", "pods")
Key = tuple[str, str]  # (namespace, name); namespace "" for nodes
Object = dict[str, Any]


def resource_version(obj: Mapping[str, Any]) -> int | None:
    """Kubernetes calls resourceVersions opaque; etcd's (and localkube's) are integers, which lets
    the cache order events and writes. None (never ordered) for anything else."""
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


def _ready(node: Mapping[str, Any]) -> Any:
    return next((c.get("status") for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
                None)


def planning_view(kind: Kind, obj: Mapping[str, Any] | None) -> Any:
    """The part of an object a pass depends on; an event that leaves it unchanged needs no pass.
    Nodes: labels, annotations, size, schedulability, readiness (not heartbeats). Other pods:
    where they run and what they request (they take capacity from ML nodes). Everything else: all."""
    if obj is None:
        return None
    if kind == "nodes":
        status, meta = obj.get("status") or {}, obj["metadata"]
        return (meta.get("labels"), meta.get("annotations"), meta.get("deletionTimestamp"), obj.get("spec"),
                status.get("allocatable"), status.get("capacity"), _ready(obj))
    if kind == "pods" and (obj["metadata"].get("labels") or {}).get(LABEL_ROLE) != WORKER_ROLE:
        spec = obj.get("spec") or {}
        return (spec.get("nodeName"), [(c.get("resources") or {}).get("requests") for c in spec.get("containers") or []],
                (obj.get("status") or {}).get("phase"), obj["metadata"].get("deletionTimestamp"))
    meta = {k: v for k, v in obj["metadata"].items() if k not in ("resourceVersion", "managedFields")}
    return meta, obj.get("spec"), obj.get("status")


@dataclass
class ClusterCache:
    objects: dict[Kind, dict[Key, Object]] = field(default_factory=lambda: {kind: {} for kind in KINDS})
    tombstones: dict[Kind, dict[Key, int]] = field(default_factory=lambda: {kind: {} for kind in KINDS})
    listed: dict[Kind, int | None] = field(default_factory=lambda: {kind: None for kind in KINDS})
    primed: set[Kind] = field(default_factory=set)

    @property
    def ready(self) -> bool:
        """Every kind listed once: before that a pass would see missing nodes or pods and act on them."""
        return self.primed == set(KINDS)

    def items(self, kind: Kind) -> list[Object]:
        return list(self.objects[kind].values())

    def replace(self, kind: Kind, items: Iterable[Object], list_version: int | None) -> bool:
        """Take a fresh list. What the cache holds that is newer than the list (events or writes that
        arrived meanwhile) wins; objects absent from the list are gone. Returns whether anything changed."""
        fresh: dict[Key, Object] = {key_of(obj): obj for obj in items}
        if list_version is not None:
            for key, obj in self.objects[kind].items():
                version = resource_version(obj)
                if version is not None and version > list_version:
                    fresh[key] = obj
            for key, version in self.tombstones[kind].items():
                if version > list_version and key in fresh and (resource_version(fresh[key]) or 0) <= version:
                    fresh.pop(key)
            self.tombstones[kind] = {k: v for k, v in self.tombstones[kind].items() if v > list_version}
        changed = {k: planning_view(kind, v) for k, v in fresh.items()} != \
            {k: planning_view(kind, v) for k, v in self.objects[kind].items()}
        self.objects[kind] = fresh
        self.listed[kind] = list_version
        self.primed.add(kind)
        return changed

    def apply(self, kind: Kind, event_type: str | None, obj: Object) -> bool:
        """An event (or the object a write returned). Returns whether the planning view changed."""
        key, version = key_of(obj), resource_version(obj)
        table = self.objects[kind]
        old = table.get(key)
        old_version = resource_version(old) if old is not None else None
        if event_type == "DELETED":
            if old is not None and version is not None and old_version is not None and old_version > version:
                return False  # a newer object of that name is already here
            table.pop(key, None)
            if version is not None:
                self.tombstones[kind][key] = max(version, self.tombstones[kind].get(key, 0))
            return old is not None
        if version is not None:
            if old_version is not None and version <= old_version:
                return False  # an event older than what a write or a later event gave us
            if old is None:
                if version <= self.tombstones[kind].get(key, -1):
                    return False  # deleted after this version
                listed = self.listed[kind]
                if listed is not None and version <= listed:
                    return False  # it would have been in the list had it still existed
        table[key] = obj
        return planning_view(kind, old) != planning_view(kind, obj)

    def remove(self, kind: Kind, obj: Object) -> None:
        """An object the operator deleted outright (no graceful deletion follows)."""
        self.apply(kind, "DELETED", obj)
