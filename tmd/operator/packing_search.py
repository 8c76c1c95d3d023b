"""Searches that improve a greedy packing: more allocations placed, by moving others.

Both work on a `Packing` with its journal switched on, so a fruitless attempt is undone
exactly; both are bounded by counts rather than time, so plans stay deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tmd.operator.packing import Packing



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
    (what it kept of its existing allocations, or the one a previously allocated deployment
    got back). Allocations placed by this plan alone may give way to more of another. `budget`
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
    under each order of `orders` and a random one, and keeps the first refill that places more
    allocations while respecting `minimum`. It stops after `idle_limit` attempts in a row found
    nothing, when `work` (node × deployment steps) is spent, or on reaching `stop_at`
    allocations; the random choices come from a fixed seed, so plans stay deterministic.
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
    """The moves both searches make, and the check that a move keeps what must be kept."""

    def __init__(self, packing: Packing, floor: Sequence[Mapping[int, int]], minimum: Sequence[int], budget: int):
        self.packing = packing
        self.floor = floor
        self.minimum = minimum
        self.budget = budget
        self.mark = self.ruined_mark = self.placed_before = 0

    def candidates(self, item: int) -> np.ndarray:
        """Nodes the item would fit on if they were empty, those that could hold most of it first."""
        p = self.packing
        it = p.items[item]
        fits = (p.processors >= it.threads) & (p.memory >= it.first_memory)
        if it.extra_memory:
            by_memory = np.where(fits, 1 + (p.memory - it.first_memory) // it.extra_memory, 0)
        else:
            by_memory = np.where(fits, 1 << 40, 0)
        most = np.minimum(p.processors // it.threads, by_memory)
        nodes = np.flatnonzero(fits)
        return nodes[np.argsort(-most[nodes], kind="stable")]

    def make_room(self, item: int, node: int, depth: int, nested: bool = False) -> bool:
        """Move the node's movable allocations away to place `item` there; undone unless better.

        Better means more allocations overall with every minimum kept; for a `nested` call (room
        made for allocations an outer call moved) it means only that the item got some back: the
        outermost call judges the whole chain.
        """
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
        item_before = p.total(item)
        had = {e: p.total(e) for e in others}
        moved = {}
        for e in others:
            moved[e] = p.allocations[e][node] - self.floor[e].get(node, 0)
            p.remove(e, node, moved[e])
        evicted = len(p.journal)
        elsewhere = np.ones(len(p.processors), dtype=bool)
        elsewhere[node] = False
        # first as many as fit here, the moved ones after; else the moved ones elsewhere first
        for moved_first in (False, True):
            if moved_first:
                for e in others:
                    p.fill(e, moved[e], elsewhere)
            here = min(p.capacity(item, node), p.items[item].requested - p.total(item))
            if here > 0:
                p.place(item, node, here)
                self._put_back(others, had, node, depth)
                if nested and p.total(item) > item_before:
                    return True
                if not nested and p.placed > placed_before and self._keeps_minimums(mark):
                    return True
            p.rollback(evicted)
        p.rollback(mark)
        return False

    def _put_back(self, others: Sequence[int], had: Mapping[int, int], node: int, depth: int) -> None:
        """Place moved allocations again wherever they fit, making room up to `depth` levels."""
        p = self.packing
        for e in sorted(others, key=lambda e: (p.items[e].threads, p.items[e].first_memory, e)):
            missing = had[e] - p.total(e)
            short = missing - p.fill(e, missing)
            if short > 0 and depth > 0:
                for other_node in self.candidates(e):
                    if other_node == node or self.budget <= 0:
                        continue
                    if self.make_room(e, int(other_node), depth - 1, nested=True) and p.total(e) >= had[e]:
                        break

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
            if after < min(self.minimum[e], before):
                return False
        return True
