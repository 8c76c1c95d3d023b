"""The shim's Prometheus metrics: requests by Elasticsearch API and status, from the real app."""

from __future__ import annotations

import subprocess
import sys

from prometheus_client import generate_latest

from tests.shim.test_bad_input import M, app, call  # noqa: F401  (the in-process app fixture)
from tmd.shim import metrics
from tmd.shim.openapi import ENDPOINTS


def test_every_served_path_maps_to_its_api():
    assert metrics.api_of("POST", M + "/my_model/_infer") == "ml.infer_trained_model"
    assert metrics.api_of("POST", M + "/my_model/deployment/_infer") == "ml.infer_trained_model_deployment"
    assert metrics.api_of("GET", M + "/_stats") == "ml.get_trained_models_stats"
    assert metrics.api_of("GET", M + "/m/_stats") == "ml.get_trained_models_stats"
    assert metrics.api_of("GET", M + "/m") == "ml.get_trained_models"
    assert metrics.api_of("HEAD", "/") == "ping"
    assert metrics.api_of("GET", "/_nope/x") == "other"
    assert metrics.api_of("DELETE", M + "/m/_infer") == "other"
    for endpoint in ENDPOINTS:  # each template, with its parameters filled, is recognised as itself
        for path in endpoint.paths:
            filled = path.replace("{", "x").replace("}", "")
            assert metrics.api_of(endpoint.method, filled) == endpoint.name, (endpoint.method, filled)


def test_requests_are_counted_by_api_and_status_including_the_infer_fast_path(app):  # noqa: F811
    def count(api: str, status: str) -> float:
        return metrics.REQUESTS.labels(api, status)._value.get()

    before_infer, before_start = count("ml.infer_trained_model", "400"), count("ml.start_trained_model_deployment", "400")
    call(app, "POST", M + "/m/_infer", {"docs": "not a list"})
    call(app, "POST", M + "/m/deployment/_start", {"threads_per_allocation": 3, "nope": 1})
    assert count("ml.infer_trained_model", "400") == before_infer + 1
    assert count("ml.start_trained_model_deployment", "400") == before_start + 1
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'tmd_shim_request_duration_seconds_count{api="ml.infer_trained_model"}' in text


def test_a_bad_metrics_address_is_a_clear_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tmd", "shim", "--metrics", "here", "--store", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot serve metrics at 'here': expected HOST:PORT" in done.stderr
    assert "Traceback" not in done.stderr
