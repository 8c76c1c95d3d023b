"""One reconciliation of the whole ML capacity: a pure function from what the API server holds
to the pod changes and deployment statuses that should follow.

Placement is global (every deployment competes for every node), so the operator does not
reconcile deployments one by one: each pass reads all deployments, models, nodes and pods,
plans once, and returns
- the worker pods to create, delete, change the allocations of or set the batching knobs of, and
- the full status of every deployment.
The kopf handlers only gather the inputs and apply the outputs (tmd.operator.handlers).
Being a function of the current state, a pass can be repeated at any time, after any crash,
and converges: that is what makes killing the operator mid-reconcile harmless.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from tmd.api.deployment import DeploymentSpec, TmdBatching
from tmd.api.memory import MemoryEstimate
from tmd.api.resources import LABEL_DEPLOYMENT, LABEL_ROLE
from tmd.operator.assignment import (Route, allocation_status, assignment_state, current_allocations_for_planning,
                                     max_assigned_allocations, merge_routing_table, routing_table_from_dict,
                                     routing_table_to_dict)
from tmd.api.ml_nodes import ml_nodes_from_kubernetes
from tmd.operator.config import OperatorConfig
from tmd.operator.planner import DeploymentDemand, plan
from tmd.operator.pods import ANNOTATION_ALLOCATIONS, ANNOTATION_REPLACES, WORKER_ROLE, pod_name, worker_pod
from tmd.operator.routes import route_of_pod
from tmd.operator.worker_batching import running_batching
from tmd.api.status import RoutingState

Object = Mapping[str, Any]

# Measured: an idle `tmd worker` with a tiny model has an RSS of about 265 MB, against the 240 MB
# Elasticsearch budgets for its C++ process; 192 MiB on top keeps a margin for request buffers.
WORKER_RUNTIME_OVERHEAD_BYTES = 192 << 20


@dataclass(frozen=True)
class ClusterState:
    """What one pass reads. `worker_allocations` maps "namespace/pod" to the allocations a ready
    worker reported over its control endpoint (absent when unknown)."""

    deployments: Sequence[Object]
    models: Sequence[Object]
    nodes: Sequence[Object]
    pods: Sequence[Object]
    worker_allocations: Mapping[str, int] = field(default_factory=dict)
    # Whether the API server resizes pods in place (pods/resize); without it allocation changes
    # go through a surge replacement.
    inplace_resize: bool = True


@dataclass(frozen=True)
class PodChange:
    action: Literal["create", "delete", "set_allocations", "set_batching", "force_delete", "replace"]
    pod: Object
    allocations: int = 0
    memory_bytes: int = 0
    batching: TmdBatching | None = None  # set_batching: the knobs the worker is to run


@dataclass
class Reconciliation:
    pod_changes: list[PodChange] = field(default_factory=list)
    # (namespace, name) → the deployment's complete status
    statuses: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # (namespace, name) → the trained model's complete status
    model_statuses: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def model_status(model: Object) -> dict[str, Any]:
    """A model is fully defined once it names a definition with a known length. The model store
    writes such specs only after assembling and hashing every part; with kubectl, whoever applies
    the resource vouches for the URI, and workers verify the sha256 before loading."""
    definition = (model.get("spec") or {}).get("definition") or {}
    length = definition.get("total_definition_length")
    defined = bool(definition.get("uri")) and isinstance(length, int) and length > 0
    return {"fully_defined": defined, "model_size_bytes": length if defined else 0,
            "observedGeneration": model["metadata"].get("generation")}


@dataclass(frozen=True)
class _Resolved:
    resource: Object
    spec: DeploymentSpec | None
    model: Object | None
    error: str | None
    estimate: MemoryEstimate | None = None


def worker_memory_bytes(estimate: MemoryEstimate, allocations: int) -> int:
    """What a worker pod requests: Elasticsearch's estimate for its native process plus the
    Python runtime tmd's worker adds (torch, FastAPI, tokenizers). The planner charges nodes the
    same figure, so placement and pod requests never disagree."""
    return estimate.bytes_for(allocations) + WORKER_RUNTIME_OVERHEAD_BYTES


def pod_key(pod: Object) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def is_worker(pod: Object) -> bool:
    return (pod.get("metadata", {}).get("labels") or {}).get(LABEL_ROLE) == WORKER_ROLE


def _key(obj: Object) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _created(obj: Object) -> tuple[str, str]:
    return obj["metadata"].get("creationTimestamp") or "", obj["metadata"]["name"]


def resolve_deployments(deployments: Sequence[Object], models: Sequence[Object]) -> list[_Resolved]:
    """Parse each deployment and find its model; what cannot be deployed gets Elasticsearch's reason."""
    models_by_id: dict[tuple[str, str], Object] = {}
    for model in models:
        model_id = (model.get("spec") or {}).get("model_id")
        if model_id:
            models_by_id[(model["metadata"].get("namespace", ""), model_id)] = model
    seen: set[tuple[str, str]] = set()
    out: list[_Resolved] = []
    for resource in sorted(deployments, key=_created):
        namespace = resource["metadata"].get("namespace", "")
        try:
            spec = DeploymentSpec.model_validate(resource.get("spec") or {})
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            out.append(_Resolved(resource, None, None, f"Invalid deployment spec: {problems}"))
            continue
        errors = spec.validation_errors()
        if errors:
            out.append(_Resolved(resource, spec, None, "Validation Failed: " +
                                 "".join(f"{i}: {m};" for i, m in enumerate(errors, 1))))
            continue
        if (namespace, spec.deployment_id) in seen:
            out.append(_Resolved(resource, spec, None, "Could not start model deployment because an existing "
                                 f"deployment with the same id [{spec.deployment_id}] exist"))
            continue
        seen.add((namespace, spec.deployment_id))
        model = models_by_id.get((namespace, spec.model_id))
        if model is None:
            out.append(_Resolved(resource, spec, None, f"Could not find trained model [{spec.model_id}]"))
            continue
        model_spec, status = model.get("spec") or {}, model_status(model)
        if not status["fully_defined"]:
            out.append(_Resolved(resource, spec, model, f"Could not find trained model definition [{spec.model_id}]"))
            continue
        model_bytes = int(status["model_size_bytes"])
        metadata = model_spec.get("metadata") or {}
        estimate = MemoryEstimate(
            model_id=spec.model_id,
            model_bytes=model_bytes,
            per_deployment_memory_bytes=int(metadata.get("per_deployment_memory_bytes") or 0),
            per_allocation_memory_bytes=int(metadata.get("per_allocation_memory_bytes") or 0),
            cache_size_bytes=spec.cache_size_value(model_bytes).bytes,
        )
        out.append(_Resolved(resource, spec, model, None, estimate))
    return out


@dataclass(frozen=True)
class _NodeWorkers:
    """The worker pods of one deployment on one node: the one serving the route, a surge
    replacement being started for it, and anything else (duplicates, to delete)."""

    primary: Object
    replacement: Object | None = None
    extras: tuple[Object, ...] = ()


def _group(pods: Sequence[Object]) -> _NodeWorkers:
    ordered = sorted(pods, key=_created)
    names = {p["metadata"]["name"] for p in ordered}
    replaces = {p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(ANNOTATION_REPLACES) for p in ordered}
    originals = [p for p in ordered if replaces[p["metadata"]["name"]] not in names]
    primary = originals[0] if originals else ordered[0]
    candidates = [p for p in ordered if replaces[p["metadata"]["name"]] == primary["metadata"]["name"]]
    replacement = candidates[-1] if candidates else None
    extras = tuple(p for p in ordered if p is not primary and p is not replacement)
    return _NodeWorkers(primary, replacement, extras)


def _overlay(table: Mapping[str, Route], pods_by_node: Mapping[str, Object],
             worker_allocations: Mapping[str, int]) -> dict[str, Route]:
    """The routing table brought up to date with what the worker pods say: a pod's state is the
    route's state; a ready worker's reported allocations are its current allocations. A started
    route whose pod is gone (killed, node lost) is dropped: if still planned it starts anew."""
    out: dict[str, Route] = {}
    for node, route in table.items():
        pod = pods_by_node.get(node)
        if pod is None:
            if route.routing_state not in ("started", "stopping"):
                out[node] = route
            continue
        observed = route_of_pod(pod)
        current = route.current_allocations
        if observed.state is RoutingState.started:
            current = worker_allocations.get(pod_key(pod), current)
        out[node] = Route(current, route.target_allocations, observed.state.value, observed.reason)
    for node, pod in pods_by_node.items():
        if node not in out:
            # A worker the stored table does not know (e.g. the status write was lost in a crash).
            annotated = int((pod["metadata"].get("annotations") or {}).get(ANNOTATION_ALLOCATIONS, 0))
            observed = route_of_pod(pod)
            current = worker_allocations.get(pod_key(pod), annotated)
            out[node] = Route(current, annotated, observed.state.value, observed.reason)
    return dict(sorted(out.items()))


def reconcile(state: ClusterState, config: OperatorConfig, now: dt.datetime) -> Reconciliation:
    result = Reconciliation()
    result.model_statuses = {_key(m): model_status(m) for m in state.models}
    node_names = {n["metadata"]["name"] for n in state.nodes}
    ml_nodes = ml_nodes_from_kubernetes(state.nodes, state.pods, {"matchLabels": config.ml_node_selector},
                                        worker_pod=is_worker)
    workers: dict[tuple[str, str], dict[str, list[Object]]] = {}
    for pod in state.pods:
        if is_worker(pod):
            meta = pod["metadata"]
            owner = (meta.get("namespace", ""), (meta.get("labels") or {}).get(LABEL_DEPLOYMENT, ""))
            workers.setdefault(owner, {}).setdefault(pod["spec"].get("nodeName", ""), []).append(pod)

    resolved = resolve_deployments(state.deployments, state.models)
    tables: dict[tuple[str, str], dict[str, Route]] = {}
    groups: dict[tuple[str, str], dict[str, _NodeWorkers]] = {}
    demands: list[DeploymentDemand] = []
    for item in resolved:
        key = _key(item.resource)
        groups[key] = {node: _group(pods) for node, pods in workers.get(key, {}).items()}
        pods_by_node = {node: group.primary for node, group in groups[key].items()}
        for group in groups[key].values():  # one worker per (deployment, node): a duplicate is never kept
            result.pod_changes.extend(PodChange("delete", extra) for extra in group.extras)
        stored = routing_table_from_dict((item.resource.get("status") or {}).get("routing_table"))
        tables[key] = _overlay(stored, pods_by_node, state.worker_allocations)
        if item.error is None and item.estimate is not None and not item.resource["metadata"].get("deletionTimestamp"):
            spec = item.spec
            assert spec is not None
            demands.append(DeploymentDemand(
                deployment_id=spec.deployment_id, model_id=spec.model_id,
                number_of_allocations=spec.number_of_allocations, threads_per_allocation=spec.threads_per_allocation,
                memory_bytes=worker_memory_bytes(item.estimate, 1),
                memory_per_allocation_bytes=item.estimate.additional_allocation_bytes,
                priority=spec.priority.value, current=current_allocations_for_planning(tables[key]),
                max_assigned_allocations=int((item.resource.get("status") or {}).get("max_assigned_allocations") or 0),
            ))
    placement = plan(demands, ml_nodes)

    for item in resolved:
        key = _key(item.resource)
        existing = {node: group.primary for node, group in groups[key].items()}
        observed = tables[key]
        deleting = bool(item.resource["metadata"].get("deletionTimestamp"))
        planned: Mapping[str, int] = {}
        reason = item.error
        if item.error is None and item.spec is not None and not deleting:
            planned = placement.allocations(item.spec.deployment_id)
            reason = placement.reason(item.spec.deployment_id)
        stopping = [node for node, pod in existing.items() if pod["metadata"].get("deletionTimestamp")]
        merged = merge_routing_table(observed, planned, stopping_nodes=stopping)
        table = _overlay(merged, {n: p for n, p in existing.items() if n in merged}, state.worker_allocations)
        result.pod_changes.extend(_pod_changes(item, table, groups[key], node_names, config, state.inplace_resize))
        result.statuses[key] = _status(item, table, reason, deleting, now)
    return result


def _pod_changes(item: _Resolved, table: Mapping[str, Route], groups: Mapping[str, _NodeWorkers],
                 node_names: set[str], config: OperatorConfig, inplace_resize: bool) -> list[PodChange]:
    changes: list[PodChange] = []
    for node, group in groups.items():
        pod = group.primary
        if node not in node_names:
            # No kubelet will ever finish these pods' graceful deletion: remove them outright.
            changes.extend(PodChange("force_delete", p) for p in (pod, group.replacement) if p is not None)
        elif (node not in table or table[node].routing_state == "stopping") and not pod["metadata"].get("deletionTimestamp"):
            changes.extend(PodChange("delete", p) for p in (pod, group.replacement) if p is not None)
    if item.spec is None or item.estimate is None:
        return changes
    for node, route in table.items():
        if route.routing_state == "stopping" or node not in node_names:
            continue
        group = groups.get(node)
        target = route.target_allocations
        memory = worker_memory_bytes(item.estimate, target)
        if group is None:
            changes.append(PodChange("create", worker_pod(item.resource, item.spec, item.model or {}, node,
                                                          target, memory, config), target, memory))
            continue
        pod = group.primary
        if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
            changes.append(PodChange("delete", pod))  # a terminal pod never restarts; it is created anew
        elif _allocations(pod) != target or (route.routing_state == "started" and route.current_allocations != target):
            if inplace_resize:
                changes.append(PodChange("set_allocations", pod, target, memory))
            else:
                changes.extend(_surge(item, node, group, target, memory, config))
        elif group.replacement is not None:
            changes.append(PodChange("delete", group.replacement))  # the change it was for was undone
        if not any(c.pod is pod and c.action == "delete" for c in changes):
            changes.extend(_batching_change(pod, item.spec.batching()))
    return changes


def _batching_change(pod: Object, wanted: TmdBatching) -> list[PodChange]:
    """Set a started worker's batching knobs live when they differ from the spec's. A worker not
    yet started is left alone: it is asked once it serves (its pod may predate the change)."""
    if route_of_pod(pod).state is not RoutingState.started or running_batching(pod) == wanted:
        return []
    return [PodChange("set_batching", pod, batching=wanted)]


def _allocations(pod: Object) -> int:
    return int((pod["metadata"].get("annotations") or {}).get(ANNOTATION_ALLOCATIONS, 0))


def _surge(item: _Resolved, node: str, group: _NodeWorkers, target: int, memory: int,
           config: OperatorConfig) -> list[PodChange]:
    """Change allocations without in-place resize: start a replacement worker with the new
    allocations beside the old one, and remove the old one only once the new one serves."""
    replacement = group.replacement
    if replacement is not None and _allocations(replacement) != target:
        return [PodChange("delete", replacement)]  # made for an older target
    if replacement is None:
        assert item.spec is not None
        pod = worker_pod(item.resource, item.spec, item.model or {}, node, target, memory, config,
                         name=pod_name(f"{item.resource['metadata']['name']}-a{target}", node))
        pod["metadata"]["annotations"][ANNOTATION_REPLACES] = group.primary["metadata"]["name"]
        return [PodChange("replace", pod, target, memory)]
    if route_of_pod(replacement).state is RoutingState.started:
        return [PodChange("delete", group.primary)]
    return []


def _status(item: _Resolved, table: Mapping[str, Route], reason: str | None, deleting: bool,
            now: dt.datetime) -> dict[str, Any]:
    resource = item.resource
    previous = resource.get("status") or {}
    state = assignment_state(table, "stopping" if deleting else None)
    target = item.spec.number_of_allocations if item.spec else 0
    allocations = allocation_status(table, target, state)
    status: dict[str, Any] = {
        "assignment_state": state,
        "routing_table": routing_table_to_dict(table),
        "reason": reason,
        "start_time": previous.get("start_time") or _timestamp(now),
        "max_assigned_allocations": max_assigned_allocations(int(previous.get("max_assigned_allocations") or 0), table),
        "allocation_status": allocations.to_dict() if allocations else None,
        "model_bytes": item.estimate.model_bytes if item.estimate else None,
        "observedGeneration": resource["metadata"].get("generation"),
    }
    failed = [f"{node}: {route.reason}" for node, route in table.items() if route.routing_state == "failed"]
    fully = allocations is not None and allocations.state == "fully_allocated"
    conditions = [
        ("Ready", fully, "FullyAllocated" if fully else (allocations.state.title().replace("_", "") if allocations
                                                          else "Stopping"),
         f"{allocations.allocation_count} of {target} allocations started" if allocations else "deployment is stopping"),
        ("Progressing", not fully and not deleting and not reason and not failed,
         "Allocating" if not fully else "Complete", ""),
        ("Degraded", bool(reason or failed), "Unsatisfied" if reason else ("RouteFailed" if failed else "AsExpected"),
         " | ".join(([reason] if reason else []) + failed)),
    ]
    status["conditions"] = _conditions(previous.get("conditions") or [], conditions,
                                       resource["metadata"].get("generation"), now)
    return status


def _conditions(previous: Sequence[Mapping[str, Any]], wanted: Sequence[tuple[str, bool, str, str]],
                generation: int | None, now: dt.datetime) -> list[dict[str, Any]]:
    """metav1.Conditions; lastTransitionTime changes only when a condition's status does."""
    old = {c.get("type"): c for c in previous}
    out = []
    for type_, ok, reason, message in wanted:
        status = "True" if ok else "False"
        before = old.get(type_)
        changed = before is None or before.get("status") != status
        out.append({
            "type": type_, "status": status, "reason": reason, "message": message[:1024],
            "lastTransitionTime": _timestamp(now) if changed else before.get("lastTransitionTime"),
            "observedGeneration": generation,
        })
    return out


def _timestamp(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
