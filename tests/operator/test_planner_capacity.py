"""ML nodes derived from Kubernetes Node and Pod objects (DESIGN.md "Placement")."""

from decimal import Decimal

import pytest

from tmd.api.memory import NATIVE_EXECUTABLE_CODE_OVERHEAD_BYTES
from tmd.api.ml_nodes import (
    ALLOCATED_PROCESSORS_ANNOTATION,
    WORKER_POD_LABEL,
    MLNode,
    matches_selector,
    ml_node_from_kubernetes,
    ml_nodes_from_kubernetes,
    parse_quantity_value,
    pod_requests,
)

GI = 1 << 30


def k8s_node(name, cpu="4", memory="16Gi", labels=None, annotations=None, ready="True", unschedulable=False):
    return {
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"unschedulable": unschedulable} if unschedulable else {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": ready}],
        },
    }


def pod(node, cpu=None, memory=None, labels=None, phase="Running", limits=None, init=None, overhead=None):
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    spec = {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": requests, "limits": limits or {}}}]}
    if init:
        spec["initContainers"] = init
    if overhead:
        spec["overhead"] = overhead
    return {"metadata": {"name": "p", "labels": labels or {}}, "spec": spec, "status": {"phase": phase}}


@pytest.mark.parametrize(
    ("text", "value"),
    [("4", Decimal(4)), ("3500m", Decimal("3.5")), ("8Gi", Decimal(8 * GI)), ("1e3", Decimal(1000)), ("1k", 1000)],
)
def test_parse_quantity(text, value):
    assert parse_quantity_value(text) == value


def test_parse_quantity_rejects_garbage():
    with pytest.raises(ValueError):
        parse_quantity_value("four")


def test_whole_processors_and_memory_less_the_native_overhead():
    ml = ml_node_from_kubernetes(k8s_node("n1", cpu="3500m", memory="16Gi", labels={"topology.kubernetes.io/zone": "z1"}), [])
    assert ml == MLNode("n1", "z1", 3, 16 * GI - NATIVE_EXECUTABLE_CODE_OVERHEAD_BYTES, True, "")


def test_other_workloads_requests_are_subtracted_but_not_tmd_workers():
    pods = [
        pod("n1", cpu="500m", memory="1Gi"),
        pod("n1", cpu="1", memory="2Gi", labels={WORKER_POD_LABEL: "d"}),  # a tmd worker: the planner counts it
        pod("n1", cpu="2", memory="4Gi", phase="Succeeded"),  # finished: holds nothing
        pod("n2", cpu="2", memory="4Gi"),  # another node
        pod("n1", limits={"cpu": "1", "memory": "1Gi"}),  # limits only: requests default to them
    ]
    ml = ml_node_from_kubernetes(k8s_node("n1", cpu="8", memory="16Gi"), pods)
    assert ml.processors == 6  # 8 - 0.5 - 1 = 6.5, rounded down
    assert ml.memory_bytes == 14 * GI - NATIVE_EXECUTABLE_CODE_OVERHEAD_BYTES


def test_pod_requests_follow_the_scheduler_rules_for_init_containers_and_overhead():
    init = [
        {"name": "big-init", "resources": {"requests": {"cpu": "3", "memory": "100Mi"}}},
        {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
    ]
    cpu, memory = pod_requests(pod("n1", cpu="1", memory="1Gi", init=init, overhead={"cpu": "100m"}))
    assert cpu == Decimal("3.1")  # the init container's 3 outweighs 1 + 0.25, plus overhead
    assert memory == Decimal(GI + 64 * (1 << 20))


def test_annotation_overrides_allocatable_processors():
    node = k8s_node("n1", cpu="16", annotations={ALLOCATED_PROCESSORS_ANNOTATION: "6"})
    assert ml_node_from_kubernetes(node, [pod("n1", cpu="1")]).processors == 5


def test_invalid_annotation_makes_the_node_unassignable_with_a_reason():
    node = k8s_node("n1", annotations={ALLOCATED_PROCESSORS_ANNOTATION: "lots"})
    ml = ml_node_from_kubernetes(node, [])
    assert not ml.assignable
    assert ml.unassignable_reason == (
        f"Invalid value [lots] of annotation [{ALLOCATED_PROCESSORS_ANNOTATION}]; "
        "expected a non-negative CPU quantity such as [4] or [3500m]"
    )


def test_requests_beyond_allocatable_leave_nothing_rather_than_negative():
    ml = ml_node_from_kubernetes(k8s_node("n1", cpu="2", memory="1Gi"), [pod("n1", cpu="3", memory="2Gi")])
    assert (ml.processors, ml.memory_bytes) == (0, 0)


@pytest.mark.parametrize(("ready", "unschedulable", "expected"), [("True", False, True), ("False", False, False),
                                                                   ("Unknown", False, False), ("True", True, False)])
def test_readiness(ready, unschedulable, expected):
    ml = ml_node_from_kubernetes(k8s_node("n1", ready=ready, unschedulable=unschedulable), [])
    assert ml.ready is expected
    assert ml.unassignable_reason == ("" if expected else "This node is not ready")


def test_selector_match_labels_and_expressions():
    labels = {"role": "ml", "tier": "gpu"}
    assert matches_selector(labels, None)
    assert matches_selector(labels, {})
    assert matches_selector(labels, {"matchLabels": {"role": "ml"}})
    assert not matches_selector(labels, {"matchLabels": {"role": "web"}})
    assert matches_selector(labels, {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu", "cpu"]}]})
    assert not matches_selector(labels, {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gpu"]}]})
    assert matches_selector(labels, {"matchExpressions": [{"key": "role", "operator": "Exists"}]})
    assert not matches_selector(labels, {"matchExpressions": [{"key": "role", "operator": "DoesNotExist"}]})
    assert matches_selector(labels, {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]})
    with pytest.raises(ValueError, match="unknown label selector operator"):
        matches_selector(labels, {"matchExpressions": [{"key": "role", "operator": "Gt", "values": ["1"]}]})


def test_ml_nodes_are_the_selected_nodes_sorted_by_name():
    nodes = [
        k8s_node("n3", labels={"ml": "true"}),
        k8s_node("n1", labels={"ml": "true"}),
        k8s_node("web", labels={"ml": "false"}),
    ]
    pods = [pod("n1", cpu="1"), pod("web", cpu="1")]
    ml = ml_nodes_from_kubernetes(nodes, pods, {"matchLabels": {"ml": "true"}})
    assert [(n.name, n.processors) for n in ml] == [("n1", 3), ("n3", 4)]
