"""The placement planner's rules and reason texts (es-api.md §3.5, §4, §11)."""

import random

import pytest

from tmd.api.memory import MemoryEstimate
from tmd.api.ml_nodes import MLNode
from tmd.operator.placement_reasons import LOW_PRIORITY_ALLOCATIONS_PER_NODE, MAX_NODE_REASONS, NO_ML_NODES_REASON
from tmd.operator.planner import DeploymentDemand, plan

GIB = 1 << 30


def node(name, processors=4, memory=8 * GIB, zone="", **kwargs):
    return MLNode(name, zone, processors, memory, **kwargs)


def demand(deployment_id, allocations=1, threads=1, memory=GIB, **kwargs):
    return DeploymentDemand(deployment_id, "model", allocations, threads, memory, **kwargs)


def test_places_every_allocation_when_capacity_allows():
    result = plan([demand("d", allocations=6, threads=2)], [node("n1"), node("n2"), node("n3")])
    assert result.deployments["d"].total_allocations == 6
    assert result.reason("d") is None


def test_never_oversubscribes_processors_and_says_why():
    result = plan([demand("d", allocations=5, threads=2)], [node("n1"), node("n2")])
    assert result.allocations("d") == {"n1": 2, "n2": 2}
    assert result.reason("d") == (
        "Could not assign (more) allocations on node [n1]. Reason: This node has insufficient allocated "
        "processors. Available processors [4], free processors [0], processors required for each allocation "
        "of this model [2]|Could not assign (more) allocations on node [n2]. Reason: This node has insufficient "
        "allocated processors. Available processors [4], free processors [0], processors required for each "
        "allocation of this model [2]"
    )


def test_insufficient_memory_reason_text():
    result = plan([demand("d", memory=2 * GIB)], [node("n1", memory=GIB)])
    assert result.allocations("d") == {}
    assert result.reason("d") == (
        "Could not assign (more) allocations on node [n1]. Reason: This node has insufficient available memory. "
        "Available memory for ML [1073741824 (1gb)], free memory [1073741824 (1gb)], estimated memory required "
        "for this model [2147483648 (2gb)]."
    )


def test_memory_counts_once_per_node_plus_per_allocation_memory():
    # 1 GiB for the first allocation on a node, 1 GiB more for each further one: 3 fit in 3 GiB
    result = plan(
        [demand("d", allocations=4, memory=GIB, memory_per_allocation_bytes=GIB)], [node("n1", 8, 3 * GIB)]
    )
    assert result.allocations("d") == {"n1": 3}
    assert "free memory [0 (0b)], estimated memory required for this model [1073741824 (1gb)]" in result.reason("d")


def test_no_ml_nodes():
    result = plan([demand("d"), demand("low", priority="low")], [])
    assert result.reason("d") == NO_ML_NODES_REASON == "No ML nodes exist in the cluster"
    assert result.reason("low") == NO_ML_NODES_REASON
    assert result.allocations("d") == {}


def test_threads_larger_than_the_largest_node_leave_the_deployment_unplaced():
    result = plan([demand("d", threads=16)], [node("n1", 8), node("n2", 4)])
    assert result.allocations("d") == {}
    assert result.reason("d") == (
        "Could not assign any allocation: [threads_per_allocation] [16] is larger than the allocated "
        "processors of the largest ML node [8]"
    )


def test_unready_nodes_are_not_used_and_their_routes_are_dropped():
    nodes = [node("n1", ready=False), node("n2", error="Invalid value [x] of annotation"), node("n3", 2)]
    result = plan([demand("d", allocations=4, current={"n1": 2})], nodes)
    assert result.allocations("d") == {"n3": 2}
    reason = result.reason("d")
    assert reason.startswith(
        "Could not assign (more) allocations on node [n1]. Reason: This node is not ready|"
        "Could not assign (more) allocations on node [n2]. Reason: Invalid value [x] of annotation|"
        "Could not assign (more) allocations on node [n3]. Reason: This node has insufficient allocated processors."
    )


def test_existing_allocations_stay_where_they_are():
    # n1 is the best fit for a new plan, but the deployment already runs on n2
    nodes = [node("n1", 2), node("n2", 8)]
    result = plan([demand("d", allocations=2, current={"n2": 2})], nodes)
    assert result.allocations("d") == {"n2": 2}


def test_existing_allocations_on_removed_nodes_move():
    result = plan([demand("d", allocations=2, current={"gone": 2}, max_assigned_allocations=2)], [node("n1")])
    assert result.allocations("d") == {"n1": 2}


def test_scaling_down_removes_whole_worker_pods_first():
    result = plan([demand("d", allocations=2, current={"n1": 3, "n2": 1})], [node("n1"), node("n2")])
    assert result.allocations("d") == {"n1": 2}


def test_scaling_down_keeps_zones_balanced():
    nodes = [node("a1", zone="a"), node("a2", zone="a"), node("b1", zone="b")]
    result = plan([demand("d", allocations=2, current={"a1": 1, "a2": 1, "b1": 1})], nodes)
    assert result.allocations("d") == {"a1": 1, "b1": 1}


def test_allocations_spread_over_zones():
    nodes = [node("a1", 8, zone="a"), node("a2", 8, zone="a"), node("b1", 8, zone="b")]
    result = plan([demand("d", allocations=4)], nodes)
    by_zone = {"a": 0, "b": 0}
    for name, count in result.allocations("d").items():
        by_zone[name[0]] += count
    assert by_zone == {"a": 2, "b": 2}


def test_zone_spreading_gives_way_when_it_would_place_fewer_allocations():
    # zone b can hold the 1 GiB deployment's copy only once, zone a has the memory for both
    nodes = [node("a1", 4, 8 * GIB, zone="a"), node("b1", 4, GIB, zone="b")]
    demands = [demand("big", allocations=2, threads=2, memory=GIB), demand("small", allocations=2, threads=1)]
    result = plan(demands, nodes)
    assert result.total_allocations == 4


def test_maximises_the_number_of_allocations():
    # one 8-thread allocation or eight 1-thread ones: the plan takes the eight
    result = plan([demand("a", threads=8), demand("b", allocations=8)], [node("n1", 8)])
    assert result.allocations("b") == {"n1": 8}
    assert result.allocations("a") == {}
    assert "free processors [0], processors required for each allocation of this model [8]" in result.reason("a")


def test_previously_allocated_deployment_gets_one_allocation_before_others_grow():
    demands = [
        demand("a", allocations=2),
        demand("b", allocations=2, current={"gone": 2}, max_assigned_allocations=2),
    ]
    result = plan(demands, [node("n1", 2)])
    assert result.allocations("b") == {"n1": 1}
    assert result.allocations("a") == {"n1": 1}


def test_moves_an_existing_allocation_to_make_room_but_keeps_one_on_each_node():
    # dep-small's second allocation on n2 blocks dep-wide's copy (memory); moving it to n1 frees it
    nodes = [node("n1", 6, 64 * GIB), node("n2", 32, 3860 * (1 << 20))]
    demands = [
        demand("dep-small", allocations=2, threads=2, memory=336 * (1 << 20), memory_per_allocation_bytes=GIB // 2,
               current={"n2": 2}, max_assigned_allocations=2),
        demand("dep-wide", allocations=8, threads=4, memory=3236 * (1 << 20)),
    ]
    result = plan(demands, nodes)
    assert result.allocations("dep-small") == {"n1": 1, "n2": 1}
    assert result.allocations("dep-wide")["n2"] == 7


def test_low_priority_ignores_processors():
    demands = [demand("normal", allocations=4), demand("low", priority="low")]
    result = plan(demands, [node("n1", 4)])
    assert result.allocations("normal") == {"n1": 4}
    assert result.allocations("low") == {"n1": 1}


def test_low_priority_yields_memory_to_normal_priority():
    demands = [
        demand("normal", memory=4 * GIB),
        demand("low", memory=6 * GIB, priority="low", current={"n1": 1}, max_assigned_allocations=1),
    ]
    result = plan(demands, [node("n1", 4, 8 * GIB)])
    assert result.allocations("normal") == {"n1": 1}
    assert result.allocations("low") == {}
    assert result.reason("low") == (
        "Could not assign (more) allocations on node [n1]. Reason: This node has insufficient available memory. "
        "Available memory for ML [8589934592 (8gb)], free memory [4294967296 (4gb)], estimated memory required "
        "for this model [6442450944 (6gb)]."
    )


def test_low_priority_stays_on_its_node_while_it_fits():
    demands = [demand("low", priority="low", current={"n2": 1}, max_assigned_allocations=1)]
    result = plan(demands, [node("n1", memory=64 * GIB), node("n2")])
    assert result.allocations("low") == {"n2": 1}


def test_low_priority_is_capped_per_node():
    demands = [demand(f"low-{i:03d}", memory=1, priority="low") for i in range(LOW_PRIORITY_ALLOCATIONS_PER_NODE + 1)]
    result = plan(demands, [node("n1")])
    assert result.total_allocations == LOW_PRIORITY_ALLOCATIONS_PER_NODE
    unplaced = [d for d in result.deployments.values() if not d.allocations]
    assert [d.reason for d in unplaced] == [
        "Could not assign (more) allocations on node [n1]. Reason: This node already hosts the maximum number "
        "of low priority allocations [100]"
    ]


def test_reason_names_a_bounded_number_of_nodes():
    nodes = [node(f"n{i:03d}", 4, GIB) for i in range(MAX_NODE_REASONS + 5)]
    result = plan([demand("d", memory=2 * GIB)], nodes)
    reason = result.reason("d")
    assert reason.count("Could not assign (more) allocations on node [") == MAX_NODE_REASONS
    assert reason.endswith("|Could not assign (more) allocations on [5] more nodes")


def test_zero_allocations_need_no_reason():
    result = plan([demand("d", allocations=0)], [node("n1")])
    assert result.allocations("d") == {}
    assert result.reason("d") is None


def test_deterministic_whatever_the_input_order():
    rng = random.Random(3)
    nodes = [node(f"n{i}", rng.choice([2, 4, 8]), rng.choice([2, 4]) * GIB, zone="ab"[i % 2]) for i in range(12)]
    demands = [demand(f"d{i}", rng.randint(1, 6), rng.choice([1, 2, 4]), rng.choice([1, 2]) * GIB) for i in range(15)]
    expected = plan(demands, nodes)
    for _ in range(3):
        rng.shuffle(nodes)
        rng.shuffle(demands)
        assert plan(demands, nodes) == expected


def test_duplicate_ids_are_rejected():
    with pytest.raises(ValueError, match=r"duplicate deployment id \[d\]"):
        plan([demand("d"), demand("d")], [node("n1")])
    with pytest.raises(ValueError, match=r"duplicate node name \[n1\]"):
        plan([demand("d")], [node("n1"), node("n1")])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"allocations": -1},
        {"threads": 0},
        {"memory": -1},
        {"priority": "high"},
        {"priority": "low", "allocations": 2},
        {"priority": "low", "threads": 2},
    ],
)
def test_invalid_demands_are_rejected(kwargs):
    with pytest.raises(ValueError):
        demand("d", **kwargs)


def test_demand_from_the_memory_estimate():
    estimate = MemoryEstimate("m", 1630, per_deployment_memory_bytes=0, per_allocation_memory_bytes=0)
    d = DeploymentDemand.of("d", 2, 1, estimate, current={"n1": 1}, max_assigned_allocations=1)
    assert d.memory_bytes == 251661500
    assert d.memory_per_allocation_bytes == 0
    assert d.memory_for(2) == 251661500
    assert d.current == {"n1": 1}
