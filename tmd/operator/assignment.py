"""The assignment's routing table and the states derived from it (es-api.md §3.3–§3.5, §4.2).

Pure functions the operator applies between a plan and a deployment's status: turn a plan
into the new routing table, read back what the planner needs, and compute
`assignment_state`, `allocation_status` and `max_assigned_allocations` as Elasticsearch does.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

RoutingState = Literal["starting", "started", "stopping", "failed", "stopped"]
AssignmentState = Literal["starting", "started", "stopping", "failed"]
AllocationState = Literal["starting", "started", "fully_allocated"]

ROUTING_STATES = ("starting", "started", "stopping", "failed", "stopped")
ALL_ROUTES_FAILED_REASON = "All node routes are failed; see node route reason for details"


@dataclass(frozen=True)
class Route:
    """One node's entry in `routing_table`."""

    current_allocations: int
    target_allocations: int
    routing_state: RoutingState
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The Elasticsearch shape; `reason` is left out only when unset (a starting route has "")."""
        body: dict[str, Any] = {
            "current_allocations": self.current_allocations,
            "target_allocations": self.target_allocations,
            "routing_state": self.routing_state,
        }
        if self.reason is not None:
            body["reason"] = self.reason
        return body

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> "Route":
        state = body.get("routing_state", "starting")
        if state not in ROUTING_STATES:
            raise ValueError(f"unknown routing_state [{state}]")
        return cls(
            int(body.get("current_allocations", 0)),
            int(body.get("target_allocations", 0)),
            state,
            body.get("reason"),
        )

    @property
    def is_routable(self) -> bool:
        """Can serve inference: started with allocations (`RoutingInfo.isRoutable`)."""
        return self.routing_state == "started" and self.current_allocations > 0


RoutingTable = Mapping[str, Route]


def routing_table_from_dict(body: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Route]:
    return {node: Route.from_dict(route) for node, route in sorted((body or {}).items())}


def routing_table_to_dict(table: RoutingTable) -> dict[str, dict[str, Any]]:
    return {node: route.to_dict() for node, route in sorted(table.items())}


def merge_routing_table(
    existing: RoutingTable, planned: Mapping[str, int], stopping_nodes: Collection[str] = ()
) -> dict[str, Route]:
    """The routing table after a rebalance (§3.5).

    A node new to the deployment starts with current = target = planned; a node it already has
    keeps its current allocations and state with the planned target, except that a failed route
    is retried (starting, reason ""); routes the plan no longer has are dropped, and those on
    `stopping_nodes` (nodes being drained) are kept as stopping until their worker is gone.
    A stopping or stopped route that the plan uses again starts over like a new one, since its
    worker is going away.
    """
    table: dict[str, Route] = {}
    for node, count in sorted(planned.items()):
        if count <= 0:
            continue
        previous = existing.get(node)
        if previous is None or previous.routing_state in ("stopping", "stopped"):
            table[node] = Route(count, count, "starting", "")
        elif previous.routing_state == "failed":
            table[node] = Route(previous.current_allocations, count, "starting", "")
        else:
            table[node] = Route(previous.current_allocations, count, previous.routing_state, previous.reason)
    for node in sorted(set(stopping_nodes) - set(table)):
        previous = existing.get(node)
        if previous is not None and previous.routing_state != "stopped":
            table[node] = Route(previous.current_allocations, previous.target_allocations, "stopping", previous.reason)
    return dict(sorted(table.items()))


def current_allocations_for_planning(table: RoutingTable) -> dict[str, int]:
    """What the planner treats as existing allocations (§4.2): the *target* of routes that are
    starting, started or failed with current > 0 and target > 0."""
    return {
        node: route.target_allocations
        for node, route in sorted(table.items())
        if route.routing_state in ("starting", "started", "failed")
        and route.current_allocations > 0
        and route.target_allocations > 0
    }


def assignment_state(table: RoutingTable, previous: AssignmentState | None = None) -> AssignmentState:
    """`calculateAssignmentState`: stopping stays stopping; started if any route is; else starting."""
    if previous == "stopping":
        return "stopping"
    if any(route.routing_state == "started" for route in table.values()):
        return "started"
    return "starting"


def reported_assignment_state(
    table: RoutingTable, state: AssignmentState, reason: str | None
) -> tuple[AssignmentState, str | None]:
    """The state and reason the stats report: `failed` when every route has failed (never stored)."""
    if state != "stopping" and table and all(r.routing_state == "failed" for r in table.values()):
        return "failed", reason or ALL_ROUTES_FAILED_REASON
    return state, reason


@dataclass(frozen=True)
class AllocationStatus:
    allocation_count: int
    target_allocation_count: int
    state: AllocationState

    def to_dict(self) -> dict[str, Any]:
        return {
            "allocation_count": self.allocation_count,
            "target_allocation_count": self.target_allocation_count,
            "state": self.state,
        }


def allocation_status(
    table: RoutingTable, number_of_allocations: int, state: AssignmentState
) -> AllocationStatus | None:
    """§3.4; None while stopping (the stats leave it out then)."""
    if state == "stopping":
        return None
    count = sum(route.current_allocations for route in table.values() if route.is_routable)
    if count == 0:
        status: AllocationState = "starting"
    elif count < number_of_allocations:
        status = "started"
    else:
        status = "fully_allocated"
    return AllocationStatus(count, number_of_allocations, status)


ALLOCATION_STATE_ORDER: dict[str, int] = {"starting": 0, "started": 1, "fully_allocated": 2}


def reached(status: AllocationStatus | None, wait_for: AllocationState) -> bool:
    """`wait_for` is met when the allocation state is at least it (starting < started < fully_allocated)."""
    return status is not None and ALLOCATION_STATE_ORDER[status.state] >= ALLOCATION_STATE_ORDER[wait_for]


def max_assigned_allocations(previous: int, table: RoutingTable) -> int:
    """Kept ≥ the total current allocations ever seen (§3.3)."""
    return max(previous, sum(route.current_allocations for route in table.values()))
