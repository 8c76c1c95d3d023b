"""Generic REST storage semantics (registry/generic/registry/store.go) over the `Store`.

Every operation is synchronous: it validates, builds the transaction and commits it before returning,
so a handler answers only after the change is durable.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from . import cel
from . import errors as E
from . import schema as S
from . import strategies
from .builtin_fields import fill_go_zero_values, tree_for, unknown_fields
from .errors import FieldError, StatusError
from .kinds import ResourceType, builtin_types, crd_types, crd_version, storage_version
from .meta import deep_copy, generate_name, normalise_metadata, now, parse_time, rfc3339, validate_metadata
from .patching import (APPLY_PATCH, APPLY_PATCH_CBOR, JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, apply_merge,
                       check_patch_type, json_patch, merge_patch, strategic_merge)
from .store import Change, Store

CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"
NS_KEY = "/namespaces"
POD_KEY = "/pods"
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
SERVER_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                   "selfLink")


@dataclass
class Outcome:
    """The object a write returns plus any `Warning` headers."""

    obj: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    created: bool = False


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        self.by_key: dict[str, ResourceType] = {}
        self.by_kind: dict[tuple[str, str], ResourceType] = {}
        self.schema_generation = 0
        self.on_delete_started: Callable[[], None] = lambda: None
        self.rebuild_types()
        store.hooks.insert(0, self._on_events)

    # --- resource types ----------------------------------------------------------------------

    def rebuild_types(self) -> None:
        types = builtin_types()
        for crd in self.store.list(CRD_KEY, None):
            types += crd_types(crd)
        self.types = {(t.group, t.version, t.plural): t for t in types}
        self.by_key = {}
        for t in types:
            if t.crd is None or t.version == _storage(t):
                self.by_key[t.key] = t
            self.by_key.setdefault(t.key, t)
        self.by_kind = {(t.group, t.kind): t for t in types}
        self.schema_generation += 1

    def _on_events(self, events: list[Any]) -> None:
        """Discovery must reflect a CRD before its watch event is delivered (kopf re-scans on it)."""
        if not events or any(e.res == CRD_KEY for e in events):  # [] = state reloaded from disk
            self.rebuild_types()

    def resolve(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.types.get((group, version, plural))
        if rt is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        return rt

    # --- reads -------------------------------------------------------------------------------

    def get(self, rt: ResourceType, ns: str, name: str) -> dict[str, Any]:
        obj = self.store.get(rt.key, ns if rt.namespaced else "", name)
        if obj is None:
            raise E.not_found(rt.plural, rt.group, name)
        return obj

    def render(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as served at `rt`'s version (CRD versions share storage: conversion None)."""
        if obj.get("apiVersion") != rt.api_version:
            obj = dict(obj, apiVersion=rt.api_version)
        return obj

    # --- helpers -----------------------------------------------------------------------------

    def _check_namespace(self, rt: ResourceType, ns: str, name: str) -> None:
        if not rt.namespaced:
            return
        nso = self.store.get(NS_KEY, "", ns)
        if nso is None:
            raise E.not_found("namespaces", "", ns)
        if nso["metadata"].get("deletionTimestamp"):
            raise E.forbidden(rt.plural, rt.group, name,
                              f"unable to create new content in namespace {ns} because it is being terminated")

    def _check_body_identity(self, rt: ResourceType, body: Any, ns: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise E.bad_request(f"the body of the request was in an unknown format - object expected for {rt.kind}")
        kind = body.get("kind")
        api_version = body.get("apiVersion")
        if rt.crd is not None:  # unstructured decoding needs both (runtime.NewMissingKindErr/VersionErr)
            if not kind:
                raise E.bad_request(f"Object 'Kind' is missing in '{_compact(body)}'")
            if not api_version:
                raise E.bad_request(f"Object 'apiVersion' is missing in '{_compact(body)}'")
        if kind and kind != rt.kind:
            raise E.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        if api_version and api_version != rt.api_version and not (
                rt.crd is not None and api_version in (f"{rt.group}/{v}" for v in rt.versions)):
            raise E.bad_request(f"the API version in the data ({api_version}) does not match the expected API "
                                f"version ({rt.api_version})")
        body["kind"] = rt.kind
        body["apiVersion"] = rt.api_version
        meta = body.get("metadata")
        if meta is None:
            meta = body["metadata"] = {}
        if not isinstance(meta, dict):
            raise E.bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise E.bad_request("the namespace of the provided object does not match the namespace sent on "
                                    "the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        return meta

    def check_fields(self, rt: ResourceType, obj: dict[str, Any], mode: str) -> list[str]:
        """Unknown fields: Strict → 400, Warn → warnings, Ignore → silently dropped (pruned)."""
        if rt.crd is not None:
            schema = _schema(rt)
            unknown = S.prune(obj, schema) if schema is not None else []
        else:
            unknown = unknown_fields(obj, tree_for(rt.kind))
        if not unknown:
            return []
        texts = [f'unknown field "{p}"' for p in unknown]
        if mode == "Strict":
            raise E.bad_request("strict decoding error: " + ", ".join(texts))
        if mode == "Warn":
            return texts
        return []

    def _cr_admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
        schema = _schema(rt)
        if schema is None:
            return []
        S.prune(obj, schema)
        S.apply_defaults(obj, schema)
        body = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
        schema_wo_meta = dict(schema)
        props = dict(schema_wo_meta.get("properties") or {})
        for k in ("metadata", "apiVersion", "kind"):
            props.pop(k, None)
        schema_wo_meta["properties"] = props
        errs = S.validate(body, schema_wo_meta)
        if errs:  # CEL rules assume the types the schema guarantees
            return errs
        old_body = {k: v for k, v in old.items() if k not in ("metadata", "apiVersion", "kind")} if old else None
        return cel.validate(body, schema_wo_meta, old_body)

    def _admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
        """Kind-specific defaulting and validation shared by create and update."""
        meta = obj["metadata"]
        normalise_metadata(meta)
        if rt.kind == "Node":  # non-pointer structs: always serialised by Go
            status = obj.setdefault("status", {})
            if isinstance(status, dict):
                status.setdefault("nodeInfo", {})
                status.setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 0}})
        if rt.crd is None:
            fill_go_zero_values(obj, rt.kind)
        errs = validate_metadata(meta, rt.namespaced, rt.name_rule)
        if rt.crd is not None:
            errs += self._cr_admit(rt, obj, old)
        elif rt.kind == "Secret":
            errs += strategies.prepare_secret(obj)
        elif rt.kind in ("Event", "Lease"):
            errs += strategies.normalise_times(obj, rt.kind)
        elif rt.kind == "CustomResourceDefinition":
            strategies.default_crd(obj)
            errs += S.validate_crd_spec(obj)
            if not errs:
                obj["status"] = strategies.crd_status(obj, (old or {}).get("status"))
        elif rt.kind == "Pod":
            errs += strategies.validate_pod(obj)
        elif rt.kind == "PriorityClass":
            if not isinstance(obj.get("value"), int) or isinstance(obj.get("value"), bool):
                errs.append(E.required_field("value"))
            obj.setdefault("preemptionPolicy", "PreemptLowerPriority")
        return errs

    def _commit(self, changes: list[Change]) -> None:
        """Apply at once; the HTTP layer answers only after the store reports it durable."""
        self.store.commit(changes)

    # --- create ------------------------------------------------------------------------------

    def create(self, rt: ResourceType, ns: str, body: Any, validation: str = "Warn", dry_run: bool = False
               ) -> Outcome:
        body = deep_copy(body)
        meta = self._check_body_identity(rt, body, ns)
        warnings = self.check_fields(rt, body, validation)
        name = meta.get("name") or ""
        if not name and meta.get("generateName"):
            for _ in range(8):
                name = generate_name(meta["generateName"])
                if self.store.get(rt.key, ns if rt.namespaced else "", name) is None:
                    break
            meta["name"] = name
        self._check_namespace(rt, ns, name)
        if rt.crd is not None:
            crd = self.store.get(CRD_KEY, "", rt.crd["metadata"]["name"])
            if crd is None or crd["metadata"].get("deletionTimestamp"):
                raise E.method_not_allowed("create not allowed while custom resource definition is terminating")
        for k in SERVER_METADATA + ("resourceVersion",):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(now())
        if rt.generation:
            meta["generation"] = 1
        if rt.status_subresource and rt.crd is not None:
            body.pop("status", None)
        if rt.kind == "Pod":
            priority = None
            pcn = (body.get("spec") or {}).get("priorityClassName") if isinstance(body.get("spec"), dict) else None
            if pcn:
                pc = self.store.get("scheduling.k8s.io/priorityclasses", "", pcn)
                if pc is None:
                    raise E.forbidden(rt.plural, rt.group, name, f"no PriorityClass with name {pcn} was found")
                priority = pc.get("value")
            strategies.default_pod(body, priority)
        elif rt.kind == "Namespace":
            if name:
                strategies.default_namespace(body)
        errs = self._admit(rt, body, None)
        if errs:
            raise E.invalid(rt.kind, rt.group, name, errs)
        if rt.kind == "CustomResourceDefinition":
            fins = meta.setdefault("finalizers", [])
            if CRD_CLEANUP not in fins:
                fins.append(CRD_CLEANUP)
        key_ns = ns if rt.namespaced else ""
        if self.store.get(rt.key, key_ns, name) is not None:
            raise E.already_exists(rt.plural, rt.group, name)
        if dry_run:
            return Outcome(body, warnings, True)
        changes = [Change(rt.key, key_ns, name, body, None)]
        if rt.kind == "Namespace" and self.store.get("/serviceaccounts", name, "default") is None:
            changes.append(Change("/serviceaccounts", name, "default", _service_account(name), None))
        self._commit(changes)
        return Outcome(body, warnings, True)

    # --- update ------------------------------------------------------------------------------

    def update(self, rt: ResourceType, ns: str, name: str, body: Any, subresource: str = "",
               validation: str = "Warn", dry_run: bool = False, check_rv: bool = True) -> Outcome:
        old = self.get(rt, ns, name)
        body = deep_copy(body)
        meta = self._check_body_identity(rt, body, ns)
        if meta.get("name") and meta["name"] != name:
            raise E.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        meta["name"] = name
        warnings = self.check_fields(rt, body, validation)
        rv = meta.get("resourceVersion")
        if check_rv:
            if rv:
                if rv != old["metadata"]["resourceVersion"]:
                    raise E.stale(rt.plural, rt.group, name)
            elif not rt.unconditional_update:
                raise E.invalid(rt.kind, rt.group, name, [E.invalid_field(
                    "metadata.resourceVersion", E.GoLiteral("0x0"), "must be specified for an update")])
        new = self._prepare_update(rt, body, old, subresource)
        return self._write_update(rt, ns, name, new, old, warnings, dry_run)

    def _prepare_update(self, rt: ResourceType, body: dict[str, Any], old: dict[str, Any], subresource: str
                        ) -> dict[str, Any]:
        name = old["metadata"]["name"]
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in body:
                new["status"] = body["status"]
            else:
                new.pop("status", None)
            if rt.crd is None:  # built-ins: status writers may also touch labels/annotations
                for k in ("labels", "annotations"):
                    if k in body["metadata"]:
                        new["metadata"][k] = body["metadata"][k]
            return new
        if subresource == "resize":
            new, errs = strategies.resize_pod(old, body)
            if errs:
                raise E.invalid(rt.kind, rt.group, name, errs)
            return new
        new = body
        meta = new["metadata"]
        for k in SERVER_METADATA:
            if k in old["metadata"]:
                meta[k] = old["metadata"][k]
            else:
                meta.pop(k, None)
        if rt.namespaced:
            meta["namespace"] = old["metadata"]["namespace"]
        if rt.status_subresource:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if rt.kind == "Pod":
            errs = strategies.validate_pod_update(new, old)
            if errs:
                raise E.invalid(rt.kind, rt.group, name, errs)
        if rt.kind == "Namespace":
            new["spec"] = old.get("spec", {})
        return new

    def _write_update(self, rt: ResourceType, ns: str, name: str, new: dict[str, Any], old: dict[str, Any],
                      warnings: list[str], dry_run: bool) -> Outcome:
        meta = new["metadata"]
        errs = self._admit(rt, new, old)
        old_fins = old["metadata"].get("finalizers") or []
        if old["metadata"].get("deletionTimestamp"):
            added = [f for f in meta.get("finalizers") or [] if f not in old_fins]
            if added:
                errs.append(E.forbidden_field(
                    "metadata.finalizers", "no new finalizers can be added if the object is being deleted, found "
                    "new finalizers []string{" + ", ".join(f'"{f}"' for f in added) + "}"))
        if errs:
            raise E.invalid(rt.kind, rt.group, name, errs)
        if rt.generation and _spec_part(new) != _spec_part(old):
            meta["generation"] = old["metadata"].get("generation", 1) + 1
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return Outcome(old, warnings)
        if dry_run:
            return Outcome(new, warnings)
        key_ns = ns if rt.namespaced else ""
        if _ready_to_remove(new):
            self._commit([Change(rt.key, key_ns, name, None, old)])
            self.on_delete_started()
            return Outcome(new, warnings)
        self._commit([Change(rt.key, key_ns, name, new, old)])
        return Outcome(new, warnings)

    # --- patch -------------------------------------------------------------------------------

    def patch(self, rt: ResourceType, ns: str, name: str, content_type: str, patch: Any, subresource: str = "",
              validation: str = "Warn", dry_run: bool = False, field_manager: str | None = None,
              force: bool = False) -> Outcome:
        check_patch_type(content_type, rt.builtin)
        key_ns = ns if rt.namespaced else ""
        old = self.store.get(rt.key, key_ns, name)
        if content_type in (APPLY_PATCH, APPLY_PATCH_CBOR):
            if not field_manager:
                raise E.bad_request("PATCH apply requires fieldManager to be set")
            if not isinstance(patch, dict):
                raise E.bad_request("apply patch must be a JSON or YAML object")
            if old is None and not subresource:
                applied = deep_copy(patch)
                applied.setdefault("metadata", {})["name"] = applied.get("metadata", {}).get("name") or name
                if applied["metadata"]["name"] != name:
                    raise E.bad_request(f"the name of the object ({applied['metadata']['name']}) does not match "
                                        f"the name on the URL ({name})")
                return self.create(rt, ns, applied, validation, dry_run)
            if old is None:
                raise E.not_found(rt.plural, rt.group, name)
            self._check_body_identity(rt, patch, ns)
            patched = apply_merge(old, patch, rt.builtin)
        else:
            if old is None:
                raise E.not_found(rt.plural, rt.group, name)
            if content_type == JSON_PATCH:
                patched = json_patch(copy.deepcopy(old), patch)
            elif content_type == MERGE_PATCH:
                if not isinstance(patch, dict):
                    raise E.bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
                patched = merge_patch(old, patch)
            elif content_type == STRATEGIC_PATCH:
                if not isinstance(patch, dict):
                    raise E.bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
                patched = strategic_merge(old, patch)
            else:
                raise E.unsupported_media_type([JSON_PATCH, MERGE_PATCH, APPLY_PATCH])
        if not isinstance(patched, dict):
            raise E.bad_request("the patch did not produce an object")
        pmeta = patched.get("metadata")
        if not isinstance(pmeta, dict):
            raise E.invalid(rt.kind, rt.group, name, [E.required_field("metadata")])
        rv = pmeta.get("resourceVersion")
        if rv is not None and rv != old["metadata"]["resourceVersion"]:
            raise E.stale(rt.plural, rt.group, name)
        if pmeta.get("name", name) != name:
            raise E.bad_request(f"the name of the object ({pmeta.get('name')}) does not match the name on the URL "
                                f"({name})")
        pmeta["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self.update(rt, ns, name, patched, subresource, validation, dry_run, check_rv=False)

    # --- delete ------------------------------------------------------------------------------

    def delete(self, rt: ResourceType, ns: str, name: str, options: dict[str, Any] | None = None,
               dry_run: bool = False) -> Outcome:
        options = options or {}
        old = self.get(rt, ns, name)
        meta = old["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise E.conflict(rt.plural, rt.group, name,
                             f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                             f"{meta.get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise E.conflict(rt.plural, rt.group, name,
                             f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                             f"ResourceVersion in object meta: {meta.get('resourceVersion')}")
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise E.invalid("DeleteOptions", "", "", [FieldError(
                "NotSupported", "propagationPolicy", value=policy, has_value=True,
                supported=["Foreground", "Background", "Orphan", "nil"])])
        grace = options.get("gracePeriodSeconds")
        key_ns = ns if rt.namespaced else ""
        new = copy.deepcopy(old)
        nmeta = new["metadata"]
        t = now()

        if rt.kind == "Namespace":
            if name in ("default", "kube-system", "kube-public"):
                raise E.forbidden(rt.plural, rt.group, name, "this namespace may not be deleted")
            return self._delete_namespace(rt, name, old, new, dry_run)

        if rt.kind == "Pod" and _pod_graceful(old, grace):
            g = grace if grace is not None else (old.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            g = max(int(g), 1) if g is not None else 30
            deadline = t + dt.timedelta(seconds=g)
            current = parse_time(meta.get("deletionTimestamp", "")) if meta.get("deletionTimestamp") else None
            if current is not None and current <= deadline:
                return Outcome(old)
            nmeta["deletionTimestamp"] = rfc3339(deadline)
            nmeta["deletionGracePeriodSeconds"] = g
            self._add_propagation_finalizer(nmeta, policy)
            if not meta.get("deletionTimestamp") and rt.generation:
                nmeta["generation"] = meta.get("generation", 1) + 1
            if dry_run:
                return Outcome(new)
            self._commit([Change(rt.key, key_ns, name, new, old)])
            self.on_delete_started()
            return Outcome(new)

        self._add_propagation_finalizer(nmeta, policy)
        if not nmeta.get("finalizers"):
            if dry_run:
                return Outcome(old)
            self._commit([Change(rt.key, key_ns, name, None, old)])
            self.on_delete_started()
            return Outcome(old)
        if not meta.get("deletionTimestamp"):
            nmeta["deletionTimestamp"] = rfc3339(t)
            nmeta["deletionGracePeriodSeconds"] = 0
            if rt.generation:
                nmeta["generation"] = meta.get("generation", 1) + 1
        elif rt.kind == "Pod" and grace == 0:
            nmeta["deletionGracePeriodSeconds"] = 0
        if new == old:
            return Outcome(old)
        if dry_run:
            return Outcome(new)
        self._commit([Change(rt.key, key_ns, name, new, old)])
        self.on_delete_started()
        return Outcome(new)

    @staticmethod
    def _add_propagation_finalizer(meta: dict[str, Any], policy: str | None) -> None:
        fins = list(meta.get("finalizers") or [])
        wanted = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(policy or "")
        if wanted and wanted not in fins:
            fins.append(wanted)
        if policy == "Background":
            fins = [f for f in fins if f not in ("foregroundDeletion", "orphan")]
        if fins:
            meta["finalizers"] = fins
        else:
            meta.pop("finalizers", None)

    def _delete_namespace(self, rt: ResourceType, name: str, old: dict[str, Any], new: dict[str, Any],
                          dry_run: bool) -> Outcome:
        if old["metadata"].get("deletionTimestamp"):
            return Outcome(old)
        new["metadata"]["deletionTimestamp"] = rfc3339(now())
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        t = rfc3339(now())
        new["status"] = {"phase": "Terminating", "conditions": [
            {"type": "NamespaceDeletionDiscoveryFailure", "status": "False", "lastTransitionTime": t,
             "reason": "ResourcesDiscovered", "message": "All resources successfully discovered"},
            {"type": "NamespaceDeletionContentFailure", "status": "False", "lastTransitionTime": t,
             "reason": "ContentDeleted", "message": "All content successfully deleted, may be waiting on finalization"},
        ]}
        if dry_run:
            return Outcome(new)
        self._commit([Change(rt.key, "", name, new, old)])
        self.on_delete_started()
        return Outcome(new)

    # --- scale (CRD subresources.scale) -------------------------------------------------------

    def get_scale(self, rt: ResourceType, ns: str, name: str) -> dict[str, Any]:
        obj = self.get(rt, ns, name)
        paths = _scale_paths(rt)
        meta = obj["metadata"]
        scale: dict[str, Any] = {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {}, "status": {"replicas": 0}}
        spec_replicas = _path_get(obj, paths.get("specReplicasPath", ""))
        if isinstance(spec_replicas, int):
            scale["spec"]["replicas"] = spec_replicas
        status_replicas = _path_get(obj, paths.get("statusReplicasPath", ""))
        if isinstance(status_replicas, int):
            scale["status"]["replicas"] = status_replicas
        selector = _path_get(obj, paths.get("labelSelectorPath", "")) if paths.get("labelSelectorPath") else None
        if isinstance(selector, str):
            scale["status"]["selector"] = selector
        return scale

    def update_scale(self, rt: ResourceType, ns: str, name: str, scale: Any) -> Outcome:
        old = self.get(rt, ns, name)
        if not isinstance(scale, dict) or not isinstance(scale.get("spec"), dict):
            raise E.bad_request("the body of the request must be an autoscaling/v1 Scale")
        replicas = scale["spec"].get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise E.invalid("Scale", "autoscaling", name, [E.invalid_field("spec.replicas", replicas,
                                                                           "must be greater than or equal to 0")])
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise E.stale(rt.plural, rt.group, name)
        new = copy.deepcopy(old)
        _path_set(new, _scale_paths(rt).get("specReplicasPath", ".spec.replicas"), replicas)
        out = self._write_update(rt, ns, name, new, old, [], False)
        return Outcome(self.get_scale(rt, ns, name), out.warnings)

    # --- binding -----------------------------------------------------------------------------

    def bind(self, rt: ResourceType, ns: str, name: str, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("target"), dict) or not body["target"].get("name"):
            raise E.invalid("Binding", "", name, [E.required_field("target.name")])
        old = self.get(rt, ns, name)
        node = (old.get("spec") or {}).get("nodeName")
        if node:
            raise E.conflict("pods/binding", "", name, f'pod {name} is already assigned to node "{node}"')
        if old["metadata"].get("deletionTimestamp"):
            raise E.conflict("pods/binding", "", name, f"pod {name} is being deleted, cannot be assigned to a host")
        new = copy.deepcopy(old)
        new["spec"]["nodeName"] = body["target"]["name"]
        status = new.setdefault("status", {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                      "lastTransitionTime": rfc3339(now())})
        status["conditions"] = conds
        self._commit([Change(rt.key, ns, name, new, old)])


def _compact(body: Any) -> str:
    text = json.dumps(body, separators=(",", ":"))
    return text if len(text) <= 200 else text[:200] + "..."


def _scale_paths(rt: ResourceType) -> dict[str, str]:
    return (crd_version(rt.crd, rt.version).get("subresources") or {}).get("scale") or {} if rt.crd else {}


def _path_get(obj: Any, path: str) -> Any:
    cur = obj
    for part in [p for p in path.split(".") if p]:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _path_set(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = [p for p in path.split(".") if p]
    cur = obj
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


def _service_account(ns: str) -> dict[str, Any]:
    """What the service-account controller would create in every new namespace."""
    return {"kind": "ServiceAccount", "apiVersion": "v1",
            "metadata": {"name": "default", "namespace": ns, "uid": str(uuid.uuid4()),
                         "creationTimestamp": rfc3339(now())}}


def _storage(rt: ResourceType) -> str:
    return storage_version(rt.crd) if rt.crd else rt.version


def _schema(rt: ResourceType) -> dict[str, Any] | None:
    if rt.crd is None:
        return None
    v = crd_version(rt.crd, rt.version)
    schema = (v.get("schema") or {}).get("openAPIV3Schema")
    return schema if isinstance(schema, dict) else None


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _ready_to_remove(obj: dict[str, Any]) -> bool:
    meta = obj["metadata"]
    return bool(meta.get("deletionTimestamp")) and not meta.get("finalizers") and \
        not meta.get("deletionGracePeriodSeconds") and obj.get("kind") != "Namespace"


def _pod_graceful(pod: dict[str, Any], grace: Any) -> bool:
    """CheckGracefulDelete: bound, non-terminal pods terminate through their kubelet."""
    if grace == 0:
        return False
    if not (pod.get("spec") or {}).get("nodeName"):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
