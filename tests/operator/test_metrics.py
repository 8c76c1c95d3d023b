"""The operator's Prometheus metrics, from real reconciliation results."""

from __future__ import annotations

import subprocess
from pathlib import Path
import sys

from prometheus_client import generate_latest

from tests.operator.factories import deployment, model, node
from tests.operator.test_reconcile import run
from tmd.operator import metrics


def test_a_pass_is_summarised_by_state_allocations_and_pod_changes():
    result = run([deployment(allocations=3), deployment("other", model_id="nope")], [model()],
                 [node("node-1"), node("node-2")])
    summary = metrics.summarise(result)
    assert summary["changes"] == {"create": 2}
    assert summary["states"] == {"starting": 2, "started": 0, "stopping": 0, "failed": 0}
    assert summary["allocations"] == {"target": 4, "placed": 0}


def test_observe_exports_the_figures():
    result = run([deployment(allocations=2)], [model()], [node("node-1")])
    before = metrics.POD_CHANGES.labels("create")._value.get()
    metrics.observe(result, 0.02)
    text = generate_latest(metrics.REGISTRY).decode()
    assert metrics.POD_CHANGES.labels("create")._value.get() == before + 1
    assert 'tmd_operator_deployments{assignment_state="starting"} 1.0' in text
    assert 'tmd_operator_allocations{kind="target"} 2.0' in text
    assert "tmd_operator_reconcile_duration_seconds_count" in text


def test_a_bad_metrics_address_is_a_clear_error():
    done = subprocess.run([sys.executable, "-m", "tmd", "operator", "--metrics", "nowhere"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot serve metrics at 'nowhere': expected HOST:PORT" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_kubernetes_credentials_is_a_clear_error(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for role in ("operator", "shim"):
        done = subprocess.run([sys.executable, "-m", "tmd", role, "--store" if role == "shim" else "--verbose",
                               *( [str(tmp_path / "store")] if role == "shim" else [])],
                              capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 2, done.stderr[-2000:]
        assert f"tmd {role}: no Kubernetes API to talk to" in done.stderr
        assert "Traceback" not in done.stderr
