"""manifests/grafana/tmd-dashboard.json against Grafana's own schemas (vendored from the
grafana-foundation-sdk, see grafana_schema/SOURCE.md) and against the code: every metric a
query names is one that the operator, the shim or a worker exports."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (test extra) validates the dashboard")

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "manifests" / "grafana" / "tmd-dashboard.json"
SCHEMAS = Path(__file__).resolve().parent / "grafana_schema"
METRIC = re.compile(r"\b(tmd_[a-z_]+)\b")


def schema(name: str, definition: str | None = None) -> dict[str, Any]:
    document = json.loads((SCHEMAS / f"{name}.jsonschema.json").read_text())
    if definition is None:
        return document
    return {"$ref": f"#/definitions/{definition}", "definitions": document["definitions"]}


def errors(document: Any, against: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(against)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(document)]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(board) for t in p.get("targets", [])]
    exprs += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_dashboard_is_valid_against_grafanas_schemas():
    board = dashboard()
    assert errors(board, schema("dashboard")) == []
    kinds = {"timeseries": schema("timeseries", "Options"), "stat": schema("stat", "Options")}
    field_config = schema("timeseries", "FieldConfig")
    query = schema("prometheus")
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["type"] in kinds, panel["title"]
        assert errors(panel["options"], kinds[panel["type"]]) == [], panel["title"]
        if panel["type"] == "timeseries":
            assert errors(panel["fieldConfig"]["defaults"]["custom"], field_config) == [], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert errors(target, query) == [], (panel["title"], target)


def test_the_schema_check_catches_a_broken_dashboard():
    """The vendored schema is strict enough to matter: a panel without a position, an unknown
    dashboard field and a query without an expression are each rejected."""
    board = dashboard()
    broken = copy.deepcopy(board)
    del broken["panels"][1]["gridPos"]["h"]
    broken["colour"] = "blue"
    assert len(errors(broken, schema("dashboard"))) >= 2
    target = copy.deepcopy(board["panels"][1]["targets"][0])
    del target["expr"]
    assert errors(target, schema("prometheus")) != []


def test_panels_have_unique_ids_and_fit_the_grid():
    board = dashboard()
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels(board):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        covered = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered


def exported_names() -> set[str]:
    """Every sample name the code exports, as Prometheus scrapes it."""
    from tmd.operator.metrics import REGISTRY as OPERATOR
    from tmd.shim.metrics import REGISTRY as SHIM
    from tmd.worker.metrics import WorkerCollector
    from tmd.worker.stats import StatsSnapshot

    gauges = {"pending": 0, "allocations": 1, "threads": 1, "queue_capacity": 1}
    worker = WorkerCollector(lambda: (StatsSnapshot(start_time_ms=0), gauges), lambda: {"deployment_id": "d"})
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names = set()
    for family in [*OPERATOR.collect(), *SHIM.collect(), *worker.collect()]:
        names |= {family.name + suffix for suffix in suffixes[family.type]}
    return names


def test_every_metric_the_dashboard_queries_is_exported_by_the_code():
    exported = exported_names()
    assert {"tmd_inference_total", "tmd_shim_requests_total", "tmd_operator_allocations"} <= exported
    queried = {name for expr in expressions(dashboard()) for name in METRIC.findall(expr)}
    assert queried - exported == set()
    # and the dashboard covers each component
    assert any(n.startswith("tmd_operator_") for n in queried) and any(n.startswith("tmd_shim_") for n in queried)
    assert {"tmd_inference_total", "tmd_pending_requests", "tmd_queue_capacity"} <= queried


def test_every_query_is_balanced_and_filters_workers_by_the_deployment_variable():
    for expr in expressions(dashboard()):
        depth = 0
        for char in expr:
            depth += {"(": 1, ")": -1}.get(char, 0)
            assert depth >= 0, expr
        assert depth == 0 and expr.count("{") == expr.count("}"), expr
        worker_metrics = [n for n in METRIC.findall(expr) if not n.startswith(("tmd_operator_", "tmd_shim_"))]
        if worker_metrics and not expr.startswith("label_values"):
            assert expr.count('deployment_id=~"$deployment_id"') == len(worker_metrics), expr
