"""Invariants of the placement planner over random clusters, deployments and current routes."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tmd.api.ml_nodes import MLNode
from tmd.operator.placement_reasons import LOW_PRIORITY_ALLOCATIONS_PER_NODE, MAX_NODE_REASONS, NO_ML_NODES_REASON
from tmd.operator.planner import DeploymentDemand, Plan, plan

MIB256 = 256 << 20

PROPERTIES = settings(max_examples=80, deadline=None)


@st.composite
def clusters(draw, feasible_current=False):
    """Random ML nodes and deployments with current routes.

    With `feasible_current`, the current routes of normal deployments fit the nodes together
    and within each deployment's request (as after an earlier plan), so all can be kept."""
    nodes = [
        MLNode(
            name=f"n{i}",
            zone=draw(st.sampled_from(["", "a", "b"])),
            processors=draw(st.integers(0, 16)),
            memory_bytes=draw(st.integers(0, 32)) * MIB256,
            ready=draw(st.sampled_from([True, True, True, False])),
        )
        for i in range(draw(st.integers(0, 6)))
    ]
    names = [n.name for n in nodes] + ["gone"]
    free = {n.name: [n.processors, n.memory_bytes] for n in nodes if n.ready}
    demands = []
    for i in range(draw(st.integers(0, 7))):
        low = draw(st.integers(0, 4)) == 0
        allocations = draw(st.integers(0, 1)) if low else draw(st.integers(0, 12))
        threads = 1 if low else draw(st.sampled_from([1, 1, 2, 4, 8, 16]))
        memory = draw(st.integers(1, 24)) * MIB256
        extra = 0 if low else draw(st.sampled_from([0, 0, MIB256]))
        current = draw(st.dictionaries(st.sampled_from(names), st.integers(1, 4), max_size=3))
        if feasible_current and not low:
            fitting = {}
            for name, count in sorted(current.items()):
                count = min(count, allocations - sum(fitting.values()))
                needed = [count * threads, memory + extra * (count - 1)]
                if name == "gone" or (count > 0 and name in free and all(a <= b for a, b in zip(needed, free[name]))):
                    fitting[name] = count
                    if name in free:
                        free[name] = [free[name][0] - needed[0], free[name][1] - needed[1]]
            current = {name: count for name, count in fitting.items() if count > 0}
        demands.append(
            DeploymentDemand(
                deployment_id=f"d{i}",
                model_id=f"m{i}",
                number_of_allocations=allocations,
                threads_per_allocation=threads,
                memory_bytes=memory,
                priority="low" if low else "normal",
                current=current,
                max_assigned_allocations=sum(current.values()) if draw(st.booleans()) else 0,
                memory_per_allocation_bytes=extra,
            )
        )
    return nodes, demands


def usage(result: Plan, demands, nodes, priorities=("normal", "low")):
    """Processors, memory and low priority count used on each node, recomputed from the plan."""
    used = {n.name: [0, 0, 0] for n in nodes}
    for d in demands:
        if d.priority not in priorities:
            continue
        for name, count in result.allocations(d.deployment_id).items():
            if d.priority == "normal":
                used[name][0] += count * d.threads_per_allocation
                used[name][1] += d.memory_for(count)
            else:
                used[name][1] += d.memory_bytes
                used[name][2] += 1
    return used


@PROPERTIES
@given(clusters())
def test_capacity_is_never_oversubscribed_nor_requests_exceeded(cluster):
    nodes, demands = cluster
    result = plan(demands, nodes)
    by_name = {n.name: n for n in nodes}
    for name, (processors, memory, low) in usage(result, demands, nodes).items():
        assert processors <= by_name[name].processors
        assert memory <= by_name[name].memory_bytes
        assert low <= LOW_PRIORITY_ALLOCATIONS_PER_NODE
    for d in demands:
        allocations = result.allocations(d.deployment_id)
        assert sum(allocations.values()) <= d.number_of_allocations
        assert all(count > 0 and by_name[name].assignable for name, count in allocations.items())


@PROPERTIES
@given(clusters())
def test_every_unplaced_allocation_is_explained(cluster):
    nodes, demands = cluster
    result = plan(demands, nodes)
    used = usage(result, demands, nodes)
    normal_used = usage(result, demands, nodes, priorities=("normal",))
    usable = [n for n in nodes if n.assignable]
    for d in demands:
        allocations = result.allocations(d.deployment_id)
        reason = result.reason(d.deployment_id)
        if sum(allocations.values()) >= d.number_of_allocations:
            assert reason is None
            continue
        assert reason
        if not nodes:
            assert reason == NO_ML_NODES_REASON
            continue
        if d.priority == "normal" and usable and d.threads_per_allocation > max(n.processors for n in usable):
            assert "is larger than the allocated processors of the largest ML node" in reason
            continue
        # the reason is true: no assignable node has room for one more allocation
        for n in usable:
            if d.priority == "normal":
                processors, memory, _ = normal_used[n.name]
                marginal = d.memory_per_allocation_bytes if n.name in allocations else d.memory_bytes
                assert d.threads_per_allocation > n.processors - processors or marginal > n.memory_bytes - memory
            else:
                _, memory, low = used[n.name]
                assert d.memory_bytes > n.memory_bytes - memory or low >= LOW_PRIORITY_ALLOCATIONS_PER_NODE
        if len(nodes) <= MAX_NODE_REASONS:
            assert reason.count("Could not assign (more) allocations on node [") == len(nodes)
            for n in nodes:
                assert f"on node [{n.name}]. Reason: " in reason


def _existing(d: DeploymentDemand, usable: set[str]) -> dict[str, int]:
    return {name: count for name, count in d.current.items() if name in usable and count > 0}


@PROPERTIES
@given(st.one_of(clusters(), clusters(feasible_current=True)))
def test_existing_allocations_are_kept_when_capacity_allows(cluster):
    nodes, demands = cluster
    usable = {n.name: n for n in nodes if n.assignable}
    normal = [d for d in demands if d.priority == "normal"]
    load = {name: [0, 0] for name in usable}
    fits = True
    for d in normal:
        existing = _existing(d, set(usable))
        fits &= sum(existing.values()) <= d.number_of_allocations
        for name, count in existing.items():
            load[name][0] += count * d.threads_per_allocation
            load[name][1] += d.memory_for(count)
    fits &= all(p <= usable[name].processors and m <= usable[name].memory_bytes for name, (p, m) in load.items())
    result = plan(demands, nodes)
    if not fits:
        return
    for d in normal:
        existing = _existing(d, set(usable))
        allocations = result.allocations(d.deployment_id)
        assert all(allocations.get(name, 0) >= 1 for name in existing)  # no worker removed
        assert sum(allocations.values()) >= sum(existing.values())  # none fewer than before


@PROPERTIES
@given(clusters())
def test_replanning_a_plan_keeps_it(cluster):
    nodes, demands = cluster
    first = plan(demands, nodes)
    again = [
        DeploymentDemand(
            d.deployment_id,
            d.model_id,
            d.number_of_allocations,
            d.threads_per_allocation,
            d.memory_bytes,
            d.priority,
            dict(first.allocations(d.deployment_id)),
            max(d.max_assigned_allocations, first.deployments[d.deployment_id].total_allocations),
            d.memory_per_allocation_bytes,
        )
        for d in demands
    ]
    second = plan(again, nodes)
    for d in demands:
        before, after = first.allocations(d.deployment_id), second.allocations(d.deployment_id)
        assert all(after.get(name, 0) >= 1 for name in before)
        assert sum(after.values()) >= sum(before.values())
    assert second.total_allocations >= first.total_allocations


@PROPERTIES
@given(clusters())
def test_deterministic(cluster):
    nodes, demands = cluster
    assert plan(demands, nodes) == plan(list(reversed(demands)), list(reversed(nodes)))


@PROPERTIES
@given(clusters())
def test_low_priority_never_displaces_normal_priority(cluster):
    nodes, demands = cluster
    with_low = plan(demands, nodes)
    normal = [d for d in demands if d.priority == "normal"]
    without_low = plan(normal, nodes)
    for d in normal:
        assert with_low.deployments[d.deployment_id] == without_low.deployments[d.deployment_id]
