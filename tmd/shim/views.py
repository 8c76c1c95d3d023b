"""Pure functions from resources to Elasticsearch response bodies (es-api.md §1.4, §3, §6, §1.13)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping

from tmd.api.deployment import DEFAULT_MAX_BATCH_DELAY, DEFAULT_MAX_BATCH_SIZE
from tmd.api.errors import IllegalArgument
from tmd.api.memory import byte_size_string, required_native_memory_bytes
from tmd.api.trained_model import parse_trained_model_config

Object = Mapping[str, Any]

CONFIG_KEYS = ("model_id", "model_type", "inference_config", "input", "description", "tags", "metadata",
               "prefix_strings")
NATIVE_INDEX = ".ml-inference-native-000002"
CREATED_BY = "api_user"


def epoch_ms(timestamp: str | None) -> int | None:
    if not timestamp:
        return None
    return int(dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


def model_bytes(model: Object) -> int:
    definition = model.get("spec", {}).get("definition") or {}
    return int(definition.get("total_definition_length") or 0)


def fully_defined(model: Object) -> bool:
    definition = model.get("spec", {}).get("definition") or {}
    return bool(definition.get("uri")) and model_bytes(model) > 0


def model_aliases(model: Object) -> list[str]:
    return list((model.get("spec", {}).get("metadata") or {}).get("model_aliases") or [])


def model_config_body(model: Object, version: str, *, include_definition_status: bool = False) -> dict[str, Any]:
    """GET trained model's element: the stored config, defaults filled, plus server-stamped fields."""
    spec = model["spec"]
    config = parse_trained_model_config({k: spec[k] for k in CONFIG_KEYS if spec.get(k) is not None},
                                        for_creation=False).to_es()
    for options in config["inference_config"].values():
        if isinstance(options, dict):
            options["vocabulary"] = {"index": NATIVE_INDEX}
    body = {**config, "created_by": CREATED_BY, "version": version,
            "create_time": epoch_ms(model["metadata"].get("creationTimestamp")),
            "model_size_bytes": model_bytes(model), "estimated_operations": 0, "license_level": "platinum",
            "location": {"index": {"name": NATIVE_INDEX}}}
    if include_definition_status:
        body["fully_defined"] = fully_defined(model)
    return body


def _memory(model: Object) -> int:
    metadata = model["spec"].get("metadata") or {}
    return required_native_memory_bytes(
        model["spec"]["model_id"], model_bytes(model),
        per_deployment_memory_bytes=int(metadata.get("per_deployment_memory_bytes") or 0),
        per_allocation_memory_bytes=int(metadata.get("per_allocation_memory_bytes") or 0))


def task_parameters(deployment: Object, model: Object | None) -> dict[str, Any]:
    spec = deployment["spec"]
    status = deployment.get("status") or {}
    size = status.get("model_bytes") or (model_bytes(model) if model else 0)
    metadata = (model or {}).get("spec", {}).get("metadata") or {}
    return {
        "model_id": spec["model_id"],
        "deployment_id": spec.get("deployment_id") or spec["model_id"],
        "model_bytes": size,
        "threads_per_allocation": spec.get("threads_per_allocation", 1),
        "number_of_allocations": spec.get("number_of_allocations", 1),
        "queue_capacity": spec.get("queue_capacity", 1024),
        "cache_size": spec.get("cache_size") if spec.get("cache_size") is not None else f"{size}b",
        "priority": spec.get("priority", "normal"),
        "per_deployment_memory_bytes": int(metadata.get("per_deployment_memory_bytes") or 0),
        "per_allocation_memory_bytes": int(metadata.get("per_allocation_memory_bytes") or 0),
    }


def assignment_body(deployment: Object, model: Object | None) -> dict[str, Any]:
    """The assignment of es-api.md §3.1, from the resource the operator keeps up to date."""
    status = deployment.get("status") or {}
    table = {node: {"current_allocations": r.get("current_allocations", 0),
                    "target_allocations": r.get("target_allocations", 0),
                    "routing_state": r.get("routing_state", "starting"),
                    **({"reason": r["reason"]} if r.get("reason") else {})}
             for node, r in sorted((status.get("routing_table") or {}).items())}
    body: dict[str, Any] = {
        "task_parameters": task_parameters(deployment, model),
        "routing_table": table,
        "assignment_state": status.get("assignment_state") or "starting",
        "start_time": status.get("start_time") or deployment["metadata"].get("creationTimestamp"),
        "max_assigned_allocations": status.get("max_assigned_allocations", 0),
        "adaptive_allocations": deployment["spec"].get("adaptive_allocations"),
        "tmd_batching": tmd_batching(deployment["spec"]),  # tmd extension
    }
    if status.get("reason"):
        body["reason"] = status["reason"]
    return body


def deployment_observed(deployment: Object) -> bool:
    status = deployment.get("status") or {}
    return (status.get("observedGeneration") or 0) >= (deployment["metadata"].get("generation") or 1)


def failed_routes(deployment: Object) -> dict[str, str]:
    table = (deployment.get("status") or {}).get("routing_table") or {}
    return {node: r.get("reason", "") for node, r in sorted(table.items()) if r.get("routing_state") == "failed"}


def total_target_allocations(deployment: Object) -> int:
    table = (deployment.get("status") or {}).get("routing_table") or {}
    return sum(r.get("target_allocations", 0) for r in table.values()
               if r.get("routing_state") in ("starting", "started"))


# ---------------------------------------------------------------------------- stats (§6)

_COUNTERS = ("error_count", "rejected_execution_count", "timeout_count", "inference_count")


def node_identity(node: str, pod_ip: str | None, port: int) -> dict[str, Any]:
    return {node: {"name": node, "ephemeral_id": node, "transport_address": f"{pod_ip}:{port}" if pod_ip else "",
                   "attributes": {}, "roles": ["ml"]}}


def node_entry(node: str, route: Object, worker: Object | None, pod_ip: str | None, port: int) -> dict[str, Any]:
    """One element of `nodes`: the worker's own node stats when its route is started and it
    answered, else the short non-started form of §6.2."""
    identity = node_identity(node, pod_ip, port)
    state = route.get("routing_state", "starting")
    if state == "started" and worker is not None and isinstance(worker.get("node"), dict):
        return {"node": identity, **worker["node"]}
    routing_state = {"routing_state": state}
    if route.get("reason"):
        routing_state["reason"] = route["reason"]
    return {"node": identity, "routing_state": routing_state, "peak_throughput_per_minute": 0,
            "throughput_last_minute": 0}


def tmd_batching(spec: Object) -> dict[str, Any]:
    """The dynamic batching knobs in effect (a tmd extension): the spec's, or the workers' defaults."""
    given = spec.get("tmd_batching") or {}
    return {"max_batch_size": given.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE),
            "max_batch_delay": given.get("max_batch_delay", DEFAULT_MAX_BATCH_DELAY)}


def deployment_stats(deployment: Object, model: Object | None, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    spec = deployment["spec"]
    status = deployment.get("status") or {}
    params = task_parameters(deployment, model)
    state = status.get("assignment_state") or "starting"
    out: dict[str, Any] = {
        "deployment_id": params["deployment_id"], "model_id": params["model_id"],
        "threads_per_allocation": params["threads_per_allocation"],
        "number_of_allocations": params["number_of_allocations"],
        "queue_capacity": params["queue_capacity"], "state": state,
    }
    if spec.get("adaptive_allocations"):
        out["adaptive_allocations"] = spec["adaptive_allocations"]
    if status.get("reason"):
        out["reason"] = status["reason"]
    if state in ("starting", "started") and status.get("allocation_status"):
        out["allocation_status"] = status["allocation_status"]
    out["cache_size"] = params["cache_size"]
    out["priority"] = params["priority"]
    out["tmd_batching"] = tmd_batching(spec)
    start = epoch_ms(status.get("start_time") or deployment["metadata"].get("creationTimestamp"))
    if start is not None:
        out["start_time"] = start
    for counter in _COUNTERS:
        total = sum(int(n.get(counter) or 0) for n in nodes)
        if total > 0:
            out[counter] = total
    out["peak_throughput_per_minute"] = sum(int(n.get("peak_throughput_per_minute") or 0) for n in nodes)
    out["nodes"] = sorted(nodes, key=lambda n: next(iter(n["node"])))
    return out


def model_stats(model: Object, deployments: list[dict[str, Any]], human: bool = False) -> list[dict[str, Any]]:
    """The elements of `trained_model_stats` for one model: one per deployment (sorted by
    deployment id), or a single one without `deployment_stats` when it has none (§1.5).
    `human` adds the `model_size` / `required_native_memory` strings ("1.5kb", "240mb")."""
    size = model_bytes(model)
    memory = _memory(model)
    size_stats: dict[str, Any] = {"model_size_bytes": size, "required_native_memory_bytes": memory}
    if human:
        size_stats = {"model_size": byte_size_string(size), "model_size_bytes": size,
                      "required_native_memory": byte_size_string(memory), "required_native_memory_bytes": memory}
    base = {"model_id": model["spec"]["model_id"], "model_size_stats": size_stats, "pipeline_count": 0}
    if not deployments:
        return [{**base, "inference_stats": _inference_stats(0, 0)}]
    out = []
    for stats in sorted(deployments, key=lambda d: d["deployment_id"]):
        count = int(stats.get("inference_count") or 0)
        failures = sum(int(stats.get(c) or 0) for c in ("error_count", "timeout_count", "rejected_execution_count"))
        out.append({**base, "inference_stats": _inference_stats(count, failures), "deployment_stats": stats})
    return out


def _inference_stats(count: int, failures: int) -> dict[str, Any]:
    return {"failure_count": failures, "inference_count": count, "cache_miss_count": 0,
            "missing_all_fields_count": 0, "timestamp": int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)}


# ---------------------------------------------------------------------------- _cat (§1.13)

CAT_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id",), "created_by": ("c", "createdBy"), "heap_size": ("hs", "modelHeapSize"),
    "operations": ("o", "modelOperations"), "license": ("l",), "create_time": ("ct",), "version": ("v",),
    "description": ("d",), "ingest.pipelines": ("ip", "ingestPipelines"), "ingest.count": ("ic",),
    "ingest.time": ("it",), "ingest.current": ("icurr",), "ingest.failed": ("if",),
    "data_frame.id": ("dfid", "dataFrameAnalytics"), "data_frame.create_time": ("dft",),
    "data_frame.source_index": ("dfsi",), "data_frame.analysis": ("dfa",), "type": ("type",),
}
CAT_DEFAULT = ("id", "heap_size", "operations", "create_time", "type", "ingest.pipelines", "data_frame.id")


def cat_row(model: Object, version: str) -> dict[str, Any]:
    spec = model["spec"]
    return {
        "id": spec["model_id"], "created_by": CREATED_BY, "heap_size": f"{model_bytes(model)}b",
        "operations": "0", "license": "PLATINUM",
        "create_time": model["metadata"].get("creationTimestamp"), "version": version,
        "description": spec.get("description") or "", "ingest.pipelines": "0", "ingest.count": "0",
        "ingest.time": "0", "ingest.current": "0", "ingest.failed": "0", "data_frame.id": "__none__",
        "data_frame.create_time": "", "data_frame.source_index": "", "data_frame.analysis": "",
        "type": spec.get("model_type", "pytorch"),
    }


def cat_columns(h: str | None) -> list[str]:
    if not h:
        return list(CAT_DEFAULT)
    by_alias = {alias: name for name, aliases in CAT_COLUMNS.items() for alias in (name, *aliases)}
    out = []
    for wanted in h.split(","):
        name = by_alias.get(wanted.strip())
        if name is None:
            raise IllegalArgument(f"header [{wanted.strip()}] is not found")
        out.append(name)
    return out


def cat_text(rows: Iterable[dict[str, Any]], columns: list[str], header: bool) -> str:
    table = [[str(row.get(c, "")) for c in columns] for row in rows]
    if header:
        table.insert(0, list(columns))
    if not table:
        return ""
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    return "".join(" ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() + "\n" for r in table)
