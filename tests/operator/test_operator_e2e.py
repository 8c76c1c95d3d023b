"""The operator end to end: real kopf operator, real localkube, real kubectl, real worker processes."""

from __future__ import annotations

import json

import pytest

from tests.operator.e2e import (REPO, OperatorProcess, apply, deployment_resource, infer, trained_model_resource,
                                wait_for)
from tmd.api.resources import resource_name
from tmd.tinymodels import super_simple, write_model_dir

pytestmark = [pytest.mark.slow, pytest.mark.localkube(nodes=3, node_cpus="2", node_memory="4Gi")]


@pytest.fixture(scope="module")
def kube(localkube):
    from tmd.localkube.testing import kubectl_binaries, run_kubectl

    binary = next(iter(kubectl_binaries().values()))
    return lambda *args, **kw: run_kubectl(localkube, *args, binary=binary, **kw)


@pytest.fixture(scope="module")
def operator(localkube, kube, tmp_path_factory):
    kube("apply", "-f", str(REPO / "crds"))
    kube("wait", "--for=condition=established", "--timeout=30s", "crd/trainedmodeldeployments.ml.tmd.dev")
    proc = OperatorProcess(localkube.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log").start()
    yield proc
    assert proc.stop() == 0, proc.output()[-3000:]


@pytest.fixture(scope="module")
def model(kube, tmp_path_factory):
    tiny = super_simple("test_model")
    model_dir = write_model_dir(tmp_path_factory.mktemp("models") / "test_model", model=tiny.model,
                                config=tiny.config, vocabulary=tiny.vocabulary)
    apply(kube, trained_model_resource(model_dir))
    return "test_model"


def get(kube, *args):
    return json.loads(kube("get", *args, "-o", "json").stdout)


def worker_pods(kube, deployment_name):
    return get(kube, "pods", "-l", f"ml.tmd.dev/deployment={deployment_name}")["items"]


def test_deployment_becomes_ready_with_pods_placed_and_serving(operator, kube, model):
    apply(kube, deployment_resource(model, number_of_allocations=3))
    name = resource_name(model)
    kube("wait", "--for=condition=Ready", "--timeout=120s", f"tmd/{name}")
    dep = get(kube, "tmd", name)
    status = dep["status"]
    assert status["assignment_state"] == "started"
    assert status["allocation_status"] == {"allocation_count": 3, "target_allocation_count": 3,
                                           "state": "fully_allocated"}
    table = status["routing_table"]
    assert sum(r["current_allocations"] for r in table.values()) == 3
    assert all(r["routing_state"] == "started" for r in table.values())
    pods = worker_pods(kube, name)
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(table)
    for pod in pods:
        node = pod["spec"]["nodeName"]
        cpu = pod["spec"]["containers"][0]["resources"]["requests"]["cpu"]
        assert int(cpu) == table[node]["target_allocations"]
        assert pod["status"]["qosClass"] == "Guaranteed"
        response = infer(pod, "these are my words")
        assert response.status_code == 200, response.text
        assert response.json() == {"inference_results": [{"predicted_value": [[1.0, 1.0]]}]}
    printed = kube("get", "tmd").stdout
    assert "started" in printed and "test_model" in printed
