"""The operator's reconciliation as a pure function: resources in, pod changes and statuses out."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.operator.factories import crashlooping, deployment, model, node, running
from tmd.operator.config import OperatorConfig
from tmd.operator.reconcile import ClusterState, pod_key, reconcile

NOW = dt.datetime(2026, 11, 22, 1, 0, tzinfo=dt.timezone.utc)
CONFIG = OperatorConfig(worker_command=("python", "-m", "tmd", "worker"))


def run(deployments, models, nodes, pods=(), allocations=None):
    return reconcile(ClusterState(deployments, models, nodes, list(pods), allocations or {}), CONFIG, NOW)


def creates(result):
    return [c.pod for c in result.pod_changes if c.action == "create"]


def status_of(result, name="test-model"):
    return result.statuses[("default", name)]


def test_new_deployment_gets_one_worker_pod_per_planned_node():
    nodes = [node("node-1", zone="a"), node("node-2", zone="b")]
    result = run([deployment(allocations=3)], [model()], nodes)
    pods = creates(result)
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node-1", "node-2"]
    cpus = sorted(p["spec"]["containers"][0]["resources"]["requests"]["cpu"] for p in pods)
    assert cpus == ["1", "2"]
    for pod in pods:
        resources = pod["spec"]["containers"][0]["resources"]
        assert resources["requests"] == resources["limits"]  # Guaranteed QoS
        assert pod["metadata"]["ownerReferences"][0]["uid"] == "uid-d-test_model"
    status = status_of(result)
    assert status["assignment_state"] == "starting"
    assert {n: r["routing_state"] for n, r in status["routing_table"].items()} == {"node-1": "starting",
                                                                                 "node-2": "starting"}
    assert sum(r["target_allocations"] for r in status["routing_table"].values()) == 3
    assert status["allocation_status"] == {"allocation_count": 0, "target_allocation_count": 3, "state": "starting"}
    assert status["reason"] is None
    ready = {c["type"]: c["status"] for c in status["conditions"]}
    assert ready == {"Ready": "False", "Progressing": "True", "Degraded": "False"}


def test_ready_workers_make_the_deployment_started_and_ready():
    nodes = [node("node-1")]
    first = run([deployment(allocations=2)], [model()], nodes)
    pod = running(creates(first)[0])
    dep = deployment(allocations=2, status=status_of(first))
    result = run([dep], [model()], nodes, [pod], {pod_key(pod): 2})
    status = status_of(result)
    assert status["assignment_state"] == "started"
    assert status["routing_table"]["node-1"] == {"current_allocations": 2, "target_allocations": 2,
                                                 "routing_state": "started", "reason": ""}
    assert status["allocation_status"]["state"] == "fully_allocated"
    assert status["max_assigned_allocations"] == 2
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert result.pod_changes == []


def test_more_allocations_than_the_cluster_holds_are_placed_partially_with_reasons():
    nodes = [node(f"node-{i}", cpu="2", zone=f"z{i}") for i in (1, 2, 3)]
    result = run([deployment(allocations=8)], [model()], nodes)
    placed = sum(int(p["spec"]["containers"][0]["resources"]["requests"]["cpu"]) for p in creates(result))
    assert placed == 6
    status = status_of(result)
    assert "insufficient allocated processors" in status["reason"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Degraded"] == "True"


@pytest.mark.parametrize("spec, reason", [
    ({"threads": 3}, "Validation Failed: 1: [threads_per_allocation] must be a power of 2 less than or equal to 32;"),
    ({"priority": "low", "allocations": 2}, "Validation Failed: 1: [number_of_allocations] must be 1 when [priority] is low;"),
], ids=["threads-3", "low-priority-2-allocations"])
def test_a_stored_spec_breaking_the_crd_rules_is_refused_with_the_elasticsearch_message(spec, reason):
    """An API server without CEL (Kubernetes < 1.25, or rules disabled) stores what the CRD's rules
    forbid; the operator then refuses it in status, as Elasticsearch would, and creates nothing."""
    result = run([deployment(**spec)], [model()], [node("node-1", cpu="8")])
    status = status_of(result)
    assert status["reason"] == reason
    assert result.pod_changes == []
    assert {c["type"]: c["status"] for c in status["conditions"]}["Degraded"] == "True"


def test_unknown_model_and_missing_definition_are_explained():
    result = run([deployment(model_id="nope", deployment_id="nope")], [], [node("node-1")])
    assert status_of(result, "nope")["reason"] == "Could not find trained model [nope]"
    assert creates(result) == []
    result = run([deployment()], [model(defined=False)], [node("node-1")])
    assert status_of(result)["reason"] == "Could not find trained model definition [test_model]"


def test_a_second_deployment_with_the_same_id_is_refused():
    first = deployment(created="2026-11-22T00:00:00Z")
    second = {**deployment(created="2026-11-22T00:00:05Z"), "metadata": {
        **deployment()["metadata"], "name": "copy", "uid": "uid-copy", "creationTimestamp": "2026-11-22T00:00:05Z"}}
    result = run([second, first], [model()], [node("node-1")])
    assert status_of(result, "copy")["reason"] == ("Could not start model deployment because an existing "
                                                   "deployment with the same id [test_model] exist")
    assert all(p["metadata"]["labels"]["ml.tmd.dev/deployment"] == "test-model" for p in creates(result))


def test_lowering_allocations_changes_the_running_worker_in_place():
    nodes = [node("node-1", cpu="4")]
    first = run([deployment(allocations=3)], [model()], nodes)
    pod = running(creates(first)[0])
    started = status_of(run([deployment(allocations=3, status=status_of(first))], [model()], nodes, [pod],
                            {pod_key(pod): 3}))
    result = run([deployment(allocations=1, status=started, generation=2)], [model()], nodes, [pod],
                 {pod_key(pod): 3})
    assert [(c.action, c.allocations) for c in result.pod_changes] == [("set_allocations", 1)]
    route = status_of(result)["routing_table"]["node-1"]
    assert (route["current_allocations"], route["target_allocations"]) == (3, 1)


def test_a_crash_looping_worker_is_a_failed_route_with_its_reason():
    nodes = [node("node-1")]
    first = run([deployment()], [model()], nodes)
    pod = crashlooping(creates(first)[0])
    result = run([deployment(status=status_of(first))], [model()], nodes, [pod])
    route = status_of(result)["routing_table"]["node-1"]
    assert route["routing_state"] == "failed"
    assert "model.pt: corrupt" in route["reason"]
    assert {c["type"]: c["status"] for c in status_of(result)["conditions"]}["Degraded"] == "True"
    assert result.pod_changes == []  # the kubelet restarts it; the operator does not fight it


def test_a_deleted_node_moves_allocations_and_its_pod_is_removed():
    nodes = [node("node-1"), node("node-2")]
    first = run([deployment(allocations=1)], [model()], nodes)
    pod = running(creates(first)[0])
    on = pod["spec"]["nodeName"]
    other = "node-2" if on == "node-1" else "node-1"
    started = status_of(run([deployment(status=status_of(first))], [model()], nodes, [pod], {pod_key(pod): 1}))
    result = run([deployment(status=started)], [model()], [node(other)], [pod])
    actions = sorted((c.action, c.pod["spec"]["nodeName"]) for c in result.pod_changes)
    assert actions == [("create", other), ("force_delete", on)]
    assert list(status_of(result)["routing_table"]) == [other]


def test_low_priority_worker_asks_for_little_cpu_and_a_low_priority_class():
    result = run([deployment(priority="low")], [model()], [node("node-1")])
    pod = creates(result)[0]
    assert pod["spec"]["priorityClassName"] == CONFIG.low_priority_class
    assert pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "100m"
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["TMD_LOW_PRIORITY"] == "true"


def test_reconcile_is_idempotent_once_converged():
    nodes = [node("node-1"), node("node-2")]
    first = run([deployment(allocations=2)], [model()], nodes)
    pods = [running(p, ip=f"127.0.0.{i}") for i, p in enumerate(creates(first), 2)]
    allocations = {pod_key(p): int(p["metadata"]["annotations"]["ml.tmd.dev/allocations"]) for p in pods}
    second = run([deployment(allocations=2, status=status_of(first))], [model()], nodes, pods, allocations)
    third = run([deployment(allocations=2, status=status_of(second))], [model()], nodes, pods, allocations)
    assert second.pod_changes == third.pod_changes == []
    assert status_of(second) == status_of(third)


def test_model_status_follows_its_definition():
    from tmd.operator.reconcile import model_status

    assert model_status(model(size=1630))["fully_defined"] is True
    assert model_status(model(size=1630))["model_size_bytes"] == 1630
    assert model_status(model(defined=False)) == {"fully_defined": False, "model_size_bytes": 0,
                                                  "observedGeneration": None}
    result = run([], [model()], [node("node-1")])
    assert result.model_statuses[("default", "test-model")]["fully_defined"] is True


def test_worker_pods_request_the_estimate_plus_the_python_runtime():
    from tmd.api.memory import required_native_memory_bytes
    from tmd.operator.reconcile import WORKER_RUNTIME_OVERHEAD_BYTES

    pod = creates(run([deployment()], [model(size=1630)], [node("node-1")]))[0]
    expected = required_native_memory_bytes("test_model", 1630, cache_size_bytes=1630) + WORKER_RUNTIME_OVERHEAD_BYTES
    memory = pod["spec"]["containers"][0]["resources"]["requests"]["memory"]
    assert memory == f"{-(-expected // (1 << 20))}Mi"


def test_nodes_without_memory_for_the_worker_get_nothing():
    # 300Mi of allocatable memory cannot hold 240 MB + the worker runtime
    result = run([deployment()], [model()], [node("node-1", memory="300Mi")])
    assert creates(result) == []
    assert "insufficient available memory" in status_of(result)["reason"]


def test_without_in_place_resize_allocation_changes_surge_a_replacement():
    nodes = [node("node-1", cpu="4")]

    def step(pods, allocations, status):
        return reconcile(ClusterState([deployment(allocations=2, status=status, generation=2)], [model()], nodes,
                                      pods, allocations, inplace_resize=False), CONFIG, NOW)

    first = run([deployment(allocations=1)], [model()], nodes)
    old = running(creates(first)[0], ip="127.0.0.2")
    started = status_of(run([deployment(allocations=1, status=status_of(first))], [model()], nodes, [old],
                            {pod_key(old): 1}))

    surge = step([old], {pod_key(old): 1}, started)
    [change] = surge.pod_changes
    assert change.action == "replace"
    new = change.pod
    assert new["metadata"]["name"] != old["metadata"]["name"]
    assert new["metadata"]["annotations"]["ml.tmd.dev/replaces"] == old["metadata"]["name"]
    assert new["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "2"
    route = status_of(surge)["routing_table"]["node-1"]
    assert (route["routing_state"], route["current_allocations"], route["target_allocations"]) == ("started", 1, 2)

    new_starting = running(new, ready=False, ip="127.0.0.3")
    new_starting["metadata"]["creationTimestamp"] = "2026-11-22T00:00:09Z"
    assert step([old, new_starting], {pod_key(old): 1}, status_of(surge)).pod_changes == []  # old serves meanwhile

    new_ready = running(new, ip="127.0.0.3")
    new_ready["metadata"]["creationTimestamp"] = "2026-11-22T00:00:09Z"
    swap = step([old, new_ready], {pod_key(old): 1, pod_key(new_ready): 2}, status_of(surge))
    assert [(c.action, c.pod["metadata"]["name"]) for c in swap.pod_changes] == [("delete", old["metadata"]["name"])]

    done = step([new_ready], {pod_key(new_ready): 2}, status_of(swap))
    assert done.pod_changes == []
    route = status_of(done)["routing_table"]["node-1"]
    assert (route["routing_state"], route["current_allocations"], route["target_allocations"]) == ("started", 2, 2)


def test_tmd_batching_reaches_the_worker_environment_only_when_given():
    def env(result):
        return {e["name"]: e.get("value") for e in creates(result)[0]["spec"]["containers"][0]["env"]}

    given = env(run([deployment(tmd_batching={"max_batch_size": 4, "max_batch_delay": "5ms"})], [model()], [node("node-1")]))
    assert given["TMD_MAX_BATCH_SIZE"] == "4" and given["TMD_MAX_BATCH_DELAY"] == "5ms"
    default = env(run([deployment()], [model()], [node("node-1")]))
    assert "TMD_MAX_BATCH_SIZE" not in default and "TMD_MAX_BATCH_DELAY" not in default  # the worker's defaults
