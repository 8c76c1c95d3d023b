"""The CRDs and examples applied with kubectl (both installed binaries) to the embedded control
plane, and invalid TrainedModelDeployments refused by the CRD schema with a clear message.

localkube serves only some built-in kinds (no apps/v1, RBAC, networking, Services, PVCs): what
it does not serve is validated offline against the Kubernetes schemas (test_manifest_schemas.py).
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.manifests.kustomize import MANIFESTS, build

NAMESPACE = "tmd-system"
SERVED_BY_LOCALKUBE = {"Namespace", "CustomResourceDefinition", "PriorityClass", "ServiceAccount", "Secret",
                       "ConfigMap"}
NOT_SERVED = {"Deployment", "Service", "PersistentVolumeClaim", "NetworkPolicy", "Role", "RoleBinding",
              "ClusterRole", "ClusterRoleBinding"}


@pytest.fixture(scope="module")
def installed(localkube):
    """The base's resources localkube serves, applied once per module with the venv's kubectl."""
    from tmd.localkube.testing import kubectl_binaries, run_kubectl

    binary = kubectl_binaries()["kubectl-1.37"] if "kubectl-1.37" in kubectl_binaries() else \
        next(iter(kubectl_binaries().values()))
    served = run_kubectl(localkube, "api-resources", "-o", "name", binary=binary).stdout.split()
    docs = build("base")
    kinds = {d["kind"] for d in docs}
    assert kinds - SERVED_BY_LOCALKUBE == NOT_SERVED
    assert "customresourcedefinitions.apiextensions.k8s.io" in served
    applied = [d for d in docs if d["kind"] in SERVED_BY_LOCALKUBE]
    run_kubectl(localkube, "apply", "--validate=strict", "-f", "-", input=yaml.safe_dump_all(applied), binary=binary)
    run_kubectl(localkube, "wait", "--for=condition=established", "--timeout=30s",
                "crd/trainedmodeldeployments.ml.tmd.dev", "crd/trainedmodels.ml.tmd.dev", binary=binary)
    return applied


def test_base_applies_and_is_unchanged_on_reapply(installed, kubectl):
    again = kubectl("apply", "--validate=strict", "-f", "-", input=yaml.safe_dump_all(installed)).stdout
    assert again.count("unchanged") == len(installed), again
    pc = json.loads(kubectl("get", "priorityclass", "tmd-low-priority", "-o", "json").stdout)
    assert (pc["value"], pc["preemptionPolicy"]) == (-100, "Never")
    crds = kubectl("get", "crd", "-o", "name").stdout.split()
    assert {"customresourcedefinition.apiextensions.k8s.io/trainedmodels.ml.tmd.dev",
            "customresourcedefinition.apiextensions.k8s.io/trainedmodeldeployments.ml.tmd.dev"} <= set(crds)


def test_examples_apply_with_defaults_filled_in(installed, kubectl):
    out = kubectl("apply", "--validate=strict", "-k", str(MANIFESTS / "examples")).stdout
    assert len(out.strip().splitlines()) == len(build("examples")), out
    low = json.loads(kubectl("get", "-n", NAMESPACE, "tmd", "sentence-embedder-batch", "-o", "json").stdout)
    assert low["spec"]["queue_capacity"] == 1024  # the CRD's default, as Elasticsearch's
    assert low["spec"]["priority"] == "low"
    table = kubectl("get", "-n", NAMESPACE, "tmd").stdout
    assert "sentence_embedder_batch" in table and "sentence_embedder" in table
    model = json.loads(kubectl("get", "-n", NAMESPACE, "tm", "sentence-embedder", "-o", "json").stdout)
    assert model["spec"]["definition"]["uri"].startswith("https://")


def bad_deployment(**spec):
    return yaml.safe_dump({"apiVersion": "ml.tmd.dev/v1alpha1", "kind": "TrainedModelDeployment",
                           "metadata": {"name": "bad", "namespace": NAMESPACE},
                           "spec": {"model_id": "sentence_embedder", **spec}})


@pytest.mark.parametrize("spec, message", [
    ({"number_of_allocations": "two"}, 'spec.number_of_allocations: Invalid value: "string": '
                                       'spec.number_of_allocations in body must be of type integer: "string"'),
    ({"threads_per_allocation": 1.5}, "spec.threads_per_allocation in body must be of type integer"),
    ({"priority": "high"}, 'spec.priority: Unsupported value: "high": supported values: "normal", "low"'),
    ({"queue_capacity": 0}, "spec.queue_capacity: Invalid value: 0: spec.queue_capacity in body should be "
                            "greater than or equal to 1"),
    ({"threads_per_allocation": 64}, "spec.threads_per_allocation: Invalid value: 64: "
                                     "spec.threads_per_allocation in body should be less than or equal to 32"),
    ({"number_of_allocations": 0}, "spec.number_of_allocations in body should be greater than or equal to 1"),
    ({"threads_per_alocation": 2}, 'strict decoding error: unknown field "spec.threads_per_alocation"'),
], ids=["allocations-string", "threads-float", "priority-enum", "queue-zero", "threads-64", "allocations-zero",
        "unknown-field"])
def test_invalid_deployments_are_refused_by_the_schema(installed, kubectl, spec, message):
    done = kubectl("apply", "--validate=strict", "-f", "-", input=bad_deployment(**spec), check=False)
    assert done.returncode != 0, done.stdout
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert kubectl("get", "-n", NAMESPACE, "tmd", "bad", "--ignore-not-found", "-o", "name").stdout == ""


@pytest.mark.parametrize("spec, message", [
    ({"threads_per_allocation": 3},
     'spec: Invalid value: "object": [threads_per_allocation] must be a power of 2 less than or equal to 32'),
    ({"priority": "low", "number_of_allocations": 2},
     'spec: Invalid value: "object": [number_of_allocations] must be 1 when [priority] is low'),
    ({"priority": "low", "threads_per_allocation": 2},
     'spec: Invalid value: "object": [threads_per_allocation] must be 1 when [priority] is low'),
], ids=["threads-3", "low-priority-2-allocations", "low-priority-2-threads"])
def test_cel_rules_of_the_crd_refuse_invalid_deployments(installed, kubectl, spec, message):
    """The CRD's x-kubernetes-validations (CEL), enforced by the API server as kube-apiserver does."""
    done = kubectl("apply", "--validate=strict", "-f", "-", input=bad_deployment(**spec), check=False)
    assert done.returncode != 0, done.stdout
    assert message in done.stderr
    assert kubectl("get", "-n", NAMESPACE, "tmd", "bad", "--ignore-not-found", "-o", "name").stdout == ""


def test_cel_transition_rules_keep_the_model_immutable(installed, kubectl):
    kubectl("apply", "-f", "-", input=bad_deployment(deployment_id="moving"))
    try:
        changed = bad_deployment(deployment_id="moving").replace("model_id: sentence_embedder",
                                                                 "model_id: another_model")
        done = kubectl("apply", "-f", "-", input=changed, check=False)
        assert done.returncode != 0, done.stdout
        assert 'spec: Invalid value: "object": [model_id] is immutable' in done.stderr
        done = kubectl("apply", "-f", "-", input=bad_deployment(deployment_id="moved"), check=False)
        assert 'spec: Invalid value: "object": [deployment_id] is immutable' in done.stderr
        # a change the rules allow still goes through, with oldSelf present
        kubectl("apply", "-f", "-", input=bad_deployment(deployment_id="moving", number_of_allocations=2))
        stored = json.loads(kubectl("get", "-n", NAMESPACE, "tmd", "bad", "-o", "json").stdout)
        assert (stored["spec"]["model_id"], stored["spec"]["number_of_allocations"]) == ("sentence_embedder", 2)
    finally:
        kubectl("delete", "-n", NAMESPACE, "tmd", "bad", "--ignore-not-found")
