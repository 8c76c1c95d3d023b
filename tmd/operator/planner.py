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

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tmd.api.memory import MemoryEstimate
from tmd.api.ml_nodes import MLNode
from tmd.operator.packing import Item, Packing, preserve
from tmd.operator.packing_search import improve, ruin_and_recreate
from tmd.operator.placement_reasons import LOW_PRIORITY_ALLOCATIONS_PER_NODE, NodeView, explain_low, explain_normal

Priority = Literal["normal", "low"]

#: Effort of the searches after the greedy fill. Counts, not times, so plans stay deterministic:
#: attempts of the one-node search (and how many levels it may chain; in a large cluster deep
#: chains would spend the attempts on few deployments), node × deployment steps
#: of the ruin-and-recreate search, and how many fruitless attempts in a row end it (more for
#: small clusters, where an attempt is cheap: RUIN_IDLE_WORK ÷ (nodes × deployments), bounded).
IMPROVEMENT_BUDGET = 1000
IMPROVEMENT_DEPTH = 1
IMPROVEMENT_DEPTH_SMALL = 3  # deeper chains where nodes × deployments ≤ SMALL_INSTANCE: cheap there
SMALL_INSTANCE = 2000
RUIN_WORK = 1_000_000
RUIN_IDLE_WORK = 10_000
RUIN_MIN_IDLE = 10
RUIN_MAX_IDLE = 60


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

    node_view = NodeView(all_nodes, usable)
    result: dict[str, DeploymentPlan] = {}
    for i, demand in enumerate(normal):
        allocations = {usable[n].name: c for n, c in sorted(packing.allocations[i].items()) if c > 0}
        reason = explain_normal(demand, i, packing, node_view)
        result[demand.deployment_id] = DeploymentPlan(demand.deployment_id, allocations, reason)
    low_count = np.zeros(len(usable), dtype=np.int64)
    for node in low_allocations.values():
        low_count[node] += 1
    for demand in low:
        node = low_allocations.get(demand.deployment_id)
        allocations = {usable[node].name: 1} if node is not None else {}
        reason = None
        if not allocations and demand.number_of_allocations > 0:
            reason = explain_low(demand, low_free_memory, low_count, node_view)
        result[demand.deployment_id] = DeploymentPlan(demand.deployment_id, allocations, reason)
    return Plan({d.deployment_id: result[d.deployment_id] for d in demands})


def _check_unique(names: Sequence[str], what: str) -> None:
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"duplicate {what} [{duplicates[0]}]")


def _fill_orders(items: Sequence[Item], demands: Sequence[DeploymentDemand]) -> list[list[int]]:
    """Deployment orders tried by the fill step; the best plan among them is kept.

    The count of allocations is what is maximised, so cheap allocations go first: fewest
    threads then least memory, least memory then fewest threads, or fewest threads with the
    largest requests first. Name order breaks every tie.
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
    bound = _upper_bound(best)
    if best.total_allocations() < bound:
        small = len(usable) * len(items) <= SMALL_INSTANCE
        depth = IMPROVEMENT_DEPTH_SMALL if small else IMPROVEMENT_DEPTH
        improve(best, floor, minimum, orders[0], budget=IMPROVEMENT_BUDGET, depth=depth)
        _top_up(best, items)
    if best.total_allocations() < bound:
        # the smaller the instance, the cheaper an attempt, so the more attempts it gets
        idle_limit = max(RUIN_MIN_IDLE, min(RUIN_MAX_IDLE, RUIN_IDLE_WORK // max(1, len(usable) * len(items))))
        orders = [orders[0], _most_constrained_first(best, demands)]
        ruin_and_recreate(best, floor, minimum, orders, RUIN_WORK, idle_limit, stop_at=bound)
    return best


def _upper_bound(packing: Packing) -> int:
    """Allocations no plan can exceed, so the search can stop early when a plan reaches it.

    Each deployment counts at most what the nodes could hold of it alone; then, as if all
    processors formed one node, allocations are taken fewest threads first (which maximises a
    count under a single capacity).
    """
    processors = int(packing.processors.sum())
    alone = []
    for it in packing.items:
        fits = packing.memory >= it.first_memory
        by_memory = (
            np.where(fits, 1 + (packing.memory - it.first_memory) // it.extra_memory, 0)
            if it.extra_memory
            else np.where(fits, 1 << 40, 0)
        )
        most = int(np.minimum(packing.processors // it.threads, by_memory).sum())
        alone.append((it.threads, min(it.requested, most)))
    bound = 0
    for threads, count in sorted(alone):
        take = min(count, processors // threads)
        bound += take
        processors -= take * threads
    return bound


def _most_constrained_first(packing: Packing, demands: Sequence[DeploymentDemand]) -> list[int]:
    """Deployments fitting on the fewest nodes first, larger ones first among equals."""
    fits = [
        int(np.count_nonzero((packing.processors >= it.threads) & (packing.memory >= it.first_memory)))
        for it in packing.items
    ]
    return sorted(
        range(len(demands)),
        key=lambda i: (fits[i], -packing.items[i].threads, -packing.items[i].first_memory, demands[i].deployment_id),
    )


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
