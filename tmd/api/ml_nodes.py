"""ML nodes and what they can give to tmd workers, derived from Kubernetes objects.

Pure functions over the dicts the Kubernetes API returns (`Node`, `Pod`), so the operator can
feed them whatever it watched and tests need no cluster. In `tmd.api` because two sides read the
same capacity: the operator's planner, and the shim's `GET _ml/info` / `GET _ml/memory/_stats`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from tmd.api.memory import NATIVE_EXECUTABLE_CODE_OVERHEAD_BYTES

#: Annotation on a Node that overrides its allocatable CPU for tmd (like `ml.allocated_processors`).
ALLOCATED_PROCESSORS_ANNOTATION = "ml.tmd.dev/allocated-processors"
#: Default node label whose value is the node's zone.
ZONE_LABEL = "topology.kubernetes.io/zone"
#: Label that marks tmd worker pods; their requests are what the planner itself accounts for.
WORKER_POD_LABEL = "ml.tmd.dev/deployment-id"

NOT_READY_REASON = "This node is not ready"


@dataclass(frozen=True)
class MLNode:
    """An ML node as the planner sees it.

    `processors` and `memory_bytes` are what tmd workers may use: allocatable minus the requests
    of every other workload on the node (and, for memory, the per-node native overhead).
    `error` explains why the node cannot be used even though it exists (ES's node-load error).
    """

    name: str
    zone: str = ""
    processors: int = 0
    memory_bytes: int = 0
    ready: bool = True
    error: str = ""

    @property
    def assignable(self) -> bool:
        return self.ready and not self.error

    @property
    def unassignable_reason(self) -> str:
        return self.error or ("" if self.ready else NOT_READY_REASON)


def parse_quantity_value(value: str | int | float) -> Decimal:
    """A Kubernetes quantity ("8Gi", "500m", "1e3") as a Decimal; ValueError if malformed."""
    return parse_quantity(value)


def matches_selector(labels: Mapping[str, str] | None, selector: Mapping[str, Any] | None) -> bool:
    """Whether `labels` match a `LabelSelector` dict (`matchLabels` and `matchExpressions`).

    Hand-written because the kubernetes client only sends selectors to the server as strings; an
    empty or missing selector matches everything, as in Kubernetes.
    """
    labels = labels or {}
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key = expression["key"]
        operator = expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown label selector operator [{operator}]")
    return True


def is_worker_pod(pod: Mapping[str, Any]) -> bool:
    return WORKER_POD_LABEL in ((pod.get("metadata") or {}).get("labels") or {})


def pod_requests(pod: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
    """(cpu, memory) the scheduler charges a pod with on its node.

    Kubernetes' rule: the larger of the sum over app containers (plus restartable "sidecar" init
    containers) and any single init container, plus the pod overhead; a container without a
    request but with a limit is charged its limit.
    """
    spec = pod.get("spec") or {}

    def container(c: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
        resources = c.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        cpu = requests.get("cpu", limits.get("cpu", 0))
        memory = requests.get("memory", limits.get("memory", 0))
        return parse_quantity(cpu), parse_quantity(memory)

    cpu = memory = Decimal(0)
    sidecar_cpu = sidecar_memory = Decimal(0)
    init_cpu = init_memory = Decimal(0)
    for c in spec.get("initContainers") or []:
        c_cpu, c_memory = container(c)
        if c.get("restartPolicy") == "Always":
            sidecar_cpu += c_cpu
            sidecar_memory += c_memory
        else:
            # a regular init container runs after the sidecars started before it
            init_cpu = max(init_cpu, sidecar_cpu + c_cpu)
            init_memory = max(init_memory, sidecar_memory + c_memory)
    for c in spec.get("containers") or []:
        c_cpu, c_memory = container(c)
        cpu += c_cpu
        memory += c_memory
    cpu = max(cpu + sidecar_cpu, init_cpu)
    memory = max(memory + sidecar_memory, init_memory)
    overhead = spec.get("overhead") or {}
    cpu += parse_quantity(overhead.get("cpu", 0))
    memory += parse_quantity(overhead.get("memory", 0))
    return cpu, memory


def _is_ready(node: Mapping[str, Any]) -> bool:
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return False
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def ml_node_from_kubernetes(
    node: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    *,
    zone_label: str = ZONE_LABEL,
    worker_pod: Callable[[Mapping[str, Any]], bool] = is_worker_pod,
) -> MLNode:
    """Derive an `MLNode` from a Node and the pods (any, they are filtered by node) on it.

    Processors are rounded *down* to whole CPUs: worker pods request whole CPUs (Guaranteed QoS,
    so a static CPU manager can pin cores), so a fraction of a CPU can host no allocation.
    Pods in a terminal phase hold no resources; tmd worker pods are left out because the planner
    accounts for them itself (counting them here would make every allocation pay twice).
    A cordoned (unschedulable) node is treated as not ready: no new worker could land there.
    """
    metadata = node.get("metadata") or {}
    name = metadata["name"]
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    error = ""
    try:
        cpu = parse_quantity(allocatable.get("cpu", 0))
        memory = parse_quantity(allocatable.get("memory", 0))
    except ValueError as e:
        return MLNode(name, labels.get(zone_label, ""), 0, 0, _is_ready(node), f"Invalid allocatable resources: {e}")
    override = annotations.get(ALLOCATED_PROCESSORS_ANNOTATION)
    if override is not None:
        try:
            cpu = parse_quantity(override)
            if cpu < 0:
                raise ValueError("must not be negative")
        except ValueError:
            error = (
                f"Invalid value [{override}] of annotation [{ALLOCATED_PROCESSORS_ANNOTATION}]; "
                "expected a non-negative CPU quantity such as [4] or [3500m]"
            )
            cpu = Decimal(0)
    for pod in pods:
        spec = pod.get("spec") or {}
        if spec.get("nodeName") != name or worker_pod(pod):
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        try:
            pod_cpu, pod_memory = pod_requests(pod)
        except ValueError:
            continue  # the API server validates quantities; an unreadable one is not ours to charge
        cpu -= pod_cpu
        memory -= pod_memory
    processors = max(0, math.floor(cpu))
    memory_bytes = max(0, math.floor(memory) - NATIVE_EXECUTABLE_CODE_OVERHEAD_BYTES)
    return MLNode(name, labels.get(zone_label, ""), processors, memory_bytes, _is_ready(node), error)


def parse_node_selector(text: str) -> dict[str, str]:
    """`key=value,key2=value2` (the `TMD_ML_NODE_SELECTOR` form) as matchLabels."""
    return dict(item.split("=", 1) for item in text.split(",") if item)


def ml_nodes_from_kubernetes(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    selector: Mapping[str, Any] | None,
    *,
    zone_label: str = ZONE_LABEL,
    worker_pod: Callable[[Mapping[str, Any]], bool] = is_worker_pod,
) -> list[MLNode]:
    """The ML nodes (those matching `selector`), sorted by name."""
    pods_by_node: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name:
            pods_by_node.setdefault(node_name, []).append(pod)
    chosen = [n for n in nodes if matches_selector((n.get("metadata") or {}).get("labels"), selector)]
    return sorted(
        (
            ml_node_from_kubernetes(
                n, pods_by_node.get(n["metadata"]["name"], []), zone_label=zone_label, worker_pod=worker_pod
            )
            for n in chosen
        ),
        key=lambda n: n.name,
    )
