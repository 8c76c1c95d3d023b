"""docs/operations.md lists exactly what the code has: the worker's metrics and the operator's settings."""

from __future__ import annotations

import inspect
import re

from tests.manifests.kustomize import REPO
from tmd.operator.config import OperatorConfig
from tmd.worker.metrics import WorkerCollector, make_registry, render
from tmd.worker.stats import StatsSnapshot

OPERATIONS = (REPO / "docs" / "operations.md").read_text()


def table_names(prefix: str, text: str = OPERATIONS) -> set[str]:
    return set(re.findall(rf"^\| `({prefix}[a-z_A-Z]+)` \|", text, flags=re.M))


WORKER_METRICS, _, OPERATOR_METRICS = OPERATIONS.partition("### Operator metrics")
OPERATOR_METRICS, _, SHIM_METRICS = OPERATOR_METRICS.partition("### Shim metrics")


def test_metrics_table_lists_every_exported_metric():
    gauges = {"pending": 3, "allocations": 2, "threads": 1, "queue_capacity": 1024}
    collector = WorkerCollector(lambda: (StatsSnapshot(start_time_ms=1), gauges), lambda: {"deployment_id": "d"})
    text = render(make_registry(collector)).decode()
    exported = set(re.findall(r"^(tmd_[a-z_]+)\{", text, flags=re.M))
    assert exported and table_names("tmd_", WORKER_METRICS) == exported
    assert set(re.findall(r"\{(\w+)=", text)) == {"deployment_id"}  # the label the doc names


def test_settings_table_lists_every_variable_the_operator_reads():
    read = set(re.findall(r'"(TMD_[A-Z_]+)" in env', inspect.getsource(OperatorConfig.from_env)))
    assert table_names("TMD_") == read


def test_operator_metrics_table_lists_every_operator_metric():
    from tmd.operator import metrics

    metrics.PASSES.labels("ok")  # labelled series appear once used
    metrics.POD_CHANGES.labels("create")
    metrics.DEPLOYMENTS.labels("started")
    metrics.ALLOCATIONS.labels("target")
    exported = {family.name + ("_total" if family.type == "counter" else "")
                for family in metrics.REGISTRY.collect()}
    assert exported and table_names("tmd_operator_", OPERATOR_METRICS) == exported


def test_shim_metrics_table_lists_every_shim_metric():
    from tmd.shim import metrics

    exported = {family.name + ("_total" if family.type == "counter" else "")
                for family in metrics.REGISTRY.collect()}
    assert exported and table_names("tmd_shim_", SHIM_METRICS) == exported
