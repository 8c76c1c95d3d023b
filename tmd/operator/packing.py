"""The working state of one placement: free processors and memory per node, allocations per pair.

The planner tries several orders over the same starting state and keeps the best result, so the
state is a small copyable object; node scans are numpy vector operations because a plan covers
up to thousands of nodes and must take well under a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Stands for "memory is no limit" in capacity vectors.
_UNLIMITED = 1 << 40
#: Processor counts are clipped to this so the packed score below never overflows int64.
_MAX_PROCESSORS = 1 << 20


@dataclass(frozen=True)
class Item:
    """What the packing needs to know of one deployment."""

    requested: int
    threads: int
    first_memory: int  # memory of a node's first allocation of this deployment
    extra_memory: int  # memory of each further allocation on the same node


class Packing:
    """Allocations of items on nodes, with the capacity left on each node."""

    def __init__(
        self,
        processors: Sequence[int],
        memory: Sequence[int],
        zone_ids: Sequence[int],
        items: Sequence[Item],
    ) -> None:
        self.processors = np.minimum(np.asarray(processors, dtype=np.int64), _MAX_PROCESSORS)
        self.memory = np.asarray(memory, dtype=np.int64)
        self.free_processors = self.processors.copy()
        self.free_memory = self.memory.copy()
        self.zone_ids = np.asarray(zone_ids, dtype=np.int64)
        self.zone_count = int(self.zone_ids.max()) + 1 if len(self.zone_ids) else 0
        self.items = list(items)
        self.allocations: list[dict[int, int]] = [{} for _ in self.items]
        self.residents: list[set[int]] = [set() for _ in range(len(self.processors))]  # node → items on it
        self.placed = 0
        self.journal: list[tuple[int, int, int]] | None = None  # (item, node, ±count) while searching

    def copy(self) -> "Packing":
        other = object.__new__(Packing)
        other.processors = self.processors
        other.memory = self.memory
        other.free_processors = self.free_processors.copy()
        other.free_memory = self.free_memory.copy()
        other.zone_ids = self.zone_ids
        other.zone_count = self.zone_count
        other.items = self.items
        other.allocations = [dict(a) for a in self.allocations]
        other.residents = [set(r) for r in self.residents]
        other.placed = self.placed
        other.journal = None
        return other

    # --- accounting -------------------------------------------------------------------------

    def total(self, item: int) -> int:
        return sum(self.allocations[item].values())

    def total_allocations(self) -> int:
        return self.placed

    def memory_of(self, item: int, allocations: int) -> int:
        if allocations <= 0:
            return 0
        it = self.items[item]
        return it.first_memory + it.extra_memory * (allocations - 1)

    def place(self, item: int, node: int, count: int) -> None:
        if count <= 0:
            return
        before = self.allocations[item].get(node, 0)
        it = self.items[item]
        self.free_processors[node] -= count * it.threads
        self.free_memory[node] -= self.memory_of(item, before + count) - self.memory_of(item, before)
        self.allocations[item][node] = before + count
        self.residents[node].add(item)
        self.placed += count
        if self.journal is not None:
            self.journal.append((item, node, count))

    def remove(self, item: int, node: int, count: int) -> None:
        before = self.allocations[item].get(node, 0)
        count = min(count, before)
        if count <= 0:
            return
        it = self.items[item]
        self.free_processors[node] += count * it.threads
        self.free_memory[node] += self.memory_of(item, before) - self.memory_of(item, before - count)
        if before == count:
            del self.allocations[item][node]
            self.residents[node].discard(item)
        else:
            self.allocations[item][node] = before - count
        self.placed -= count
        if self.journal is not None:
            self.journal.append((item, node, -count))

    def rollback(self, mark: int) -> None:
        """Undo the journalled changes made after `mark` (a former `len(journal)`)."""
        assert self.journal is not None
        while len(self.journal) > mark:
            item, node, count = self.journal.pop()
            journal, self.journal = self.journal, None
            if count > 0:
                self.remove(item, node, count)
            else:
                self.place(item, node, -count)
            self.journal = journal

    def marginal_memory(self, item: int, node: int) -> int:
        """Memory one more allocation of `item` would take on `node`."""
        it = self.items[item]
        return it.extra_memory if self.allocations[item].get(node, 0) else it.first_memory

    def capacity(self, item: int, node: int) -> int:
        """How many more allocations of `item` fit on `node`."""
        it = self.items[item]
        by_processors = int(self.free_processors[node]) // it.threads
        free_memory = int(self.free_memory[node])
        if self.allocations[item].get(node, 0):
            by_memory = free_memory // it.extra_memory if it.extra_memory else _UNLIMITED
        elif free_memory < it.first_memory:
            by_memory = 0
        else:
            by_memory = 1 + (free_memory - it.first_memory) // it.extra_memory if it.extra_memory else _UNLIMITED
        return max(0, min(by_processors, by_memory))

    def capacities(self, item: int) -> np.ndarray:
        """`capacity` of every node at once."""
        it = self.items[item]
        by_processors = self.free_processors // it.threads
        fits = self.free_memory >= it.first_memory
        if it.extra_memory:
            by_memory = np.where(fits, 1 + (self.free_memory - it.first_memory) // it.extra_memory, 0)
        else:
            by_memory = np.where(fits, _UNLIMITED, 0)
        hosting = self.hosting_nodes(item)
        if len(hosting):
            by_memory[hosting] = self.free_memory[hosting] // it.extra_memory if it.extra_memory else _UNLIMITED
        return np.maximum(np.minimum(by_processors, by_memory), 0)

    def hosting_nodes(self, item: int) -> np.ndarray:
        return np.fromiter(self.allocations[item].keys(), dtype=np.int64, count=len(self.allocations[item]))

    def zone_totals(self, item: int) -> np.ndarray:
        totals = np.zeros(self.zone_count, dtype=np.int64)
        for node, count in self.allocations[item].items():
            totals[self.zone_ids[node]] += count
        return totals

    # --- placing ----------------------------------------------------------------------------

    def fill(self, item: int, wanted: int, mask: np.ndarray | None = None, fit: str = "processors") -> int:
        """Place up to `wanted` more allocations of `item` (only on `mask` nodes when given), never
        beyond its requested allocations.

        Node choice, in order: nodes already hosting the item (no new memory), the node taking
        the most of the wanted allocations (fewer nodes, less memory spent on model copies), the
        node left with the fewest free processors (best fit keeps large holes for large items;
        with `fit="memory"`, the least free memory, which saves memory-rich nodes for
        memory-hungry items), then the lowest index (node name order) so that plans are
        deterministic.
        """
        wanted = min(wanted, self.items[item].requested - self.total(item))
        if wanted <= 0:
            return 0
        caps = self.capacities(item)
        if mask is not None:
            caps = np.where(mask, caps, 0)
        if not caps.any():
            return 0
        threads = self.items[item].threads
        hosting_bonus = np.zeros(len(caps), dtype=np.int64)
        hosting = self.hosting_nodes(item)
        if len(hosting):
            hosting_bonus[hosting] = 1 << 50
        placed = 0
        while wanted > 0:
            take = np.minimum(caps, wanted)
            if not take.any():
                break
            if fit == "memory":
                primary = hosting_bonus + take
                primary[take == 0] = -1
                ties = np.flatnonzero(primary == primary.max())
                node = int(ties[np.argmin(self.free_memory[ties])])
            else:
                leftover = self.free_processors - take * threads
                score = hosting_bonus + (take << 25) - leftover
                score[take == 0] = -(1 << 62)
                node = int(np.argmax(score))
            count = int(take[node])
            self.place(item, node, count)
            caps[node] = 0
            placed += count
            wanted -= count
        return placed

    def fill_spread(self, item: int, zones: bool = True) -> int:
        """Fill `item` up to its requested allocations, spread over zones first.

        Zones are visited most-free-processors first and each is asked for an even share of what
        the zones not yet visited must still hold (Elasticsearch's `1 + (remaining - 1) / zones`);
        whatever a zone cannot take is then placed on any node.
        """
        before = self.total(item)
        if before >= self.items[item].requested:
            return 0
        if zones and self.zone_count > 1:
            zone_free = np.bincount(self.zone_ids, weights=self.free_processors, minlength=self.zone_count)
            order = sorted(range(self.zone_count), key=lambda z: (-zone_free[z], z))
            totals = self.zone_totals(item)
            assigned = 0
            for i, zone in enumerate(order):
                remaining = self.items[item].requested - assigned
                need = -(-remaining // (self.zone_count - i)) - int(totals[zone])
                need = min(need, self.items[item].requested - int(totals.sum()))  # other zones' existing
                if need > 0:
                    totals[zone] += self.fill(item, need, self.zone_ids == zone)
                assigned += int(totals[zone])
        self.fill(item, self.items[item].requested - self.total(item))
        return self.total(item) - before


def preserve(packing: Packing, item: int, current: Mapping[int, int]) -> None:
    """Keep the item's existing allocations, as many as its request and the nodes allow.

    When the request shrank below what runs, allocations go first from the zone holding the
    most, and there from the node holding the fewest (whole worker pods disappear rather than
    every pod shrinking a little).
    """
    keep = {node: count for node, count in current.items() if count > 0}
    excess = sum(keep.values()) - packing.items[item].requested
    while excess > 0:
        zone_sum: dict[int, int] = {}
        for node, count in keep.items():
            zone = int(packing.zone_ids[node])
            zone_sum[zone] = zone_sum.get(zone, 0) + count
        zone = max(zone_sum, key=lambda z: (zone_sum[z], -z))
        node = min((n for n in keep if packing.zone_ids[n] == zone), key=lambda n: (keep[n], -n))
        drop = min(excess, keep[node])
        if len(zone_sum) > 1:
            drop = 1  # one at a time keeps the zones balanced
        keep[node] -= drop
        excess -= drop
        if keep[node] == 0:
            del keep[node]
    for node in sorted(keep, key=lambda n: (-keep[n], n)):
        packing.place(item, node, min(keep[node], packing.capacity(item, node)))


def improve(
    packing: Packing,
    floor: Sequence[Mapping[int, int]],
    minimum: Sequence[int],
    order: Sequence[int],
    budget: int,
    depth: int = 1,
) -> None:
    """Local search: make room on one node for a deployment that still wants allocations.

    A greedy pass can fill a node with allocations that would have fitted elsewhere, leaving
    nothing for a deployment that only fits there (e.g. one needing that node's memory). For
    each such (deployment, node), move the node's other allocations away (never below `floor`:
    one allocation of every kept existing (deployment, node) pair stays, Elasticsearch's
    PreserveOneAllocation), place the deployment there, and put the moved allocations back
    wherever they fit, making room for them the same way up to `depth` more levels. The result
    is kept only if more allocations are placed overall, no deployment falls below its `minimum`
    (what it kept of its existing allocations) and none lost its last allocation. `budget`
    bounds the number of attempts (a count, not a time, so plans stay deterministic).
    """
    search = _Search(packing, floor, minimum, budget)
    packing.journal = []
    try:
        while search.budget > 0:
            improved = False
            for item in order:
                if packing.total(item) >= packing.items[item].requested:
                    continue
                for node in search.candidates(item):
                    if search.budget <= 0:
                        return
                    if search.make_room(item, int(node), depth):
                        improved = True
                        packing.journal.clear()
                        if packing.total(item) >= packing.items[item].requested:
                            break
            if not improved:
                return
    finally:
        packing.journal = None


def ruin_and_recreate(
    packing: Packing,
    floor: Sequence[Mapping[int, int]],
    minimum: Sequence[int],
    orders: Sequence[Sequence[int]],
    work: int,
    idle_limit: int,
    stop_at: int | None = None,
    seed: int = 738921734,
) -> None:
    """Large-neighbourhood search: empty a few nodes and fill them again in other ways.

    Some shortfalls need several deployments to swap nodes at once, which moving one node's
    allocations cannot find. Each attempt removes every movable allocation (above `floor`) from
    a node and up to three random others, refills every deployment still wanting allocations
    under each order of `orders` and a random one, and keeps the first refill that places more allocations
    while respecting `minimum`. It stops after `idle_limit` attempts in a row found nothing or
    when `work` (node × deployment steps) is spent; the random choices come from a fixed seed,
    so plans stay deterministic.
    """
    search = _Search(packing, floor, minimum, budget=0)
    rng = np.random.default_rng(seed)
    nodes = len(packing.processors)
    if nodes == 0:
        return
    packing.journal = []
    try:
        attempt = idle = 0
        while work > 0 and idle < idle_limit:
            node = attempt % nodes
            attempt += 1
            extra = rng.choice(nodes, size=min(nodes - 1, int(rng.integers(1, 4))), replace=False)
            ruined = sorted({node, *(int(n) for n in extra)})
            wanting = search.ruin(ruined)
            shuffled = [int(i) for i in rng.permutation(len(packing.items))]
            work -= max(1, len(wanting)) * nodes * (len(orders) + 1) * 2
            if search.recreate(wanting, [*orders, shuffled]):
                packing.journal.clear()
                idle = 0
                if stop_at is not None and packing.placed >= stop_at:
                    return
            else:
                idle += 1
    finally:
        packing.journal = None


class _Search:
    def __init__(self, packing: Packing, floor: Sequence[Mapping[int, int]], minimum: Sequence[int], budget: int):
        self.packing = packing
        self.floor = floor
        self.minimum = minimum
        self.budget = budget

    def candidates(self, item: int) -> np.ndarray:
        """Nodes the item would fit on if they were empty, and on which it can still grow."""
        p = self.packing
        it = p.items[item]
        return np.flatnonzero((p.processors >= it.threads) & (p.memory >= it.first_memory))

    def make_room(self, item: int, node: int, depth: int) -> bool:
        p = self.packing
        assert p.journal is not None
        self.budget -= 1
        others = sorted(
            e for e in p.residents[node] if e != item and p.allocations[e][node] > self.floor[e].get(node, 0)
        )
        if not others:
            return False
        mark = len(p.journal)
        placed_before = p.placed
        moved = {}
        for e in others:
            moved[e] = p.allocations[e][node] - self.floor[e].get(node, 0)
            p.remove(e, node, moved[e])
        only_here = np.zeros(len(p.processors), dtype=bool)
        only_here[node] = True
        if p.fill(item, p.items[item].requested - p.total(item), only_here) > 0:
            for e in sorted(others, key=lambda e: (p.items[e].threads, p.items[e].first_memory, e)):
                short = moved[e] - p.fill(e, moved[e])
                if short > 0 and depth > 0:
                    for other_node in self.candidates(e):
                        if other_node == node or self.budget <= 0:
                            continue
                        if self.make_room(e, int(other_node), depth - 1) and p.total(e) >= p.items[e].requested:
                            break
            if p.placed > placed_before and self._keeps_minimums(mark):
                return True
        p.rollback(mark)
        return False

    def ruin(self, nodes: Sequence[int]) -> list[int]:
        """Remove the movable allocations on `nodes`; the items then wanting allocations."""
        p = self.packing
        self.mark = len(p.journal or [])
        self.placed_before = p.placed
        for node in nodes:
            for e in sorted(p.residents[node]):
                movable = p.allocations[e][node] - self.floor[e].get(node, 0)
                if movable > 0:
                    p.remove(e, node, movable)
        self.ruined_mark = len(p.journal or [])
        return [e for e in range(len(p.items)) if p.total(e) < p.items[e].requested]

    def recreate(self, wanting: Sequence[int], orders: Sequence[Sequence[int]]) -> bool:
        """Refill after `ruin` under each order, best-fitting processors and then memory; keep
        the first better plan, else undo all."""
        p = self.packing
        assert p.journal is not None
        wanted = set(wanting)
        for order, fit in ((order, fit) for order in orders for fit in ("processors", "memory")):
            for e in order:
                if e in wanted:
                    p.fill(e, p.items[e].requested - p.total(e), fit=fit)
            if p.placed > self.placed_before and self._keeps_minimums(self.mark):
                return True
            p.rollback(self.ruined_mark)
        p.rollback(self.mark)
        return False

    def _keeps_minimums(self, mark: int) -> bool:
        p = self.packing
        assert p.journal is not None
        change: dict[int, int] = {}
        for e, _, count in p.journal[mark:]:
            change[e] = change.get(e, 0) + count
        for e, delta in change.items():
            after = p.total(e)
            before = after - delta
            if after < min(self.minimum[e], before) or (before > 0 and after == 0):
                return False
        return True
