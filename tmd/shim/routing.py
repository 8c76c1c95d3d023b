"""Which worker serves an inference request (es-api.md §5.1), as pure functions.

Elasticsearch picks a node per document at random, weighted by the node's allocations. tmd
instead sends each document to the route with the fewest outstanding documents per allocation
("least outstanding requests", weighted by allocations): under even load it spreads work in
the same proportion as the weighted random choice, but it never piles documents onto a node
whose queue is already long (random choice does, by chance, and that is where 429s and p99
latency come from), and it adapts at once when a node is slow. Ties go to the route with more
allocations, then to the node name, so the choice is deterministic and testable.

A worker the shim could not reach (killed, restarting, its node gone) is left out for a short
while (`reachable`), and a request it failed is tried once more elsewhere (`fallback`): the
routing table lags behind such a fault by however long the operator takes to see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class Target:
    """A started route of a deployment that can take requests."""

    node: str
    address: str  # host:port of the worker
    allocations: int


def started_targets(deployment: Mapping[str, Any], pod_ips: Mapping[str, str], port: int) -> list[Target]:
    """Routes that are `started` with allocations > 0 (RoutingInfo.isRoutable) and whose worker
    has an address; falls back to `stopping` routes as Elasticsearch does."""
    table = (deployment.get("status") or {}).get("routing_table") or {}
    for state in ("started", "stopping"):
        out = [Target(node, f"{pod_ips[node]}:{port}", int(r.get("current_allocations") or 0))
               for node, r in sorted(table.items())
               if r.get("routing_state") == state and (state == "stopping" or (r.get("current_allocations") or 0) > 0)
               and pod_ips.get(node)]
        if out:
            return out
    return []


def choose(targets: Sequence[Target], outstanding: Mapping[str, int]) -> Target:
    """The target with the fewest outstanding documents per allocation."""
    return min(targets, key=lambda t: ((outstanding.get(t.address, 0) + 1) / max(t.allocations, 1),
                                       -t.allocations, t.node))


def split_docs(n_docs: int, targets: Sequence[Target], outstanding: Mapping[str, int]) -> list[tuple[Target, int, int]]:
    """Give each document a target by `choose`, counting the ones already given, and group them
    into contiguous slices (start, end) per request so results reassemble in order."""
    load = dict(outstanding)
    picks: list[Target] = []
    for _ in range(n_docs):
        target = choose(targets, load)
        load[target.address] = load.get(target.address, 0) + 1
        picks.append(target)
    # Contiguous slices: the i-th slice goes to the target with the i-th largest share.
    counts: dict[Target, int] = {}
    for t in picks:
        counts[t] = counts.get(t, 0) + 1
    slices: list[tuple[Target, int, int]] = []
    start = 0
    for target, count in counts.items():
        slices.append((target, start, start + count))
        start += count
    return slices


def reachable(targets: Sequence[Target], unreachable: Mapping[str, float], now: float, hold: float) -> list[Target]:
    """The targets not found unreachable in the last `hold` seconds (`unreachable`: address →
    when). All of them when that leaves none: trying a worker that may be back is better than
    refusing outright, and the attempt costs one failed connection."""
    out = [t for t in targets if now - unreachable.get(t.address, float("-inf")) >= hold]
    return out or list(targets)


def fallback(targets: Sequence[Target], failed: Target, outstanding: Mapping[str, int]) -> Target | None:
    """Where to retry a slice that `failed` could not take: another target by `choose`, or None."""
    others = [t for t in targets if t.address != failed.address]
    return choose(others, outstanding) if others else None
