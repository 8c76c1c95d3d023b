"""Pure functions from deployment resources, their `_stats` elements and events to what the
console draws: one row per deployment, the nodes × deployments grid with each ML node's
capacity, the event list.

The browser only lays these out; every number and word it shows is decided here, where tests
call it directly.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from tmd.api.ml_nodes import MLNode
from tmd.shim.console.series import Point
from tmd.shim.views import fully_defined

Object = Mapping[str, Any]
MAX_EVENTS = 50


def node_name(entry: Object) -> str:
    return next(iter(entry["node"]))


def allocations(deployment: Object, stats: Object) -> tuple[int, int]:
    """(placed, target): the operator's allocation_status when it wrote one, else the routing table."""
    status = deployment.get("status") or {}
    allocation_status = status.get("allocation_status") or {}
    target = int(allocation_status.get("target_allocation_count", stats.get("number_of_allocations") or 0))
    if "allocation_count" in allocation_status:
        return int(allocation_status["allocation_count"]), target
    table = status.get("routing_table") or {}
    placed = sum(int(r.get("current_allocations") or 0) for r in table.values() if r.get("routing_state") == "started")
    return placed, target


def queue_fill(stats: Object) -> float:
    """The fullest worker queue, 0..1: each worker has its own queue of queue_capacity, and the
    first one full answers 429."""
    capacity = int(stats.get("queue_capacity") or 0)
    if capacity <= 0:
        return 0.0
    pending = [int(n.get("number_of_pending_requests") or 0) for n in stats.get("nodes") or []]
    return min(1.0, max(pending, default=0) / capacity)


def routes(deployment: Object, stats: Object) -> list[dict[str, Any]]:
    """The routing table, one entry per node, with what each worker reported."""
    table = (deployment.get("status") or {}).get("routing_table") or {}
    by_node = {node_name(e): e for e in stats.get("nodes") or []}
    out = []
    for node in sorted(table):
        route, entry = table[node], by_node.get(node, {})
        out.append({
            "node": node, "state": route.get("routing_state", "starting"), "reason": route.get("reason") or "",
            "current_allocations": int(route.get("current_allocations") or 0),
            "target_allocations": int(route.get("target_allocations") or 0),
            "pending": int(entry.get("number_of_pending_requests") or 0),
            "inference_count": int(entry.get("inference_count") or 0),
        })
    return out


def conditions(deployment: Object) -> list[dict[str, str]]:
    return [{"type": str(c.get("type")), "status": str(c.get("status")), "reason": str(c.get("reason") or ""),
             "message": str(c.get("message") or ""), "since": str(c.get("lastTransitionTime") or "")}
            for c in (deployment.get("status") or {}).get("conditions") or []]


def deployment_row(deployment: Object, stats: Object, point: Point | None,
                   latency_ms: tuple[float | None, float | None]) -> dict[str, Any]:
    """One line of the deployments table. `point` is the latest chart sample (throughput now),
    `latency_ms` the p50/p99 of the last minute's requests."""
    placed, target = allocations(deployment, stats)
    nodes = stats.get("nodes") or []
    return {
        "deployment_id": stats["deployment_id"], "model_id": stats["model_id"], "state": stats.get("state", ""),
        "reason": stats.get("reason") or "", "allocations": placed, "target_allocations": target,
        "threads_per_allocation": int(stats.get("threads_per_allocation") or 1), "priority": stats.get("priority"),
        "queue_capacity": int(stats.get("queue_capacity") or 0), "queue_fill": round(queue_fill(stats), 4),
        "pending": sum(int(n.get("number_of_pending_requests") or 0) for n in nodes),
        "throughput": round(point.throughput, 2) if point and point.throughput is not None else None,
        "throughput_last_minute": sum(int(n.get("throughput_last_minute") or 0) for n in nodes),
        "p50_ms": _round(latency_ms[0]), "p99_ms": _round(latency_ms[1]),
        "inference_count": int(stats.get("inference_count") or 0),
        "errors": int(stats.get("error_count") or 0), "rejected": int(stats.get("rejected_execution_count") or 0),
        "timeouts": int(stats.get("timeout_count") or 0), "cache_size": stats.get("cache_size"),
        "adaptive_allocations": stats.get("adaptive_allocations"),
        "routes": routes(deployment, stats), "conditions": conditions(deployment),
    }


def _round(value: float | None) -> float | None:
    return round(value, 2) if value is not None else None


NOT_ML_NODE_REASON = "not an ML node: gone from the cluster, or the ML node selector does not pick it"


def grid(rows: Sequence[Mapping[str, Any]], ml_nodes: Sequence[MLNode] | None) -> dict[str, Any]:
    """Nodes × deployments: `cells[i][j]` is node i's route of deployment j (None where that
    deployment has no route on the node).

    The nodes are every ML node, idle ones too, so free capacity shows, plus any other node a
    routing table names (one that left the cluster or lost the ML label while its route remains).
    `ml_nodes` None means the nodes could not be listed: then only routed nodes, capacity unknown.
    """
    ml = {n.name: n for n in ml_nodes or ()}
    names = sorted(set(ml) | {r["node"] for row in rows for r in row["routes"]})
    by_key = {(r["node"], row["deployment_id"]): r for row in rows for r in row["routes"]}
    deployments = [row["deployment_id"] for row in rows]
    cells = [[_cell(by_key.get((node, d))) for d in deployments] for node in names]
    failed = sum(1 for line in cells for c in line if c and c["state"] == "failed")
    used = used_processors(rows)
    nodes = [_node(name, ml.get(name), used.get(name, 0), ml_nodes is not None) for name in names]
    return {"nodes": nodes, "deployments": deployments, "cells": cells, "failed_routes": failed}


def used_processors(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Processors tmd allocations take per node: each route's target allocations × its
    deployment's threads, what the worker pod requests. Low priority deployments take none, as
    in the operator's planner (their pod asks for a fraction of a CPU)."""
    used: dict[str, int] = {}
    for row in rows:
        if row.get("priority") == "low":
            continue
        for route in row["routes"]:
            used[route["node"]] = used.get(route["node"], 0) + route["target_allocations"] * row["threads_per_allocation"]
    return used


def _node(name: str, ml_node: MLNode | None, used: int, listed: bool) -> dict[str, Any]:
    """A grid row's header: the node's allocated processors (None when unknown), those tmd's
    allocations use, and whether it can take allocations (`reason` says why not; `ready` None
    when the nodes could not be listed)."""
    if ml_node is None:
        return {"name": name, "ml_node": False, "ready": False if listed else None,
                "reason": NOT_ML_NODE_REASON if listed else "",
                "processors": None, "used_processors": used}
    return {"name": name, "ml_node": True, "ready": ml_node.assignable, "reason": ml_node.unassignable_reason,
            "processors": ml_node.processors, "used_processors": used}


def _cell(route: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if route is None:
        return None
    return {k: route[k] for k in ("state", "reason", "current_allocations", "target_allocations", "pending")}


def event_rows(events: Iterable[Object], deployments: Iterable[Object]) -> list[dict[str, str]]:
    """The newest events about deployments, models and worker pods, each with the deployment it
    concerns. A worker pod is named `<deployment resource name>-<node>` (tmd/operator/pods.py):
    the longest resource name that prefixes the pod's name is its deployment."""
    names = {d["metadata"]["name"]: d["spec"]["deployment_id"] for d in deployments}
    out = []
    for event in events:
        involved = event.get("involvedObject") or {}
        kind, name = involved.get("kind"), str(involved.get("name") or "")
        if kind == "TrainedModelDeployment":
            about = names.get(name, name)
        elif kind == "TrainedModel":
            about = ""
        elif kind == "Pod":
            owners = [n for n in names if name.startswith(n + "-")]
            if not owners:
                continue
            about = names[max(owners, key=len)]
        else:
            continue
        out.append({"time": str(event.get("lastTimestamp") or event.get("eventTime") or
                                (event.get("metadata") or {}).get("creationTimestamp") or ""),
                    "type": str(event.get("type") or ""), "reason": str(event.get("reason") or ""),
                    "object": f"{kind}/{name}", "deployment_id": about, "message": str(event.get("message") or ""),
                    "count": str(event.get("count") or 1)})
    out.sort(key=lambda e: e["time"], reverse=True)
    return out[:MAX_EVENTS]


def models(model_resources: Iterable[Object]) -> list[dict[str, Any]]:
    """What the start and infer forms offer: each model id with its input field."""
    out = []
    for m in sorted(model_resources, key=lambda m: m["spec"]["model_id"]):
        fields = ((m["spec"].get("input") or {}).get("field_names") or ["text_field"])
        out.append({"model_id": m["spec"]["model_id"], "input_field": fields[0], "fully_defined": fully_defined(m)})
    return out
