"""Routing table merge, assignment_state and allocation_status (es-api.md §3.3–§3.5, §4.2)."""

import pytest

from tmd.operator.assignment import (
    ALL_ROUTES_FAILED_REASON,
    AllocationStatus,
    Route,
    allocation_status,
    assignment_state,
    current_allocations_for_planning,
    max_assigned_allocations,
    merge_routing_table,
    reached,
    reported_assignment_state,
    routing_table_from_dict,
    routing_table_to_dict,
)


def test_new_node_starts_with_current_equal_to_target():
    assert merge_routing_table({}, {"n1": 3}) == {"n1": Route(3, 3, "starting", "")}


def test_existing_node_keeps_current_and_state_and_takes_the_planned_target():
    existing = {"n1": Route(2, 2, "started", "")}
    assert merge_routing_table(existing, {"n1": 4}) == {"n1": Route(2, 4, "started", "")}


def test_failed_route_is_retried():
    existing = {"n1": Route(1, 1, "failed", "worker crashed: OOMKilled")}
    assert merge_routing_table(existing, {"n1": 1}) == {"n1": Route(1, 1, "starting", "")}


def test_routes_the_plan_dropped_are_removed_and_draining_nodes_stop():
    existing = {"n1": Route(1, 1, "started", ""), "n2": Route(2, 2, "started", ""), "n3": Route(1, 1, "started", "")}
    merged = merge_routing_table(existing, {"n1": 1, "n4": 2, "n5": 0}, stopping_nodes={"n3", "n9"})
    assert merged == {
        "n1": Route(1, 1, "started", ""),
        "n3": Route(1, 1, "stopping", ""),
        "n4": Route(2, 2, "starting", ""),
    }


def test_a_stopping_route_planned_again_starts_over():
    assert merge_routing_table({"n1": Route(1, 1, "stopping", "")}, {"n1": 2}) == {"n1": Route(2, 2, "starting", "")}


def test_current_allocations_for_planning_use_the_target_of_live_routes():
    table = {
        "n1": Route(1, 3, "starting", ""),
        "n2": Route(2, 2, "started", ""),
        "n3": Route(1, 1, "failed", "x"),
        "n4": Route(1, 1, "stopping", ""),
        "n5": Route(0, 2, "starting", ""),
        "n6": Route(2, 0, "started", ""),
    }
    assert current_allocations_for_planning(table) == {"n1": 3, "n2": 2, "n3": 1}


def test_assignment_state():
    assert assignment_state({}) == "starting"
    assert assignment_state({"n1": Route(1, 1, "starting", ""), "n2": Route(1, 1, "started", "")}) == "started"
    assert assignment_state({"n1": Route(1, 1, "failed", "x")}) == "starting"
    assert assignment_state({"n1": Route(1, 1, "started", "")}, previous="stopping") == "stopping"


def test_reported_state_is_failed_when_every_route_failed():
    failed = {"n1": Route(1, 1, "failed", "a"), "n2": Route(1, 1, "failed", "b")}
    assert reported_assignment_state(failed, "starting", None) == ("failed", ALL_ROUTES_FAILED_REASON)
    assert reported_assignment_state(failed, "starting", "earlier") == ("failed", "earlier")
    assert reported_assignment_state({}, "starting", None) == ("starting", None)
    mixed = {**failed, "n3": Route(1, 1, "started", "")}
    assert reported_assignment_state(mixed, "started", None) == ("started", None)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({}, AllocationStatus(0, 3, "starting")),
        ({"n1": Route(2, 2, "starting", "")}, AllocationStatus(0, 3, "starting")),
        ({"n1": Route(2, 2, "started", ""), "n2": Route(1, 1, "starting", "")}, AllocationStatus(2, 3, "started")),
        ({"n1": Route(2, 2, "started", ""), "n2": Route(1, 1, "started", "")}, AllocationStatus(3, 3, "fully_allocated")),
        ({"n1": Route(0, 2, "started", "")}, AllocationStatus(0, 3, "starting")),
    ],
)
def test_allocation_status(table, expected):
    assert allocation_status(table, 3, assignment_state(table)) == expected


def test_allocation_status_absent_while_stopping():
    assert allocation_status({"n1": Route(1, 1, "started", "")}, 1, "stopping") is None


def test_wait_for_ordering():
    started = AllocationStatus(1, 2, "started")
    assert reached(started, "starting") and reached(started, "started")
    assert not reached(started, "fully_allocated")
    assert reached(AllocationStatus(2, 2, "fully_allocated"), "fully_allocated")
    assert not reached(None, "starting")


def test_max_assigned_allocations_never_decreases():
    table = {"n1": Route(2, 2, "started", ""), "n2": Route(1, 3, "starting", "")}
    assert max_assigned_allocations(0, table) == 3
    assert max_assigned_allocations(5, table) == 5


def test_round_trip_through_the_status_dict():
    body = {
        "n2": {"current_allocations": 1, "target_allocations": 2, "routing_state": "started", "reason": ""},
        "n1": {"current_allocations": 0, "target_allocations": 1, "routing_state": "failed", "reason": "boom"},
        "n3": {"current_allocations": 1, "target_allocations": 1, "routing_state": "starting"},
    }
    table = routing_table_from_dict(body)
    assert list(table) == ["n1", "n2", "n3"]
    assert routing_table_to_dict(table) == body
    with pytest.raises(ValueError, match=r"unknown routing_state \[running\]"):
        routing_table_from_dict({"n1": {"routing_state": "running"}})
