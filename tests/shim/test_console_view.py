"""The console's server side as pure functions: stats and statuses into table rows, the nodes ×
deployments grid, events, the sampled series and the latency window."""

from __future__ import annotations

import pytest

from tmd.api.ml_nodes import NOT_READY_REASON, MLNode
from tmd.shim.console import view
from tmd.shim.console.series import MAX_POINTS, Point, Series, rate
from tmd.shim.latency import LatencyWindow, percentile


def deployment(deployment_id: str, table: dict, *, name: str | None = None, allocation_status: dict | None = None,
               conditions: list | None = None, reason: str | None = None) -> dict:
    status = {"assignment_state": "started", "routing_table": table, "conditions": conditions or []}
    if allocation_status is not None:
        status["allocation_status"] = allocation_status
    if reason:
        status["reason"] = reason
    return {"metadata": {"name": name or deployment_id.replace("_", "-")},
            "spec": {"deployment_id": deployment_id, "model_id": "m"}, "status": status}


def node(name: str, **fields) -> dict:
    return {"node": {name: {"name": name}}, **fields}


def stats(deployment_id: str, nodes: list, **fields) -> dict:
    return {"deployment_id": deployment_id, "model_id": "m", "state": "started", "number_of_allocations": 3,
            "threads_per_allocation": 2, "queue_capacity": 100, "priority": "normal", "nodes": nodes, **fields}


TABLE = {"n2": {"routing_state": "failed", "reason": "worker exited with code 137", "current_allocations": 0,
                "target_allocations": 1},
         "n1": {"routing_state": "started", "current_allocations": 2, "target_allocations": 2}}
NODES = [node("n1", inference_count=40, number_of_pending_requests=30, throughput_last_minute=12,
              routing_state={"routing_state": "started"}),
         node("n2", routing_state={"routing_state": "failed", "reason": "worker exited with code 137"})]


def test_row_reports_allocations_queue_throughput_latency_and_failures():
    dep = deployment("d_1", TABLE, allocation_status={"allocation_count": 2, "target_allocation_count": 3,
                                                      "state": "started"},
                     conditions=[{"type": "Degraded", "status": "True", "reason": "RouteFailed",
                                  "message": "n2: worker exited with code 137", "lastTransitionTime": "2026-01-01T00:00:00Z"}])
    row = view.deployment_row(dep, stats("d_1", NODES, error_count=1, rejected_execution_count=4, timeout_count=2,
                                         inference_count=40),
                              Point(12.345, 5.0, 9.0, 30), (4.25, 51.0))
    assert (row["allocations"], row["target_allocations"]) == (2, 3)
    assert row["queue_fill"] == 0.3 and row["pending"] == 30 and row["queue_capacity"] == 100
    assert row["throughput"] == 12.35 and row["throughput_last_minute"] == 12
    assert (row["p50_ms"], row["p99_ms"]) == (4.25, 51.0)
    assert (row["errors"], row["rejected"], row["timeouts"]) == (1, 4, 2)
    assert [r["node"] for r in row["routes"]] == ["n1", "n2"]
    assert row["routes"][1] == {"node": "n2", "state": "failed", "reason": "worker exited with code 137",
                                "current_allocations": 0, "target_allocations": 1, "pending": 0, "inference_count": 0}
    assert row["conditions"][0]["type"] == "Degraded" and "exited" in row["conditions"][0]["message"]


def test_row_before_any_sample_or_request_has_no_throughput_or_latency():
    row = view.deployment_row(deployment("d", {}), stats("d", []), None, (None, None))
    assert row["throughput"] is None and row["p50_ms"] is None and row["queue_fill"] == 0.0
    # without an allocation_status the placed allocations are the started routes' current ones
    assert (row["allocations"], row["target_allocations"]) == (0, 3)


def test_placed_allocations_fall_back_to_started_routes():
    assert view.allocations(deployment("d", TABLE), stats("d", NODES)) == (2, 3)


def test_queue_fill_is_the_fullest_worker():
    two = [node("a", number_of_pending_requests=10), node("b", number_of_pending_requests=90)]
    assert view.queue_fill(stats("d", two)) == 0.9
    assert view.queue_fill(stats("d", [node("a", number_of_pending_requests=500)])) == 1.0
    assert view.queue_fill(stats("d", two, queue_capacity=0)) == 0.0


def test_grid_places_each_route_on_its_node_and_counts_failed():
    rows = [view.deployment_row(deployment("a", TABLE), stats("a", NODES), None, (None, None)),
            view.deployment_row(deployment("b", {"n3": {"routing_state": "starting", "current_allocations": 0,
                                                        "target_allocations": 1}}), stats("b", []), None, (None, None))]
    grid = view.grid(rows, [MLNode("n1", processors=8), MLNode("n2", processors=8), MLNode("n3", processors=8)])
    assert [n["name"] for n in grid["nodes"]] == ["n1", "n2", "n3"] and grid["deployments"] == ["a", "b"]
    assert grid["cells"][0][0]["state"] == "started" and grid["cells"][0][1] is None
    assert grid["cells"][1][0] == {"state": "failed", "reason": "worker exited with code 137",
                                   "current_allocations": 0, "target_allocations": 1, "pending": 0}
    assert grid["cells"][2][1]["state"] == "starting" and grid["cells"][2][0] is None
    assert grid["failed_routes"] == 1
    assert view.grid([], []) == {"nodes": [], "deployments": [], "cells": [], "failed_routes": 0}


def test_grid_shows_every_ml_node_with_the_processors_allocations_use():
    """Idle ML nodes too, so free capacity shows; used = target allocations × threads per route."""
    table = {"n1": {"routing_state": "started", "current_allocations": 2, "target_allocations": 2},
             "n2": {"routing_state": "starting", "current_allocations": 0, "target_allocations": 1}}
    big = view.deployment_row(deployment("big", table), stats("big", [], threads_per_allocation=2), None, (None, None))
    small = view.deployment_row(deployment("small", {"n1": {"routing_state": "started", "current_allocations": 1,
                                                             "target_allocations": 1}}),
                                stats("small", [], threads_per_allocation=1), None, (None, None))
    ml = [MLNode("n1", processors=8), MLNode("n2", processors=4), MLNode("n3", processors=16),
          MLNode("n4", processors=8, ready=False),
          MLNode("n5", processors=0, error="Invalid value [x] of annotation [ml.tmd.dev/allocated-processors]")]
    grid = view.grid([big, small], ml)
    assert grid["nodes"] == [
        {"name": "n1", "ml_node": True, "ready": True, "reason": "", "processors": 8, "used_processors": 5},
        {"name": "n2", "ml_node": True, "ready": True, "reason": "", "processors": 4, "used_processors": 2},
        {"name": "n3", "ml_node": True, "ready": True, "reason": "", "processors": 16, "used_processors": 0},
        {"name": "n4", "ml_node": True, "ready": False, "reason": NOT_READY_REASON, "processors": 8,
         "used_processors": 0},
        {"name": "n5", "ml_node": True, "ready": False,
         "reason": "Invalid value [x] of annotation [ml.tmd.dev/allocated-processors]", "processors": 0,
         "used_processors": 0}]
    # idle nodes have a row of empty cells, one per deployment
    assert grid["cells"][2] == [None, None] and grid["cells"][3] == [None, None]


def test_low_priority_takes_no_processors_as_in_the_planner():
    low = view.deployment_row(deployment("low", {"n1": {"routing_state": "started", "current_allocations": 1,
                                                         "target_allocations": 1}}),
                              stats("low", [], priority="low", threads_per_allocation=1), None, (None, None))
    assert view.grid([low], [MLNode("n1", processors=2)])["nodes"][0]["used_processors"] == 0


def test_grid_keeps_routed_nodes_that_are_no_ml_nodes_and_copes_without_a_node_list():
    row = view.deployment_row(deployment("a", TABLE), stats("a", NODES), None, (None, None))
    # n2 left the cluster (or lost the ML label) while its route remains
    gone = view.grid([row], [MLNode("n1", processors=8)])
    assert gone["nodes"][1] == {"name": "n2", "ml_node": False, "ready": False, "reason": view.NOT_ML_NODE_REASON,
                                "processors": None, "used_processors": 2}
    # the nodes could not be listed: only routed nodes, capacity and readiness unknown
    unknown = view.grid([row], None)
    assert [(n["name"], n["ready"], n["processors"], n["used_processors"]) for n in unknown["nodes"]] == \
        [("n1", None, None, 4), ("n2", None, None, 2)]


def test_events_of_deployments_and_their_worker_pods_newest_first():
    deps = [deployment("a", {}, name="a"), deployment("a_b", {}, name="a-b")]
    events = [
        {"involvedObject": {"kind": "Pod", "name": "a-b-node-1"}, "type": "Warning", "reason": "BackOff",
         "message": "Back-off restarting", "lastTimestamp": "2026-01-01T00:00:03Z", "count": 2},
        {"involvedObject": {"kind": "Pod", "name": "a-node-1"}, "type": "Normal", "reason": "Started",
         "message": "Started container worker", "lastTimestamp": "2026-01-01T00:00:01Z"},
        {"involvedObject": {"kind": "Pod", "name": "tmd-shim-abc"}, "type": "Normal", "reason": "Started",
         "lastTimestamp": "2026-01-01T00:00:05Z"},
        {"involvedObject": {"kind": "TrainedModelDeployment", "name": "a"}, "type": "Warning", "reason": "Error",
         "message": "handler failed", "metadata": {"creationTimestamp": "2026-01-01T00:00:02Z"}},
        {"involvedObject": {"kind": "Node", "name": "n1"}, "type": "Normal", "reason": "Ready"},
    ]
    rows = view.event_rows(events, deps)
    assert [(r["reason"], r["deployment_id"]) for r in rows] == [("BackOff", "a_b"), ("Error", "a"), ("Started", "a")]
    assert rows[0]["count"] == "2" and rows[0]["object"] == "Pod/a-b-node-1"
    many = [{**events[1], "lastTimestamp": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z"} for i in range(120)]
    assert len(view.event_rows(many, deps)) == view.MAX_EVENTS


def test_models_offer_their_input_field_and_whether_they_can_start():
    ready = {"spec": {"model_id": "b", "input": {"field_names": ["content"]},
                      "definition": {"uri": "file:///x", "total_definition_length": 10}}}
    bare = {"spec": {"model_id": "a"}}
    assert view.models([ready, bare]) == [{"model_id": "a", "input_field": "text_field", "fully_defined": False},
                                          {"model_id": "b", "input_field": "content", "fully_defined": True}]


def test_rate_counts_restarted_and_new_workers_from_zero():
    assert rate(None, {"n1": 10}, 2.0) is None
    assert rate({"n1": 10}, {"n1": 30}, 2.0) == 10.0
    assert rate({"n1": 10}, {"n1": 4}, 2.0) == 2.0          # restarted: counts from 0
    assert rate({"n1": 10}, {"n1": 10, "n2": 6}, 2.0) == 3.0  # new worker
    assert rate({"n1": 10, "n2": 6}, {"n1": 10}, 2.0) == 0.0  # a worker gone adds nothing
    assert rate({"n1": 1}, {"n1": 2}, 0.0) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_series_samples_throughput_latency_and_queue_aligned_on_one_time_axis():
    clock = FakeClock()
    latency = LatencyWindow(clock=clock)
    series = Series()
    series.sample(100.0, [stats("a", [node("n1", inference_count=10, number_of_pending_requests=1)])], latency)
    for ms in (10, 20, 30, 40, 1000):
        latency.record("a", ms / 1000)
    clock.now += 1
    series.sample(102.0, [stats("a", [node("n1", inference_count=30, number_of_pending_requests=5)]),
                          stats("b", [])], latency)
    columns = series.since(0, 102.0)
    assert columns["t"] == [100.0, 102.0]
    assert columns["deployments"]["a"] == {"throughput": [None, 10.0], "p50": [None, 30.0], "p99": [None, 1000.0],
                                           "queue": [1, 5]}
    assert columns["deployments"]["b"] == {"throughput": [None, None], "p50": [None, None], "p99": [None, None],
                                           "queue": [None, 0]}
    assert series.since(100.0, 102.0)["t"] == [102.0]
    assert series.since(0, 102.0 + 16 * 60)["t"] == []  # older than the 15-minute window
    assert series.latest()["a"] == Point(10.0, 30.0, 1000.0, 5)


def test_series_is_bounded():
    series = Series()
    latency = LatencyWindow()
    for i in range(MAX_POINTS + 50):
        series.sample(float(i), [stats("a", [])], latency)
    assert len(series.samples) == MAX_POINTS and series.samples[0][0] == 50.0


def test_latency_window_is_bounded_per_deployment_and_forgets_deployments():
    clock = FakeClock()
    window = LatencyWindow(max_samples=100, clock=clock)
    for i in range(1000):
        window.record("a", i / 1000)
    assert window.quantiles_ms("a", 60) == (pytest.approx(949.0), pytest.approx(998.0))  # the last 100 only
    clock.now += 61
    window.record("b", 0.005)
    assert window.quantiles_ms("a", 60) == (None, None)
    assert window.quantiles_ms("b", 60) == (5.0, 5.0)
    window.keep_only(["b"])
    assert window.quantiles_ms("a", 3600) == (None, None)


def test_latency_window_tracks_a_bounded_number_of_deployments():
    clock = FakeClock()
    window = LatencyWindow(clock=clock, max_tracked=3)
    for name in ("a", "b", "c"):
        clock.now += 1
        window.record(name, 0.001)
    clock.now += 1
    window.record("a", 0.002)  # a answered again: b is now the stalest
    window.record("d", 0.004)
    assert window.quantiles_ms("b", 3600) == (None, None)
    assert [window.quantiles_ms(d, 3600)[1] for d in ("a", "c", "d")] == [2.0, 1.0, 4.0]


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50 and percentile(values, 0.99) == 99 and percentile(values, 1.0) == 100
    assert percentile([7.0], 0.99) == 7.0 and percentile([], 0.5) is None
