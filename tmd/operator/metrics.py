"""Prometheus metrics of the operator: how its passes go and what they leave behind.

Counters for passes and pod changes show whether the operator keeps up; gauges summarise the
statuses it wrote (deployments per assignment state, allocations asked for and placed), so an
alert can fire on `tmd_operator_allocations{kind="target"} > tmd_operator_allocations{kind="placed"}`
without reading every resource. A registry of its own keeps the operator's metrics apart from
whatever else shares the process (kopf registers none).
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tmd.api.http import serve_metrics
from tmd.api.status import AssignmentState
from tmd.operator.reconcile import Reconciliation

REGISTRY = CollectorRegistry()
PASSES = Counter("tmd_operator_reconcile_passes", "Reconciliation passes, by result", ["result"], registry=REGISTRY)
PASS_SECONDS = Histogram("tmd_operator_reconcile_duration_seconds", "Time of one reconciliation pass",
                         registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.375, 0.5, 0.75,
                                  1, 1.5, 2.5, 5, 10))
PLAN_SECONDS = Histogram("tmd_operator_plan_duration_seconds", "CPU-bound part of a pass: planning from the cache",
                         registry=REGISTRY, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
POD_CHANGES = Counter("tmd_operator_pod_changes", "Worker pod changes decided, by action", ["action"],
                      registry=REGISTRY)
DEPLOYMENTS = Gauge("tmd_operator_deployments", "Deployments by assignment state", ["assignment_state"],
                    registry=REGISTRY)
API_REQUESTS = Counter("tmd_operator_api_requests", "Kubernetes API requests of the reconciler and the adaptive "
                       "scaler (kopf's own watches not included), by verb and resource", ["verb", "resource"],
                       registry=REGISTRY)
ALLOCATIONS = Gauge("tmd_operator_allocations", "Allocations over all deployments: asked for (target) and placed",
                    ["kind"], registry=REGISTRY)


def summarise(result: Reconciliation) -> dict[str, Tally[str]]:
    """What a pass's result contributes to the gauges and counters (pure, for tests)."""
    states: Tally[str] = Tally({state.value: 0 for state in AssignmentState})
    allocations: Tally[str] = Tally({"target": 0, "placed": 0})
    for status in result.statuses.values():
        if status.get("assignment_state"):
            states[status["assignment_state"]] += 1
        allocation = status.get("allocation_status") or {}
        allocations["target"] += int(allocation.get("target_allocation_count") or 0)
        allocations["placed"] += int(allocation.get("allocation_count") or 0)
    return {"states": states, "allocations": allocations,
            "changes": Tally(change.action for change in result.pod_changes)}


def observe(result: Reconciliation, seconds: float) -> None:
    summary = summarise(result)
    PASSES.labels("ok").inc()
    PASS_SECONDS.observe(seconds)
    for action, n in summary["changes"].items():
        POD_CHANGES.labels(action).inc(n)
    for state, n in summary["states"].items():
        DEPLOYMENTS.labels(state).set(n)
    for kind, n in summary["allocations"].items():
        ALLOCATIONS.labels(kind).set(n)


def observe_failure(seconds: float) -> None:
    PASSES.labels("error").inc()
    PASS_SECONDS.observe(seconds)


def serve(address: str) -> None:
    serve_metrics(address, REGISTRY)
