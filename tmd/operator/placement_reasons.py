"""Why allocations could not be placed: the reason texts of es-api.md §3.5 and §11.

Elasticsearch joins one "Could not assign (more) allocations on node [id]. Reason: ..." per
node with "|"; the texts here are its texts, plus tmd's own for what Elasticsearch has no
words for (a node that is not ready, threads larger than every node, the low priority cap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from tmd.api.memory import byte_size_string
from tmd.api.ml_nodes import MLNode
from tmd.operator.packing import Packing

if TYPE_CHECKING:
    from tmd.operator.planner import DeploymentDemand

#: Elasticsearch's `MAX_LOW_PRIORITY_MODELS_PER_NODE`: low priority ignores CPU, but not without bound.
LOW_PRIORITY_ALLOCATIONS_PER_NODE = 100

NO_ML_NODES_REASON = "No ML nodes exist in the cluster"

#: Nodes named in a deployment's reason at most (the rest are counted).
MAX_NODE_REASONS = 25


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


class NodeView:
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


def explain_normal(demand: DeploymentDemand, item: int, packing: Packing, nodes: NodeView) -> str | None:
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


def explain_low(
    demand: DeploymentDemand, free_memory: np.ndarray, low_count: np.ndarray, nodes: NodeView
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
