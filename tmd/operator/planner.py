"""The placement planner: (deployments, ML nodes, current routes) → allocations per node.

A pure, deterministic function (es-api.md §4, DESIGN.md "Placement"). Normal priority first:

1. existing allocations are kept, as far as the request and the nodes' capacity allow
   (so a rebalance restarts no worker it does not have to);
2. previously allocated deployments that lost every allocation get one back before anything
   grows (es-api §4.3 step 3);
3. the rest is filled greedily under several deployment orders, spread over zones and not;
   the plan placing the most allocations wins (the count Elasticsearch's LP maximises), the
   zone-spread one on a tie;
4. a local search makes room on a node for a deployment that only fits there, moving other
   allocations away; it may move existing allocations too, but keeps one on every existing
   (deployment, node) pair and never lowers a deployment below what it kept (Elasticsearch's
   PreserveOneAllocation), and only when more allocations get placed overall;
5. a final pass tops every deployment up in name order, so no node is left with room for a
   deployment that still wants allocations (which is what makes every shortfall explainable).

Normal priority never over-subscribes processors (Σ allocations × threads ≤ processors) nor
memory. Low priority comes after, on the memory normal priority left: 1 allocation × 1 thread,
processors ignored (at most 100 per node), kept on its node while it still fits; so it yields
whenever a normal deployment needs that memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tmd.api.memory import MemoryEstimate, byte_size_string
from tmd.operator.capacity import MLNode
from tmd.operator.packing import Item, Packing, improve, preserve

Priority = Literal["normal", "low"]

#: Elasticsearch's `MAX_LOW_PRIORITY_MODELS_PER_NODE`: low priority ignores CPU, but not without bound.
LOW_PRIORITY_ALLOCATIONS_PER_NODE = 100

NO_ML_NODES_REASON = "No ML nodes exist in the cluster"

#: Attempts of the local search after the greedy fill (a count, so plans stay deterministic).
IMPROVEMENT_BUDGET = 2000

#: Nodes named in a deployment's reason at most (the rest are counted).
MAX_NODE_REASONS = 25


@dataclass(frozen=True)
class DeploymentDemand:
    """One deployment as the planner sees it.

    `memory_bytes` is what a node needs for the deployment's first allocation there (the §2.7
    estimate for one allocation); `memory_per_allocation_bytes` what each further allocation on
    the same node adds. `current` maps node → allocations the routing table already gives it.
    """

    deployment_id: str
    model_id: str
    number_of_allocations: int
    threads_per_allocation: int
    memory_bytes: int
    priority: Priority = "normal"
    current: Mapping[str, int] = field(default_factory=dict)
    max_assigned_allocations: int = 0
    memory_per_allocation_bytes: int = 0

    def __post_init__(self) -> None:
        if self.number_of_allocations < 0:
            raise ValueError(f"[{self.deployment_id}] number_of_allocations must not be negative")
        if self.threads_per_allocation < 1:
            raise ValueError(f"[{self.deployment_id}] threads_per_allocation must be positive")
        if self.memory_bytes < 0 or self.memory_per_allocation_bytes < 0:
            raise ValueError(f"[{self.deployment_id}] memory must not be negative")
        if self.priority not in ("normal", "low"):
            raise ValueError(f"[{self.deployment_id}] unknown priority [{self.priority}]")
        if self.priority == "low" and (self.number_of_allocations > 1 or self.threads_per_allocation != 1):
            raise ValueError(f"[{self.deployment_id}] a low priority deployment has 1 allocation of 1 thread")

    @classmethod
    def of(
        cls,
        deployment_id: str,
        number_of_allocations: int,
        threads_per_allocation: int,
        memory: MemoryEstimate,
        *,
        priority: Priority = "normal",
        current: Mapping[str, int] | None = None,
        max_assigned_allocations: int = 0,
    ) -> "DeploymentDemand":
        """A demand whose memory comes from the §2.7 estimate."""
        return cls(
            deployment_id=deployment_id,
            model_id=memory.model_id,
            number_of_allocations=number_of_allocations,
            threads_per_allocation=threads_per_allocation,
            memory_bytes=memory.required_native_memory_bytes,
            priority=priority,
            current=dict(current or {}),
            max_assigned_allocations=max_assigned_allocations,
            memory_per_allocation_bytes=memory.additional_allocation_bytes,
        )

    def memory_for(self, allocations: int) -> int:
        """Node memory this deployment takes with `allocations` allocations there."""
        if allocations <= 0:
            return 0
        return self.memory_bytes + self.memory_per_allocation_bytes * (allocations - 1)


@dataclass(frozen=True)
class DeploymentPlan:
    """Where one deployment's allocations go; `reason` says why some could not (None if none)."""

    deployment_id: str
    allocations: Mapping[str, int]
    reason: str | None = None

    @property
    def total_allocations(self) -> int:
        return sum(self.allocations.values())


@dataclass(frozen=True)
class Plan:
    deployments: Mapping[str, DeploymentPlan]

    def allocations(self, deployment_id: str) -> Mapping[str, int]:
        return self.deployments[deployment_id].allocations

    def reason(self, deployment_id: str) -> str | None:
        return self.deployments[deployment_id].reason

    @property
    def total_allocations(self) -> int:
        return sum(d.total_allocations for d in self.deployments.values())


# --- reasons (es-api §3.5, §11) ---------------------------------------------------------------


def node_reason(node_id: str, reason: str) -> str:
    return f"Could not assign (more) allocations on node [{node_id}]. Reason: {reason}"


def insufficient_memory_reason(available: int, free: int, required: int) -> str:
    return (
        f"This node has insufficient available memory. Available memory for ML [{available} "
        f"({byte_size_string(available)})], free memory [{free} ({byte_size_string(free)})], "
        f"estimated memory required for this model [{required} ({byte_size_string(required)})]."
    )


def insufficient_processors_reason(available: int, free: int, threads: int) -> str:
    return (
        f"This node has insufficient allocated processors. Available processors [{available}], "
        f"free processors [{free}], processors required for each allocation of this model [{threads}]"
    )


def threads_exceed_largest_node_reason(threads: int, largest: int) -> str:
    """tmd's decision (es-api §11): say so rather than lower threads_per_allocation silently."""
    return (
        f"Could not assign any allocation: [threads_per_allocation] [{threads}] is larger than the "
        f"allocated processors of the largest ML node [{largest}]"
    )


def more_nodes_reason(count: int) -> str:
    return f"Could not assign (more) allocations on [{count}] more nodes"


def low_priority_full_reason(limit: int = LOW_PRIORITY_ALLOCATIONS_PER_NODE) -> str:
    return f"This node already hosts the maximum number of low priority allocations [{limit}]"


# --- planning ---------------------------------------------------------------------------------


def plan(deployments: Iterable[DeploymentDemand], nodes: Iterable[MLNode]) -> Plan:
    """Plan every deployment onto the nodes. Same input, same plan."""
    demands = sorted(deployments, key=lambda d: d.deployment_id)
    all_nodes = sorted(nodes, key=lambda n: n.name)
    _check_unique([d.deployment_id for d in demands], "deployment id")
    _check_unique([n.name for n in all_nodes], "node name")
    usable = [n for n in all_nodes if n.assignable]
    index = {n.name: i for i, n in enumerate(usable)}
    zones = sorted({n.zone for n in usable})
    zone_of = {z: i for i, z in enumerate(zones)}

    normal = [d for d in demands if d.priority == "normal"]
    low = [d for d in demands if d.priority == "low"]
    packing = _plan_normal(normal, usable, index, zone_of)

    low_free_memory = packing.free_memory.copy()
    low_allocations = _plan_low(low, usable, index, low_free_memory)

    node_view = _Nodes(all_nodes, usable)
    result: dict[str, DeploymentPlan] = {}
    for i, demand in enumerate(normal):
        allocations = {usable[n].name: c for n, c in sorted(packing.allocations[i].items()) if c > 0}
        reason = _explain_normal(demand, i, packing, node_view)
        result[demand.deployment_id] = DeploymentPlan(demand.deployment_id, allocations, reason)
    low_count = np.zeros(len(usable), dtype=np.int64)
    for node in low_allocations.values():
        low_count[node] += 1
    for demand in low:
        node = low_allocations.get(demand.deployment_id)
        allocations = {usable[node].name: 1} if node is not None else {}
        reason = None
        if not allocations and demand.number_of_allocations > 0:
            reason = _explain_low(demand, low_free_memory, low_count, node_view)
        result[demand.deployment_id] = DeploymentPlan(demand.deployment_id, allocations, reason)
    return Plan({d.deployment_id: result[d.deployment_id] for d in demands})


def _check_unique(names: Sequence[str], what: str) -> None:
    if len(set(names)) != len(names):
        seen: set[str] = set()
        duplicate = next(n for n in names if n in seen or seen.add(n))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate {what} [{duplicate}]")


def _fill_orders(items: Sequence[Item], demands: Sequence[DeploymentDemand]) -> list[list[int]]:
    """Deployment orders tried by the fill step; the best plan among them is kept.

    The count of allocations is what is maximised, so cheap allocations go first: fewest
    threads, then least memory, or the other way round, or by a combined share of the
    cluster's resources. Name order breaks every tie.
    """
    ids = range(len(items))

    def by(key):  # noqa: ANN001, ANN202 - a local sort helper
        return sorted(ids, key=lambda i: (key(items[i]), demands[i].deployment_id))

    return [
        by(lambda it: (it.threads, it.first_memory)),
        by(lambda it: (it.first_memory, it.threads)),
        by(lambda it: (it.threads, -it.requested, it.first_memory)),
    ]


def _plan_normal(
    demands: Sequence[DeploymentDemand], usable: Sequence[MLNode], index: Mapping[str, int], zone_of: Mapping[str, int]
) -> Packing:
    items = [
        Item(d.number_of_allocations, d.threads_per_allocation, d.memory_bytes, d.memory_per_allocation_bytes)
        for d in demands
    ]
    base = Packing(
        [n.processors for n in usable], [n.memory_bytes for n in usable], [zone_of[n.zone] for n in usable], items
    )
    for i, demand in enumerate(demands):
        current = {index[name]: c for name, c in demand.current.items() if name in index and c > 0}
        preserve(base, i, current)
    revive = [i for i, d in enumerate(demands) if d.max_assigned_allocations > 0 and base.total(i) == 0]
    for i in sorted(revive, key=lambda i: (items[i].threads, items[i].first_memory, demands[i].deployment_id)):
        if items[i].requested > 0:
            base.fill(i, 1)

    floor = [{node: 1 for node in a} for a in base.allocations]
    minimum = [base.total(i) for i in range(len(items))]
    best: Packing | None = None
    best_key: tuple[int, ...] | None = None
    orders = _fill_orders(items, demands)
    for spread in (True, False):
        for rank, order in enumerate(orders):
            candidate = base.copy()
            for i in order:
                candidate.fill_spread(i, zones=spread)
            _top_up(candidate, items)
            key = (candidate.total_allocations(), spread, -rank)
            if best_key is None or key > best_key:
                best, best_key = candidate, key
    assert best is not None
    improve(best, floor, minimum, orders[0], budget=IMPROVEMENT_BUDGET)
    _top_up(best, items)
    return best


def _top_up(packing: Packing, items: Sequence[Item]) -> None:
    for i in range(len(items)):
        packing.fill(i, items[i].requested - packing.total(i))


def _plan_low(
    demands: Sequence[DeploymentDemand], usable: Sequence[MLNode], index: Mapping[str, int], free_memory: np.ndarray
) -> dict[str, int]:
    """Low priority on what normal priority left: existing ones stay while they fit, smallest first.

    Lowers `free_memory` (the caller's copy) by what the placed low priority deployments take.
    """
    placed: dict[str, int] = {}
    count = np.zeros(len(usable), dtype=np.int64)
    ordered = sorted(demands, key=lambda d: (d.memory_bytes, d.deployment_id))
    for demand in ordered:
        if demand.number_of_allocations < 1:
            continue
        for name in sorted(demand.current):
            node = index.get(name)
            if node is None or demand.current[name] <= 0:
                continue
            if free_memory[node] >= demand.memory_bytes and count[node] < LOW_PRIORITY_ALLOCATIONS_PER_NODE:
                placed[demand.deployment_id] = node
                free_memory[node] -= demand.memory_bytes
                count[node] += 1
                break
    for demand in ordered:
        if demand.number_of_allocations < 1 or demand.deployment_id in placed or not len(usable):
            continue
        fits = (free_memory >= demand.memory_bytes) & (count < LOW_PRIORITY_ALLOCATIONS_PER_NODE)
        if not fits.any():
            continue
        node = int(np.argmax(np.where(fits, free_memory, -1)))  # most free memory: spreads them out
        placed[demand.deployment_id] = node
        free_memory[node] -= demand.memory_bytes
        count[node] += 1
    return placed


class _Nodes:
    """All ML nodes by name, and where the assignable ones sit among them."""

    def __init__(self, all_nodes: Sequence[MLNode], usable: Sequence[MLNode]) -> None:
        self.all = all_nodes
        self.usable = usable
        position = {n.name: i for i, n in enumerate(all_nodes)}
        self.usable_position = np.array([position[n.name] for n in usable], dtype=np.int64)
        self.unusable_position = np.array([i for i, n in enumerate(all_nodes) if not n.assignable], dtype=np.int64)
        self.largest = max((n.processors for n in usable), default=0)

    def join(self, usable_short: np.ndarray, describe: Callable[[int], str]) -> str | None:
        """The §3.5 reason: nodes in name order, unassignable ones and those `usable_short` marks.

        At most `MAX_NODE_REASONS` nodes are named: a status listing every node of a large
        cluster would be hundreds of kilobytes on every deployment.
        """
        short = np.zeros(len(self.all), dtype=bool)
        short[self.unusable_position] = True
        short[self.usable_position[usable_short]] = True
        positions = np.flatnonzero(short)
        if not len(positions):
            return None
        usable_index = {int(p): i for i, p in enumerate(self.usable_position)}
        reasons = []
        for position in positions[:MAX_NODE_REASONS]:
            node = self.all[int(position)]
            text = node.unassignable_reason if not node.assignable else describe(usable_index[int(position)])
            reasons.append(node_reason(node.name, text))
        if len(positions) > MAX_NODE_REASONS:
            reasons.append(more_nodes_reason(len(positions) - MAX_NODE_REASONS))
        return "|".join(reasons)


def _explain_normal(demand: DeploymentDemand, item: int, packing: Packing, nodes: _Nodes) -> str | None:
    if packing.total(item) >= demand.number_of_allocations:
        return None
    if not nodes.all:
        return NO_ML_NODES_REASON
    threads = demand.threads_per_allocation
    if nodes.usable and threads > nodes.largest:
        return threads_exceed_largest_node_reason(threads, nodes.largest)
    required = np.full(len(nodes.usable), demand.memory_bytes, dtype=np.int64)
    hosting = packing.hosting_nodes(item)
    required[hosting] = demand.memory_per_allocation_bytes
    memory_short = required > packing.free_memory
    short = memory_short | (packing.free_processors < threads)

    def describe(n: int) -> str:
        node = nodes.usable[n]
        if memory_short[n]:
            return insufficient_memory_reason(node.memory_bytes, int(packing.free_memory[n]), int(required[n]))
        return insufficient_processors_reason(node.processors, int(packing.free_processors[n]), threads)

    return nodes.join(short, describe)


def _explain_low(
    demand: DeploymentDemand, free_memory: np.ndarray, low_count: np.ndarray, nodes: _Nodes
) -> str | None:
    if not nodes.all:
        return NO_ML_NODES_REASON
    memory_short = free_memory < demand.memory_bytes
    short = memory_short | (low_count >= LOW_PRIORITY_ALLOCATIONS_PER_NODE)

    def describe(n: int) -> str:
        node = nodes.usable[n]
        if memory_short[n]:
            return insufficient_memory_reason(node.memory_bytes, int(free_memory[n]), demand.memory_bytes)
        return low_priority_full_reason()

    return nodes.join(short, describe)
