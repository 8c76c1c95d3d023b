"""`GET _ml/info` and `GET _ml/memory[/{node_id}]/_stats` from the cluster's ML nodes.

Elasticsearch computes both from its ML nodes' processors and memory; tmd's ML nodes are the
Kubernetes nodes the operator plans onto, with the capacity the operator's planner sees
(`tmd.api.ml_nodes`: allocatable less what other workloads request, processors rounded down).
Pure functions over Kubernetes objects; the shim's route only lists nodes and pods.
"""

from __future__ import annotations

import asyncio
import fnmatch
from decimal import Decimal
from typing import Any, Iterable, Mapping

from tmd.api.errors import IllegalArgument
from tmd.api.memory import MB, NATIVE_EXECUTABLE_CODE_OVERHEAD_BYTES, byte_size_string
from tmd.api.ml_nodes import MLNode, matches_selector, ml_nodes_from_kubernetes, parse_quantity_value, pod_requests
from tmd.api.resources import LABEL_ROLE

Object = dict[str, Any]

# AnalysisLimits / Job / DatafeedConfig defaults Elasticsearch reports under `defaults` (tmd runs no
# anomaly detection jobs or datafeeds; the values are Elasticsearch's so clients read what they expect).
DEFAULT_MODEL_MEMORY_LIMIT_BYTES = 1024 * MB
CATEGORIZATION_EXAMPLES_LIMIT = 4
MODEL_SNAPSHOT_RETENTION_DAYS = 10
DAILY_MODEL_SNAPSHOT_RETENTION_AFTER_DAYS = 1
DATAFEED_SCROLL_SIZE = 1000
# max(Job.PROCESS_MEMORY_OVERHEAD, DataFrameAnalyticsConfig.PROCESS_MEMORY_OVERHEAD): what
# calculateEffectiveMaxModelMemoryLimit keeps back besides the native code overhead.
PROCESS_MEMORY_OVERHEAD_BYTES = 10 * MB


def is_worker(pod: Mapping[str, Any]) -> bool:
    """A tmd worker pod (the label the operator puts on them and ShimKube.list_worker_pods selects)."""
    return ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_ROLE) == "worker"


def _mb_string(n: int) -> str:
    """`ByteSizeValue.ofMb(toMB(n)).getStringRep()`: whole megabytes, rounded down."""
    return f"{max(0, n) // MB}mb"


def ml_memory_bytes(node: MLNode) -> int:
    """What ML may use on a node before the native code overhead (Elasticsearch's `ml.max`)."""
    return node.memory_bytes + NATIVE_EXECUTABLE_CODE_OVERHEAD_BYTES if node.memory_bytes else 0


def ml_info(nodes: Iterable[MLNode], version: str) -> Object:
    """The `GET _ml/info` body (TransportMlInfoAction) over the assignable ML nodes.

    `effective_max_model_memory_limit` is the largest node's ML memory less the native code and
    process overheads, `total_ml_memory` the sum over nodes, both in whole megabytes
    (calculateEffectiveMaxModelMemoryLimit, calculateTotalMlMemory); without ML nodes the first
    and the processor counts are left out. `max_model_memory_limit` is Elasticsearch's
    `xpack.ml.max_model_memory_limit` setting, which tmd does not have: never present.
    """
    usable = [n for n in nodes if n.assignable]
    limits: Object = {}
    default_limit = DEFAULT_MODEL_MEMORY_LIMIT_BYTES
    if usable:
        largest = max(n.memory_bytes for n in usable)
        limits["effective_max_model_memory_limit"] = _mb_string(largest - PROCESS_MEMORY_OVERHEAD_BYTES)
        limits["total_ml_memory"] = _mb_string(sum(ml_memory_bytes(n) for n in usable))
        limits["total_ml_processors"] = sum(n.processors for n in usable)
        limits["max_single_ml_node_processors"] = max(n.processors for n in usable)
        default_limit = min(default_limit, (max(0, largest - PROCESS_MEMORY_OVERHEAD_BYTES) // MB) * MB) \
            or default_limit
    else:
        limits["total_ml_memory"] = "0mb"
    return {
        "defaults": {
            "anomaly_detectors": {
                "model_memory_limit": _mb_string(default_limit) if default_limit % (1024 * MB)
                else byte_size_string(default_limit),
                "categorization_examples_limit": CATEGORIZATION_EXAMPLES_LIMIT,
                "model_snapshot_retention_days": MODEL_SNAPSHOT_RETENTION_DAYS,
                "daily_model_snapshot_retention_after_days": DAILY_MODEL_SNAPSHOT_RETENTION_AFTER_DAYS,
            },
            "datafeeds": {"scroll_size": DATAFEED_SCROLL_SIZE},
        },
        "upgrade_mode": False,
        "native_code": {"version": version, "build_hash": "tmd"},
        "limits": limits,
    }


def _bytes_field(out: Object, name: str, value: int, human: bool) -> None:
    """XContentBuilder.humanReadableField: `<name>_in_bytes`, and `<name>` too with `human`."""
    if human:
        out[name] = byte_size_string(value)
    out[f"{name}_in_bytes"] = value


def _node_matches(node: Mapping[str, Any], expressions: list[str]) -> bool:
    """DiscoveryNodes.resolveNodes, for what a node of tmd has: `_all`, `*`, names, uids, wildcards."""
    meta = node.get("metadata") or {}
    for expr in expressions:
        if expr in ("_all", "*") or fnmatch.fnmatchcase(meta.get("name", ""), expr) or expr == meta.get("uid"):
            return True
    return False


def _node_filter_matches(node: Mapping[str, Any], expressions: list[str]) -> bool:
    """`_node_matches` plus the role filters (`ml:true`): every node tmd knows is an ML node and
    nothing else (no master, data or ingest role)."""
    plain = []
    for expr in expressions:
        role, sep, value = expr.partition(":")
        if sep and value in ("true", "false"):
            if (role == "ml") == (value == "true"):
                return True
        else:
            plain.append(expr)
    return bool(plain) and _node_matches(node, plain)


# The nodes info metrics Elasticsearch knows (NodesInfoMetrics.Metric); tmd answers `os` only.
NODES_INFO_METRICS = ("settings", "os", "process", "jvm", "thread_pool", "transport", "http", "remote_cluster_server",
                      "plugins", "ingest", "aggregations", "indices")


def nodes_os_info(k8s_nodes: list[Object], pods: list[Object], selector: Mapping[str, Any] | None, node_id: str,
                  metric: str, path: str, cluster_name: str, version: str) -> Object:
    """`GET _nodes/{node_id}/os` over the ML nodes: what Kibana's trained models page reads to
    recommend model variants (`os.name`, `os.arch`, from the kubelet's node info)."""
    metrics = [m for m in metric.split(",") if m]
    unknown = [m for m in metrics if m not in NODES_INFO_METRICS + ("_all", "_none")]
    if unknown:
        raise IllegalArgument(f"request [{path}] contains unrecognized metric" + (
            f": [{unknown[0]}]" if len(unknown) == 1 else "s: " + ", ".join(f"[{m}]" for m in unknown)))
    unserved = sorted({m for m in metrics if m not in ("os", "_none")})
    if unserved:
        raise IllegalArgument(f"tmd serves only the [os] metric of nodes info, not {unserved}")
    ml = [n for n in k8s_nodes if matches_selector((n.get("metadata") or {}).get("labels"), selector)
          and _node_filter_matches(n, node_id.split(","))]
    capacities = {n.name: n for n in ml_nodes_from_kubernetes(ml, pods, None, worker_pod=is_worker)}
    nodes: Object = {}
    for node in sorted(ml, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        if not capacities[name].ready:
            continue
        info = (node.get("status") or {}).get("nodeInfo") or {}
        try:
            available = int(parse_quantity_value(((node.get("status") or {}).get("capacity") or {}).get("cpu", 0)))
        except ValueError:
            available = 0
        entry: Object = {"name": name, "transport_address": _address(node), "host": _address(node),
                         "ip": _address(node), "version": version, "build_flavor": "default", "build_type": "tmd",
                         "build_hash": "tmd", "roles": ["ml"], "attributes": {}}
        if "os" in metrics:
            os_name = str(info.get("operatingSystem") or "")
            entry["os"] = {"refresh_interval_in_millis": 1000, "name": os_name.capitalize(),
                           "pretty_name": str(info.get("osImage") or os_name), "arch": str(info.get("architecture") or ""),
                           "version": str(info.get("kernelVersion") or ""), "available_processors": available,
                           "allocated_processors": capacities[name].processors}
        nodes[name] = entry
    return {"_nodes": {"total": len(nodes), "successful": len(nodes), "failed": 0}, "cluster_name": cluster_name,
            "nodes": nodes}


def _address(node: Mapping[str, Any]) -> str:
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return str(address.get("address"))
    return str((node.get("metadata") or {}).get("name"))


def memory_stats(k8s_nodes: list[Object], pods: list[Object], selector: Mapping[str, Any] | None,
                 node_id: str | None, cluster_name: str, human: bool = False) -> Object:
    """The `GET _ml/memory/_stats` body (MlMemoryAction.Response inside the nodes response).

    Per ML node: `mem.total` its memory capacity, `mem.ml.max` what ML may use (allocatable less
    other workloads' requests), `native_inference` the memory requests of the tmd worker pods on
    it (each sized by the deployment memory estimate), `native_code_overhead` 30mb while a worker
    runs there. tmd has no JVM, anomaly detectors or data frame analytics: those are 0. Nodes
    are keyed by name, the node id tmd uses everywhere (`node_id` also matches Kubernetes uids).
    """
    ml = [n for n in k8s_nodes if matches_selector((n.get("metadata") or {}).get("labels"), selector)]
    if node_id:
        ml = [n for n in ml if _node_matches(n, node_id.split(","))]
    capacities = {n.name: n for n in ml_nodes_from_kubernetes(ml, pods, None, worker_pod=is_worker)}
    nodes: Object = {}
    for node in sorted(ml, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        if not capacities[name].ready:  # a node not ready is one that left the cluster, for Elasticsearch
            continue
        workers = [p for p in pods if (p.get("spec") or {}).get("nodeName") == name and is_worker(p)
                   and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        inference = sum(int(pod_requests(p)[1]) for p in workers)
        try:
            total = int(parse_quantity_value(((node.get("status") or {}).get("capacity") or {}).get("memory", 0)))
        except ValueError:
            total = 0
        capacity = capacities[name]
        mem: Object = {}
        _bytes_field(mem, "total", total, human)
        _bytes_field(mem, "adjusted_total", total, human)
        ml_mem: Object = {}
        _bytes_field(ml_mem, "max", ml_memory_bytes(capacity), human)
        _bytes_field(ml_mem, "native_code_overhead", NATIVE_EXECUTABLE_CODE_OVERHEAD_BYTES if workers else 0, human)
        _bytes_field(ml_mem, "anomaly_detectors", 0, human)
        _bytes_field(ml_mem, "data_frame_analytics", 0, human)
        _bytes_field(ml_mem, "native_inference", inference, human)
        mem["ml"] = ml_mem
        jvm: Object = {}
        for field in ("heap_max", "java_inference_max", "java_inference"):
            _bytes_field(jvm, field, 0, human)
        # Keyed by node name: the id trained model stats give the node (views.node_identity), so
        # clients can join the two (Kibana's ML node overview does).
        nodes[name] = {
            "name": name,
            "ephemeral_id": name,
            "transport_address": _address(node),
            "attributes": {"ml.machine_memory": str(total),
                           "ml.allocated_processors": str(capacity.processors),
                           "ml.allocated_processors_double": str(float(Decimal(capacity.processors)))},
            "roles": ["ml"],
            "mem": mem,
            "jvm": jvm,
        }
    return {"_nodes": {"total": len(nodes), "successful": len(nodes), "failed": 0}, "cluster_name": cluster_name,
            "nodes": nodes}


async def cluster_ml_nodes(shim: Any) -> list[MLNode]:
    """The ML nodes of the shim's cluster (those the ML node selector picks) with the capacity the
    operator's planner sees: one list of nodes and one of pods. `_ml/info` and the console's grid."""
    nodes, pods = await asyncio.gather(asyncio.to_thread(shim.kube.list_nodes),
                                       asyncio.to_thread(shim.kube.list_all_pods))
    selector = {"matchLabels": shim.settings.ml_node_selector}
    return ml_nodes_from_kubernetes(nodes, pods, selector, worker_pod=is_worker)


async def info(shim: Any) -> Object:
    """`GET _ml/info` for the shim's cluster."""
    return ml_info(await cluster_ml_nodes(shim), shim.settings.version)


async def memory(shim: Any, node_id: str | None, human: bool) -> Object:
    """`GET _ml/memory[/{node_id}]/_stats` for the shim's cluster."""
    nodes, pods = await asyncio.gather(asyncio.to_thread(shim.kube.list_nodes),
                                       asyncio.to_thread(shim.kube.list_all_pods))
    return memory_stats(nodes, pods, {"matchLabels": shim.settings.ml_node_selector}, node_id,
                        shim.settings.cluster_name, human)


async def nodes_info(shim: Any, node_id: str, metric: str, path: str) -> Object:
    """`GET _nodes/{node_id}/{metric}` (the `os` metric) for the shim's cluster."""
    nodes, pods = await asyncio.gather(asyncio.to_thread(shim.kube.list_nodes),
                                       asyncio.to_thread(shim.kube.list_all_pods))
    return nodes_os_info(nodes, pods, {"matchLabels": shim.settings.ml_node_selector}, node_id, metric, path,
                         shim.settings.cluster_name, shim.settings.version)
