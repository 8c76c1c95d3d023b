"""The operator end to end: real kopf operator, real localkube, real kubectl, real worker processes."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.operator.e2e import (OperatorProcess, apply, deployment_resource, infer, install_crds,
                                trained_model_resource,
                                free_port, wait_for, worker_pid)
from tmd.api.resources import resource_name
from tmd.tinymodels import super_simple, write_model_dir

pytestmark = [pytest.mark.slow, pytest.mark.localkube(nodes=3, node_cpus="2", node_memory="4Gi")]


@pytest.fixture(scope="module")
def operator(localkube, kube, tmp_path_factory):
    install_crds(kube)
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    metrics = f"127.0.0.1:{free_port()}"
    proc = OperatorProcess(localkube.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log",
                           {"TMD_ADAPTIVE_INTERVAL_SECONDS": "1", "TMD_ADAPTIVE_COOLDOWN_SECONDS": "3"},
                           args=("--liveness", liveness, "--metrics", metrics)).start()
    proc.liveness, proc.metrics = liveness, f"http://{metrics}/metrics"
    yield proc
    assert proc.stop() == 0, proc.output()[-3000:]
    errors = [line for line in proc.output().splitlines() if " ERROR " in line or "Traceback" in line]
    assert not errors, "\n".join(errors[:20])


@pytest.fixture(scope="module")
def model(kube, tmp_path_factory):
    tiny = super_simple("test_model")
    model_dir = write_model_dir(tmp_path_factory.mktemp("models") / "test_model", model=tiny.model,
                                config=tiny.config, vocabulary=tiny.vocabulary)
    apply(kube, trained_model_resource(model_dir))
    return "test_model"


@pytest.fixture
def one_ml_node(kube, localkube):
    """Only the first node is an ML node while the test runs."""
    others = localkube.node_names[1:]
    for node in others:
        kube("label", "node", node, "ml.tmd.dev/ml-node-")
    yield
    for node in others:
        kube("label", "node", node, "ml.tmd.dev/ml-node=true", "--overwrite")


def get(kube, *args):
    return json.loads(kube("get", *args, "-o", "json").stdout)


def worker_pods(kube, deployment_name):
    return get(kube, "pods", "-l", f"ml.tmd.dev/deployment={deployment_name}")["items"]


def test_operator_serves_its_liveness_probe(operator):
    response = wait_for(lambda: httpx.get(operator.liveness, timeout=5), what="liveness endpoint")
    assert response.status_code == 200


def test_deployment_becomes_ready_with_pods_placed_and_serving(operator, kube, model):
    apply(kube, deployment_resource(model, number_of_allocations=3))
    name = resource_name(model)
    wait_ready(kube, name)
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
    exported = httpx.get(operator.metrics, timeout=5).text
    assert 'tmd_operator_deployments{assignment_state="started"} 1.0' in exported
    assert 'tmd_operator_allocations{kind="placed"} 3.0' in exported
    assert 'tmd_operator_reconcile_passes_total{result="ok"}' in exported
    delete_and_wait_gone(kube, name)


def wait_ready(kube, name, timeout=150):
    kube("wait", "--for=condition=Ready", f"--timeout={timeout}s", f"tmd/{name}", timeout=timeout + 10)


def delete_and_wait_gone(kube, name):
    kube("delete", "tmd", name, "--wait=true", "--timeout=60s")
    wait_for(lambda: not worker_pods(kube, name), timeout=60, what=f"worker pods of {name} gone")


def status_of(kube, name):
    return get(kube, "tmd", name).get("status") or {}


def test_a_request_larger_than_the_cluster_is_placed_partially_with_reasons(operator, kube, model):
    apply(kube, deployment_resource(model, "too_big", number_of_allocations=8))
    name = resource_name("too_big")
    status = wait_for(lambda: (s := status_of(kube, name)).get("allocation_status", {}).get("allocation_count") == 6
                      and s, timeout=120, what="6 of 8 allocations started")
    assert status["assignment_state"] == "started"
    assert status["allocation_status"]["state"] == "started"
    assert "This node has insufficient allocated processors" in status["reason"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "False" and conditions["Degraded"]["status"] == "True"
    pods = worker_pods(kube, name)
    assert len(pods) == 3 and all(p["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "2" for p in pods)
    delete_and_wait_gone(kube, name)


def test_changing_allocations_reaches_the_running_worker_without_failed_requests(operator, kube, model, one_ml_node):
    """One ML node only, so the change happens in place on one worker."""
    import threading

    apply(kube, deployment_resource(model, "live", number_of_allocations=1))
    name = resource_name("live")
    wait_ready(kube, name)
    [pod] = worker_pods(kube, name)
    results: list[int] = []
    stop = threading.Event()

    def load():
        with httpx.Client(timeout=30) as client:
            while not stop.is_set() and len(results) < 5000:
                r = client.post(f"http://{pod['status']['podIP']}:8080/infer", json={"docs": [{"input": "words"}]})
                results.append(r.status_code)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for target in (2, 1):
            kube("patch", "tmd", name, "--type", "merge", "-p", json.dumps({"spec": {"number_of_allocations": target}}))
            wait_for(lambda: (s := status_of(kube, name)).get("observedGeneration") == get(kube, "tmd", name)[
                "metadata"]["generation"] and s["allocation_status"]["allocation_count"] == target
                and s["allocation_status"]["state"] == "fully_allocated", timeout=60,
                what=f"{target} allocations started")
            live = wait_for(lambda: worker_pods(kube, name), what="worker pod")
            assert [p["metadata"]["uid"] for p in live] == [pod["metadata"]["uid"]]  # the same pod, changed
            assert live[0]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == str(target)
            stats = httpx.get(f"http://{pod['status']['podIP']}:8080/stats").json()
            assert stats["node"]["number_of_allocations"] == target
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert results and set(results) == {200}, {code: results.count(code) for code in set(results)}
    delete_and_wait_gone(kube, name)


def test_adaptive_allocations_follow_the_load(operator, kube, one_ml_node, tmp_path_factory):
    """A 50 ms model (no cache: hits cost nothing and are no load) on one 2-CPU ML node, adaptive
    between 1 and 2 allocations. Requests arriving at a fixed rate worth 1.5 busy allocations:
    the scaler goes to 2 and the worker runs 2 lanes; once the load ends it comes back to 1 (after
    the cooldown, 3 s here; samples every second). Every request is answered: 200, or 408 for
    those the backlog from before the scale-up kept past their 10 s timeout on a busy machine."""
    from tests.worker.conftest import write_slow_model

    model_dir = write_slow_model(tmp_path_factory.mktemp("adaptive") / "slow_model", seconds=0.05)
    apply(kube, trained_model_resource(model_dir))
    name = resource_name("adaptive")
    try:
        # Batching off: this model costs the same for a batch of any size, so batches would let one
        # allocation keep up with any rate and the scaler would rightly never need a second.
        apply(kube, deployment_resource("slow_model", "adaptive", cache_size="0b", adaptive_allocations={
            "enabled": True, "min_number_of_allocations": 1, "max_number_of_allocations": 2},
            tmd_batching={"max_batch_size": 1}))
        wait_ready(kube, name)
        [pod] = worker_pods(kube, name)
        url = f"http://{pod['status']['podIP']}:8080"
        try:
            _load_scales_up_and_back(kube, operator, name, url)
        except AssertionError as err:  # say what the scaler and the worker saw
            raise AssertionError(f"{err}\nworker stats: {httpx.get(url + '/stats').json()}\noperator log:\n"
                                 + "\n".join(operator.output().splitlines()[-40:])) from None
    finally:
        kube("delete", "tmd", name, "--ignore-not-found")
        wait_for(lambda: not worker_pods(kube, name), timeout=60, what=f"worker pods of {name} gone")


def _load_scales_up_and_back(kube, operator, name: str, url: str) -> None:
    """1.5 allocations' worth of documents for 20 s: 2 allocations while it lasts, 1 afterwards."""
    import asyncio
    import threading

    from tests.faults.load import open_loop

    # The model's speed depends on the machine (its delay is calibrated computation): offer 1.5
    # busy allocations by the worker's own measure, whatever it is here.
    for i in range(5):
        httpx.post(url + "/infer", json={"docs": [{"input": f"warm {i}"}]}, timeout=30).raise_for_status()
    seconds = httpx.get(url + "/stats").json()["node"]["average_inference_time_ms"] / 1000
    rate = min(1.5 / seconds, 100.0)
    records = []
    load = threading.Thread(target=lambda: records.append(asyncio.run(open_loop(
        url + "/infer", {"docs": [{"input": "words"}]}, rate=rate, duration=20))))
    load.start()
    try:
        wait_for(lambda: get(kube, "tmd", name)["spec"]["number_of_allocations"] == 2, timeout=25,
                 what="scaled up to 2 allocations")
        wait_for(lambda: httpx.get(url + "/allocations").json()["number_of_allocations"] == 2, timeout=20,
                 what="the worker runs 2 lanes")
    finally:
        load.join()
    [record] = records
    assert record.statuses()[200] and record.problems({200, 408}) == [], record.summary()
    print(f"adaptive allocations under {rate:.0f} requests/s ({seconds * 1000:.0f} ms each):", record.summary())
    wait_for(lambda: get(kube, "tmd", name)["spec"]["number_of_allocations"] == 1, timeout=60,
             what="scaled back to 1 allocation")
    wait_for(lambda: httpx.get(url + "/allocations").json()["number_of_allocations"] == 1, timeout=60,
             what="the worker runs 1 lane")
    log = operator.output()
    assert "adaptive allocations scaler: scaled [adaptive] to [2] allocations" in log
    assert "adaptive allocations scaler: scaled [adaptive] to [1] allocations" in log


def test_without_in_place_resize_a_surge_replacement_changes_allocations(operator, kube, model, localkube, one_ml_node,
                                                                          tmp_path):
    operator.stop()
    surging = OperatorProcess(localkube.kubeconfig, tmp_path / "surge.log", {"TMD_INPLACE_RESIZE": "false"}).start()
    try:
        apply(kube, deployment_resource(model, "surged", number_of_allocations=1))
        name = resource_name("surged")
        wait_ready(kube, name)
        [before] = worker_pods(kube, name)
        kube("patch", "tmd", name, "--type", "merge", "-p", json.dumps({"spec": {"number_of_allocations": 2}}))
        [after] = wait_for(lambda: (pods := [p for p in worker_pods(kube, name)
                                             if p["metadata"]["uid"] != before["metadata"]["uid"]])
                           and len(worker_pods(kube, name)) == 1 and pods, timeout=120, what="replacement only")
        assert after["metadata"]["annotations"]["ml.tmd.dev/replaces"] == before["metadata"]["name"]
        assert after["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "2"
        wait_ready(kube, name)
        route = status_of(kube, name)["routing_table"][after["spec"]["nodeName"]]
        assert (route["current_allocations"], route["target_allocations"]) == (2, 2)
        delete_and_wait_gone(kube, name)
    finally:
        assert surging.stop() == 0
        assert "Traceback" not in surging.output()
        operator.start()


def test_a_killed_worker_fails_its_route_then_is_restarted(operator, kube, model, k8s_client):
    import os
    import signal
    import threading

    from kubernetes import client, watch

    apply(kube, deployment_resource(model, "killed", number_of_allocations=1))
    name = resource_name("killed")
    wait_ready(kube, name)
    [pod] = worker_pods(kube, name)
    seen: list[str] = []
    stop = threading.Event()

    def observe():
        api = client.CustomObjectsApi(k8s_client)
        w = watch.Watch()
        for event in w.stream(api.list_namespaced_custom_object, "ml.tmd.dev", "v1alpha1", "default",
                              "trainedmodeldeployments", field_selector=f"metadata.name={name}", timeout_seconds=60):
            for route in ((event["object"].get("status") or {}).get("routing_table") or {}).values():
                seen.append(route["routing_state"])
            if stop.is_set():
                w.stop()

    observer = threading.Thread(target=observe, daemon=True)
    observer.start()
    pid = wait_for(lambda: worker_pid(pod["status"]["podIP"], "killed"), what="worker pid")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: "failed" in seen, timeout=60, what="route failed")
    wait_for(lambda: seen and seen[-1] == "started" and status_of(kube, name)["routing_table"][
        pod["spec"]["nodeName"]]["routing_state"] == "started", timeout=90, what="route started again")
    stop.set()
    [again] = worker_pods(kube, name)
    assert again["metadata"]["uid"] == pod["metadata"]["uid"]
    assert again["status"]["containerStatuses"][0]["restartCount"] >= 1
    assert infer(again, "words").status_code == 200
    delete_and_wait_gone(kube, name)


def test_low_priority_yields_to_normal_priority(operator, kube, model, tmp_path_factory):
    big = super_simple("big_model")
    # 3.5 GiB per node (+ the worker runtime): with the low priority worker no 4 GiB node holds both
    big.config["metadata"] = {"per_deployment_memory_bytes": int(3.5 * (1 << 30))}
    model_dir = write_model_dir(tmp_path_factory.mktemp("models") / "big_model", model=big.model,
                                config=big.config, vocabulary=big.vocabulary)
    resource = trained_model_resource(model_dir)
    resource["spec"]["metadata"] = big.config["metadata"]
    apply(kube, resource)
    apply(kube, deployment_resource(model, "lowly", priority="low"))
    low = resource_name("lowly")
    wait_ready(kube, low)
    [low_pod] = worker_pods(kube, low)
    assert low_pod["spec"]["priorityClassName"] == "tmd-low-priority"
    apply(kube, deployment_resource("big_model", number_of_allocations=6))
    high = resource_name("big_model")
    wait_ready(kube, high)
    status = wait_for(lambda: (s := status_of(kube, low)).get("routing_table") == {} and s, timeout=60,
                      what="low priority deployment unassigned")
    assert status["reason"]
    wait_for(lambda: not worker_pods(kube, low), timeout=60, what="low priority pod removed")
    delete_and_wait_gone(kube, high)
    wait_ready(kube, low)  # it comes back once there is room
    delete_and_wait_gone(kube, low)
