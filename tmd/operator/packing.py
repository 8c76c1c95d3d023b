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
        return other

    # --- accounting -------------------------------------------------------------------------

    def total(self, item: int) -> int:
        return sum(self.allocations[item].values())

    def total_allocations(self) -> int:
        return sum(sum(a.values()) for a in self.allocations)

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

    def fill(self, item: int, wanted: int, mask: np.ndarray | None = None) -> int:
        """Place up to `wanted` more allocations of `item` (only on `mask` nodes when given).

        Node choice, in order: nodes already hosting the item (no new memory), the node taking
        the most of the wanted allocations (fewer nodes, less memory spent on model copies), the
        node left with the fewest free processors (best fit keeps large holes for large items),
        then the lowest index (node name order) so that plans are deterministic.
        """
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
) -> None:
    """Local search: make room on one node for a deployment that still wants allocations.

    A greedy pass can fill a node with allocations that would have fitted elsewhere, leaving
    nothing for a deployment that only fits there (e.g. one needing that node's memory). For
    each such (deployment, node), move the node's other allocations away (never below `floor`:
    one allocation of every kept existing (deployment, node) pair stays, Elasticsearch's
    PreserveOneAllocation), place the deployment there, put the moved allocations back wherever
    they fit, and keep the result only if more allocations are placed overall, no deployment
    falls below its `minimum` (what it kept of its existing allocations) and none lost its last
    allocation. `budget` bounds the number of attempts (a count, not a time, so plans stay
    deterministic).
    """
    while budget > 0:
        improved = False
        for item in order:
            it = packing.items[item]
            if packing.total(item) >= it.requested:
                continue
            candidates = np.flatnonzero((packing.processors >= it.threads) & (packing.memory >= it.first_memory))
            for node in candidates:
                if budget <= 0:
                    return
                budget -= 1
                if _make_room(packing, floor, minimum, item, int(node)):
                    improved = True
                    if packing.total(item) >= it.requested:
                        break
        if not improved:
            return


def _make_room(
    packing: Packing, floor: Sequence[Mapping[int, int]], minimum: Sequence[int], item: int, node: int
) -> bool:
    others = sorted(
        e for e in packing.residents[node] if e != item and packing.allocations[e][node] > floor[e].get(node, 0)
    )
    if not others:
        return False
    touched = [item, *others]
    saved_allocations = {e: dict(packing.allocations[e]) for e in touched}
    saved = (packing.free_processors.copy(), packing.free_memory.copy())
    before = {e: packing.total(e) for e in touched}
    moved = {}
    for e in others:
        moved[e] = packing.allocations[e][node] - floor[e].get(node, 0)
        packing.remove(e, node, moved[e])
    only_here = np.zeros(len(packing.processors), dtype=bool)
    only_here[node] = True
    if packing.fill(item, packing.items[item].requested - packing.total(item), only_here) > 0:
        for e in sorted(others, key=lambda e: (packing.items[e].threads, packing.items[e].first_memory, e)):
            packing.fill(e, moved[e])
        after = {e: packing.total(e) for e in touched}
        gained = sum(after.values()) - sum(before.values())
        if gained > 0 and all(after[e] >= min(minimum[e], before[e]) and (after[e] or not before[e]) for e in touched):
            return True
    packing.free_processors, packing.free_memory = saved
    for e in touched:
        for n in packing.allocations[e]:
            packing.residents[n].discard(e)
    for e, allocations in saved_allocations.items():
        packing.allocations[e] = allocations
        for n in allocations:
            packing.residents[n].add(e)
    return False
