"""Control-plane faults (issue #7): the operator killed (-9) in the middle of a reconcile, the shim
killed during an upload and during a start, a node deleted, and the whole `tmd up` stopped and
restarted on its data directory, each while clients send inference requests.

After each fault: every request got an answer (a result, or 408/409/429/503 with an
Elasticsearch error body), except while the process the clients talk to is down, when the
connection must fail at once instead of hanging; the state converges; no model, deployment or
acknowledged definition part is lost. Each recovery time goes to the `record_recovery` summary.

One stack for the module (localkube with 3 nodes x 2 CPUs, the real kopf operator, the shim as
a subprocess, real worker processes), except `tmd up`, which runs its own. The node deletion
cannot be undone, so it runs last; `tmd up` runs first, before the stack exists.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from kubernetes import client as k8s

from tests.faults.control import ALLOWED, BackgroundLoad, contract_problems, processes_of, stopwatch, summary
from tests.operator.e2e import OperatorProcess, free_port, install_crds, wait_for
from tests.shim.support import ShimProcess, ordered_parts
from tests.test_up import Up
from tmd.api.resources import LABEL_DEPLOYMENT, resource_name
from tmd.operator.pods import ANNOTATION_ALLOCATIONS
from tmd.shim.service import ROUTE_CACHE_SECONDS
from tmd.tinymodels import super_simple
from tmd.tinymodels.builders import script_bytes

pytestmark = [pytest.mark.slow, pytest.mark.localkube(nodes=3, node_cpus="2", node_memory="4Gi")]

WORKER_PORT = free_port()
VOCAB = ["[PAD]", "[UNK]", "these", "are", "my", "words"]
MODEL = "fault_model"
SERVED = "served"  # the deployment under client load throughout
DOC = {"docs": [{"input": "these are my words"}]}
RESULT = {"inference_results": [{"predicted_value": [[1.0, 1.0]]}]}
M = "/_ml/trained_models"


# ---------------------------------------------------------------------------------------------
# d) the whole `tmd up` (first: it runs its own control plane, before the module's stack exists)

def test_tmd_up_stopped_and_killed_then_restarted_on_its_data_directory(tmp_path, record_recovery):
    """SIGTERM, then SIGKILL of the whole process group (`tmd up`, its operator and shim; worker
    pods run in sessions of their own and are adopted by the next run), each followed by a
    restart on the same --data-dir: the demo model and its deployment come back and infer, and
    a definition part acknowledged just before the SIGKILL is still there. In between, kill -9
    of the shim alone, which `tmd up` restarts by itself."""
    data_dir = tmp_path / ".tmd"
    es_port = free_port()
    es_url = f"http://127.0.0.1:{es_port}"
    infer_url = f"{es_url}{M}/demo_ner/_infer"
    doc = {"docs": [{"input": "Maria visited Paris"}]}
    up = Up(data_dir, es_port)
    try:
        up.wait_up()
        before = _demo_state(es_url)
        assert before["deployment"]["number_of_allocations"] == 2, before

        def stop_and_restart(stop: Callable[[], None]) -> tuple[float, float]:
            nonlocal up
            stopped = time.monotonic()
            stop()
            restarted = time.monotonic()
            up = Up(data_dir, es_port)
            return stopped, restarted

        # SIGTERM: a clean stop (the shim drains first, the workers stop last), then a restart.
        def sigterm() -> None:
            up.proc.send_signal(signal.SIGTERM)
            assert up.proc.wait(timeout=90) == 0, up.output()[-3000:]
            assert processes_of(data_dir) == {}

        record, stopped, restarted, back = _infer_through(infer_url, doc, lambda: stop_and_restart(sigterm),
                                                          lambda: up.proc.poll() is None)
        record_recovery("tmd up SIGTERM, restart -> first _infer", back - restarted,
                        down_s=round(restarted - stopped, 2), **summary(record))
        assert "importing demo model" not in up.wait_up()
        assert _demo_state(es_url) == before

        # kill -9 of the shim alone: `tmd up` supervises its children and starts another one.
        def kill_shim() -> tuple[float, float]:
            [shim_pid] = [pid for pid, cmd in processes_of(data_dir).items() if "tmd shim" in cmd]
            killed = time.monotonic()
            os.kill(shim_pid, signal.SIGKILL)
            wait_for(lambda: f"!! shim exited with {-signal.SIGKILL}; restarting" in up.output(), timeout=30,
                     interval=0.05, what="tmd up to notice")
            return killed, time.monotonic()  # reaped: whatever answers from now on is the new shim

        record, killed, _, back = _infer_through(infer_url, doc, kill_shim, lambda: up.proc.poll() is None)
        record_recovery("shim kill -9 under tmd up's supervision -> first _infer", back - killed, **summary(record))
        assert _demo_state(es_url) == before

        # A definition part acknowledged just before the SIGKILL must survive it.
        tiny = super_simple("up_model", vocabulary=VOCAB)
        definition = script_bytes(tiny.model)
        parts = ordered_parts(definition, 2)
        with httpx.Client(base_url=es_url, timeout=60) as es:
            _check(es.put(f"{M}/up_model", json=_config(tiny)))
            _check(es.put(f"{M}/up_model/vocabulary", json={"vocabulary": VOCAB}))
            _check(es.put(f"{M}/up_model/definition/0", json=_part(parts[0][1], definition, 2)))

        # SIGKILL of the whole process group: nothing gets to clean up.
        workers = _workers(data_dir)

        def sigkill() -> None:
            os.killpg(up.proc.pid, signal.SIGKILL)
            up.proc.wait(timeout=30)
            # Worker pods run on (their own sessions), as containers outlive a crashed kubelet.
            assert _workers(data_dir) == workers

        record, killed, restarted, back = _infer_through(infer_url, doc, lambda: stop_and_restart(sigkill),
                                                         lambda: up.proc.poll() is None)
        record_recovery("tmd up SIGKILL (process group), restart -> first _infer", back - restarted,
                        down_s=round(restarted - killed, 2), **summary(record))
        assert "importing demo model" not in up.wait_up()
        assert _demo_state(es_url) == before
        # The next run adopted the surviving workers instead of starting a second set.
        assert _workers(data_dir) == workers
        with httpx.Client(base_url=es_url, timeout=60) as es:
            got = es.get(f"{M}/up_model", params={"include": "definition_status"}).json()
            assert got["trained_model_configs"][0]["fully_defined"] is False
            _check(es.put(f"{M}/up_model/definition/1", json=_part(parts[1][1], definition, 2)))
            got = es.get(f"{M}/up_model", params={"include": "definition_status"}).json()
            assert got["trained_model_configs"][0]["fully_defined"] is True
            assert got["trained_model_configs"][0]["model_size_bytes"] == len(definition)
    finally:
        if up.proc.poll() is None:
            assert up.interrupt() == 0, up.output()[-3000:]
        left = processes_of(data_dir)
        for pid in left:  # only after a failure: never leave our processes behind
            os.kill(pid, signal.SIGKILL)
    assert left == {}


def _infer_through(url: str, body: Any, fault: Callable[[], tuple[float, float]],
                   alive: Callable[[], bool]) -> tuple[Any, float, float, float]:
    """Requests before, during and after `fault()`, which returns when it began and from when an
    answer can only come from the recovered service. Every request is answered or, during the
    outage, fails at once; every result is right. Returns the record, those two times and the
    time the first request sent after the second was answered."""
    with BackgroundLoad(url, body, rate=20) as load:
        load.flowing()
        began, since = fault()
        wait_for(lambda: load.first_ok_after(since) is not None or not alive(), timeout=240, interval=0.1,
                 what="the first answered _infer after the fault")
        first = load.first_ok_after(since)
        assert first is not None, "the service died instead of recovering"
        time.sleep(1.0)  # answers after recovery are part of the record too
    record = load.stop()
    assert contract_problems(record, [(began, since + first)]) == []
    assert _wrong_results(record) == []
    return record, began, since, since + first


def _workers(data_dir: Path) -> dict[int, str]:
    workers = {pid: cmd for pid, cmd in processes_of(data_dir).items() if "tmd worker" in cmd}
    assert len(workers) == 2, workers  # the demo deployment: 2 allocations, one per node
    return workers


def _demo_state(es_url: str) -> dict[str, Any]:
    """What must survive a restart: the demo model's configuration and its deployment's parameters."""
    with httpx.Client(base_url=es_url, timeout=60) as es:
        config = es.get(f"{M}/demo_ner", params={"include": "definition_status"}).json()["trained_model_configs"][0]
        stats = es.get(f"{M}/demo_ner/_stats").json()["trained_model_stats"]
    [deployment] = [s["deployment_stats"] for s in stats if "deployment_stats" in s]
    return {"model": {k: config[k] for k in ("model_id", "inference_config", "input", "fully_defined",
                                             "model_size_bytes")},
            "deployment": {k: deployment[k] for k in ("deployment_id", "number_of_allocations",
                                                      "threads_per_allocation", "queue_capacity")}}


def _wrong_results(record: Any) -> list[Any]:
    """200 answers whose entities are not the demo model's (a person, then a place)."""
    return [a.body for a in record.answers if a.status == 200
            and [[e["class_name"] for e in r["entities"]] for r in a.body["inference_results"]] != [["PER", "LOC"]]]


# ---------------------------------------------------------------------------------------------
# The module's stack

@dataclass
class Stack:
    kube: Callable[..., Any]
    core: k8s.CoreV1Api
    custom: k8s.CustomObjectsApi
    operator: OperatorProcess
    shim: ShimProcess
    es: httpx.Client
    store: Path

    def infer_url(self, deployment_id: str) -> str:
        return f"{self.shim.url}{M}/{deployment_id}/_infer"

    def pods(self, deployment_id: str) -> list[dict[str, Any]]:
        selector = f"{LABEL_DEPLOYMENT}={resource_name(deployment_id)}"
        items = self.core.list_namespaced_pod("default", label_selector=selector).items
        return [self.core.api_client.sanitize_for_serialization(p) for p in items]

    def deployments(self) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object("ml.tmd.dev", "v1alpha1", "default",
                                                         "trainedmodeldeployments")["items"]

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object("ml.tmd.dev", "v1alpha1", "default",
                                                        "trainedmodeldeployments", resource_name(deployment_id))


@pytest.fixture(scope="module")
def stack(localkube, kube, k8s_client, tmp_path_factory):
    install_crds(kube)
    work = tmp_path_factory.mktemp("control-faults")
    operator = OperatorProcess(localkube.kubeconfig, work / "operator.log",
                               {"TMD_WORKER_PORT": str(WORKER_PORT)}).start()
    shim = ShimProcess(localkube.kubeconfig, work / "store", work / "shim.log", "--no-auth",
                       "--worker-port", str(WORKER_PORT)).start()
    es = httpx.Client(base_url=shim.url, timeout=120)
    stack = Stack(kube, k8s.CoreV1Api(k8s_client), k8s.CustomObjectsApi(k8s_client), operator, shim, es,
                  work / "store")
    try:
        tiny = super_simple(MODEL, vocabulary=VOCAB)
        definition = script_bytes(tiny.model)
        _check(es.put(f"{M}/{MODEL}", json=_config(tiny)))
        for part, chunk in ordered_parts(definition, 3):
            _check(es.put(f"{M}/{MODEL}/definition/{part}", json=_part(chunk, definition, 3)))
        _check(es.put(f"{M}/{MODEL}/vocabulary", json={"vocabulary": VOCAB}))
        _check(es.post(f"{M}/{MODEL}/deployment/_start", params={
            "deployment_id": SERVED, "number_of_allocations": "2", "wait_for": "fully_allocated", "timeout": "120s"}))
        yield stack
    finally:
        es.close()
        if shim.proc and shim.proc.poll() is None:
            assert shim.stop() == 0, shim.output()[-3000:]
        if operator.proc and operator.proc.poll() is None:
            assert operator.stop() == 0, operator.output()[-3000:]
        tracebacks = [line for line in operator.output().splitlines() if "Traceback" in line]
        assert not tracebacks, operator.output()[-5000:]


def _config(tiny: Any) -> dict[str, Any]:
    return {k: v for k, v in tiny.config.items() if k != "model_id"}


def _part(chunk: bytes, definition: bytes, total: int) -> dict[str, Any]:
    return {"definition": base64.b64encode(chunk).decode(), "total_definition_length": len(definition),
            "total_parts": total}


def _check(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, f"{response.request.method} {response.request.url}: {response.text}"
    return response


def converged(stack: Stack, deployment_id: str, allocations: int,
              seen: set[str] | None = None) -> dict[str, Any] | bool:
    """The status the operator must reach: the spec observed, every requested allocation started,
    and exactly one live worker pod per routed node with the CPU its allocations need. `seen`
    collects the uid of every pod met on the way."""
    if seen is not None:
        seen.update(p["metadata"]["uid"] for p in stack.pods(deployment_id))
    deployment = stack.deployment(deployment_id)
    status = deployment.get("status") or {}
    if status.get("observedGeneration") != deployment["metadata"]["generation"]:
        return False
    if status.get("assignment_state") != "started" or status.get("allocation_status") != {
            "allocation_count": allocations, "target_allocation_count": allocations, "state": "fully_allocated"}:
        return False
    table = status.get("routing_table") or {}
    if any(r["routing_state"] != "started" or r["current_allocations"] != r["target_allocations"]
           for r in table.values()):
        return False
    pods = stack.pods(deployment_id)
    if any(p["metadata"].get("deletionTimestamp") for p in pods):
        return False
    nodes = [p["spec"]["nodeName"] for p in pods]
    if sorted(nodes) != sorted(table):  # also: never two pods of one deployment on a node
        return False
    threads = deployment["spec"].get("threads_per_allocation", 1)
    for pod in pods:
        cpu = pod["spec"]["containers"][0]["resources"]["requests"]["cpu"]
        if int(cpu) != table[pod["spec"]["nodeName"]]["target_allocations"] * threads:
            return False
    return status


def _pod_signature(stack: Stack, deployment_id: str) -> list[tuple[str, str, str]]:
    return sorted((p["metadata"]["name"], (p["metadata"].get("annotations") or {}).get(ANNOTATION_ALLOCATIONS, ""),
                   p["spec"]["containers"][0]["resources"]["requests"]["cpu"]) for p in stack.pods(deployment_id))


class Call:
    """A blocking client call in a thread, so the test can inject a fault while it waits."""

    def __init__(self, fn: Callable[[], httpx.Response]) -> None:
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.finished = 0.0
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], httpx.Response]) -> None:
        try:
            self.response = fn()
        except httpx.HTTPError as err:
            self.error = err
        self.finished = time.monotonic()

    def join(self, timeout: float = 150) -> "Call":
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the client call did not finish"
        return self


def _answered_like_elasticsearch(call: Call) -> httpx.Response:
    """A control call that lived through a fault got a result or an allowed Elasticsearch error."""
    assert call.error is None, f"no answer: {call.error!r}"
    response = call.response
    assert response is not None
    if response.status_code != 200:
        assert response.status_code in ALLOWED, response.text
        body = response.json()
        assert body["status"] == response.status_code and body["error"]["reason"], body
    return response


def _kill_operator(stack: Stack) -> float:
    killed = time.monotonic()
    stack.operator.stop(signal.SIGKILL)
    return killed


# ---------------------------------------------------------------------------------------------
# a) the operator

def test_operator_killed_mid_reconcile_while_the_data_plane_serves(stack, record_recovery):
    """kill -9 as soon as the operator's first pod change of a new deployment (then of an
    allocation change, and its successor too) shows in the API, before it wrote the status: the
    requests to the running deployment never notice (the data plane does not need the operator),
    the client's start and update calls get their answers, and the restarted operator converges
    without duplicate pods."""
    fresh = "fresh"
    served_pods = {p["metadata"]["uid"]: p["spec"]["nodeName"] for p in stack.pods(SERVED)}
    with BackgroundLoad(stack.infer_url(SERVED), DOC, rate=20) as load:
        load.flowing()
        # A start waiting for its deployment, the operator killed while creating its pods.
        start = Call(lambda: stack.es.post(f"{M}/{MODEL}/deployment/_start", params={
            "deployment_id": fresh, "number_of_allocations": "3", "wait_for": "fully_allocated", "timeout": "120s"}))
        seen: set[str] = set()
        wait_for(lambda: stack.pods(fresh), timeout=60, interval=0.02, what="the first pod of the new deployment")
        assert not converged(stack, fresh, 3, seen)
        killed = _kill_operator(stack)
        stack.operator.start()
        recovery = stopwatch(lambda: converged(stack, fresh, 3, seen), killed, what="the new deployment converged")
        # The restarted operator kept the pods its predecessor created: none replaced, none doubled.
        assert seen == {p["metadata"]["uid"] for p in stack.pods(fresh)}
        started = _answered_like_elasticsearch(start.join())
        assert started.status_code == 200 and started.json()["assignment"]["assignment_state"] == "started"
        record_recovery("operator kill -9 while creating a deployment's pods -> fully allocated", recovery,
                        **summary(load.record.between(killed, killed + recovery)))

        # An allocation change, the operator killed once its first pod change shows.
        before = _pod_signature(stack, fresh)
        update = Call(lambda: stack.es.post(f"{M}/{fresh}/deployment/_update", json={"number_of_allocations": 4}))
        wait_for(lambda: _pod_signature(stack, fresh) != before, timeout=60, interval=0.02,
                 what="the operator acting on the allocation change")
        first = _kill_operator(stack)
        stack.operator.start()
        # ... and its successor killed too, in its first pass (a crash loop).
        unconverged = not converged(stack, fresh, 4, seen)
        killed = _kill_operator(stack)
        stack.operator.start()
        recovery = stopwatch(lambda: converged(stack, fresh, 4, seen), killed, what="the allocation change converged")
        assert seen == {p["metadata"]["uid"] for p in stack.pods(fresh)}
        _answered_like_elasticsearch(update.join())
        record_recovery("operator kill -9 during an allocation change, again in the restart's first pass "
                        "-> fully allocated", recovery, between_kills_s=round(killed - first, 2),
                        second_kill_before_convergence=unconverged,
                        **summary(load.record.between(first, killed + recovery)))
    record = load.stop()
    assert record.answers and contract_problems(record) == []
    assert set(record.statuses()) == {200}, record.summary()
    assert all(a.body == RESULT for a in record.answers)
    assert {p["metadata"]["uid"]: p["spec"]["nodeName"] for p in stack.pods(SERVED)} == served_pods
    assert converged(stack, SERVED, 2)
    assert [d["spec"]["deployment_id"] for d in stack.deployments()].count(fresh) == 1
    assert _check(stack.es.post(f"{M}/{fresh}/deployment/_stop")).json() == {"stopped": True}
    assert stack.pods(fresh) == []


# ---------------------------------------------------------------------------------------------
# b) the shim

def _kill_shim_and_restart(stack: Stack) -> tuple[float, float]:
    """SIGKILL, then a new shim process on the same port and store: (killed, answering) times."""
    killed = time.monotonic()
    stack.shim.kill()
    stack.shim.start()  # returns once GET / answers
    return killed, time.monotonic()


def test_shim_killed_during_an_upload_loses_no_acknowledged_part(stack, record_recovery):
    """The definition goes up in 40 parts, in a shuffled order, one request at a time (as eland
    sends them); the shim dies after some were acknowledged. After the restart only the parts
    that were not acknowledged are sent again: the model is then complete and byte-identical,
    so every acknowledged part had been kept."""
    model_id = "uploaded_model"
    tiny = super_simple(model_id, vocabulary=VOCAB)
    definition = script_bytes(tiny.model)
    total = 40
    parts = ordered_parts(definition, total, random.Random(7).sample(range(total), total))
    _check(stack.es.put(f"{M}/{model_id}", json=_config(tiny)))
    _check(stack.es.put(f"{M}/{model_id}/vocabulary", json={"vocabulary": VOCAB}))
    acknowledged: list[int] = []
    failed: list[tuple[int, str, float]] = []

    def upload() -> None:
        with httpx.Client(base_url=stack.shim.url, timeout=30) as es:
            for part, chunk in parts:
                try:
                    response = es.put(f"{M}/{model_id}/definition/{part}", json=_part(chunk, definition, total))
                except httpx.HTTPError as err:  # the shim is gone: an uploader stops here
                    failed.append((part, type(err).__name__, time.monotonic()))
                    return
                assert response.status_code == 200, response.text
                acknowledged.append(part)
                time.sleep(0.02)  # ~ the time a client takes to read and encode its next chunk

    with BackgroundLoad(stack.infer_url(SERVED), DOC, rate=20) as load:
        load.flowing()
        uploader = threading.Thread(target=upload)
        uploader.start()
        wait_for(lambda: len(acknowledged) >= 8, timeout=60, interval=0.01, what="some parts acknowledged")
        killed, answering = _kill_shim_and_restart(stack)
        uploader.join(timeout=60)
        assert not uploader.is_alive()
        back = stopwatch(lambda: load.first_ok_after(answering) is not None, killed, what="_infer answered")
        acked = list(acknowledged)
        # A connection error, not a timeout (a hang would end in ReadTimeout after 30 s).
        assert failed and failed[0][1] in ("ConnectError", "ReadError", "RemoteProtocolError", "WriteError"), failed
        assert 8 <= len(acked) < total

        got = _check(stack.es.get(f"{M}/{model_id}", params={"include": "definition_status"})).json()
        assert got["trained_model_configs"][0]["fully_defined"] is False
        # A client that lost an acknowledgement retries that part: the same answer, nothing doubled.
        resent = {acked[-1]} | {p for p, _ in parts if p not in acked}
        for part, chunk in parts:
            if part in resent:  # the one in flight at the kill may or may not have been stored
                _check(stack.es.put(f"{M}/{model_id}/definition/{part}", json=_part(chunk, definition, total)))
        usable = time.monotonic() - killed
        time.sleep(1.0)
    record = load.stop()
    got = _check(stack.es.get(f"{M}/{model_id}", params={"include": "definition_status"})).json()
    config = got["trained_model_configs"][0]
    assert config["fully_defined"] is True and config["model_size_bytes"] == len(definition)
    assert (stack.store / resource_name(model_id) / "model.pt").read_bytes() == definition
    assert contract_problems(record, [(killed, answering)]) == []
    assert record.between(answering, time.monotonic()).statuses()[200] > 0
    record_recovery("shim kill -9 during an upload -> shim answering", answering - killed,
                    acknowledged_parts=len(acked), uploader_error=failed[0][1],
                    uploader_error_after_s=round(failed[0][2] - killed, 2), **summary(record))
    record_recovery("shim kill -9 during an upload -> first _infer answered", back)
    record_recovery("shim kill -9 during an upload -> model fully defined (unacknowledged parts resent)", usable)

    # The model is usable: it deploys and infers.
    _check(stack.es.post(f"{M}/{model_id}/deployment/_start", params={"wait_for": "started", "timeout": "120s"}))
    assert _check(stack.es.post(f"{M}/{model_id}/_infer", json=DOC)).json() == RESULT
    assert _check(stack.es.post(f"{M}/{model_id}/deployment/_stop")).json() == {"stopped": True}
    _check(stack.es.delete(f"{M}/{model_id}"))


def test_shim_killed_during_a_start_the_deployment_exists_once_and_starts(stack, record_recovery):
    """`_start?wait_for=started` whose shim dies once the deployment resource exists: the waiting
    client's connection fails at once, the deployment survives (it is in the Kubernetes API),
    exists once (a retried start is refused as Elasticsearch refuses a duplicate id), and starts."""
    deployment_id = "started_through_a_crash"
    with BackgroundLoad(stack.infer_url(SERVED), DOC, rate=20) as load:
        load.flowing()
        offset = len(stack.shim.output())
        start = Call(lambda: stack.es.post(f"{M}/{MODEL}/deployment/_start", params={
            "deployment_id": deployment_id, "wait_for": "started", "timeout": "120s"}))
        wait_for(lambda: f"deployment created deployment_id={deployment_id}" in stack.shim.output()[offset:],
                 timeout=60, interval=0.02, what="the start to create the deployment")
        killed, answering = _kill_shim_and_restart(stack)
        start.join(timeout=30)
        assert start.error is not None and start.response is None, start.response
        # A connection error, not a timeout (a hang would end in ReadTimeout after 120 s).
        assert type(start.error).__name__ in ("RemoteProtocolError", "ReadError", "ConnectError"), repr(start.error)

        def started() -> bool:
            stats = stack.es.get(f"{M}/{MODEL}/_stats").json()
            states = [s["deployment_stats"]["state"] for s in stats["trained_model_stats"]
                      if s.get("deployment_stats", {}).get("deployment_id") == deployment_id]
            return states == ["started"]

        ready = stopwatch(started, killed, what="the deployment started")
        inferred = stopwatch(lambda: stack.es.post(f"{M}/{deployment_id}/_infer", json=DOC).json() == RESULT,
                             killed, what="the deployment answering _infer")
        time.sleep(1.0)
    record = load.stop()
    assert contract_problems(record, [(killed, answering)]) == []
    assert record.between(answering, time.monotonic()).statuses()[200] > 0
    assert [d["spec"]["deployment_id"] for d in stack.deployments()].count(deployment_id) == 1
    retry = stack.es.post(f"{M}/{MODEL}/deployment/_start", params={"deployment_id": deployment_id})
    assert retry.status_code == 400 and retry.json()["error"]["reason"] == (
        "Could not start model deployment because an existing deployment with the same id "
        f"[{deployment_id}] exist")
    assert converged(stack, deployment_id, 1)
    record_recovery("shim kill -9 during a start -> shim answering", answering - killed,
                    start_error=type(start.error).__name__, start_error_after_s=round(start.finished - killed, 2),
                    **summary(record))
    record_recovery("shim kill -9 during a start -> deployment started", ready)
    record_recovery("shim kill -9 during a start -> deployment answering _infer", inferred)
    assert _check(stack.es.post(f"{M}/{deployment_id}/deployment/_stop")).json() == {"stopped": True}


# ---------------------------------------------------------------------------------------------
# e) two operator replicas (leader election), the active one killed

def _operator_metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def _double_pods(stack: Stack, deployment_id: str) -> list[str]:
    """Nodes with more than one live worker pod of the deployment (never allowed)."""
    nodes = [p["spec"]["nodeName"] for p in stack.pods(deployment_id) if not p["metadata"].get("deletionTimestamp")]
    return sorted({n for n in nodes if nodes.count(n) > 1})


def test_two_operator_replicas_the_standby_takes_over_from_a_killed_active_one(stack, record_recovery, localkube,
                                                                               tmp_path):
    """Two operators with leader election (the default 10 s Lease): the standby makes no pass and
    no write while the active one lives; kill -9 the active one in a stream of allocation changes,
    and the standby applies the next change. Never two live pods of the deployment on a node, and
    the status keeps what it had (start time, max assigned allocations)."""
    name = "replicated"
    stack.operator.stop()  # the module's single operator makes way for two replicas
    env = {"TMD_WORKER_PORT": str(WORKER_PORT), "TMD_LEADER_ELECTION": "true"}
    ports = {"a": free_port(), "b": free_port()}
    replicas = {r: OperatorProcess(localkube.kubeconfig, tmp_path / f"operator-{r}.log", {**env, "POD_NAME": f"operator-{r}"},
                                   args=("--metrics", f"127.0.0.1:{ports[r]}")) for r in ports}
    doubles: list[str] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            doubles.extend(_double_pods(stack, name))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        replicas["a"].start()
        wait_for(lambda: "leading as operator-a" in replicas["a"].output(), timeout=30, what="operator-a leading")
        replicas["b"].start()
        _check(stack.es.post(f"{M}/{MODEL}/deployment/_start", params={
            "deployment_id": name, "number_of_allocations": "1", "wait_for": "fully_allocated", "timeout": "120s"}))
        start_time = stack.deployment(name)["status"]["start_time"]
        seen: set[str] = set()
        sampler.start()
        for allocations in (2, 3, 2):  # the stream: each change applied by the active replica
            _check(stack.es.post(f"{M}/{name}/deployment/_update", json={"number_of_allocations": allocations}))
            stopwatch(lambda: converged(stack, name, allocations, seen), time.monotonic(), timeout=60,
                      what=f"{allocations} allocations")
        assert _operator_metric(ports["b"], "tmd_operator_reconcile_passes_total") == 0, "the standby made a pass"
        standby_calls = httpx.get(f"http://127.0.0.1:{ports['b']}/metrics").text
        assert "pods" not in "".join(l for l in standby_calls.splitlines()
                                     if l.startswith("tmd_operator_api_requests_total") and 'verb="list"' not in l)
        before = _pod_signature(stack, name)
        _check(stack.es.post(f"{M}/{name}/deployment/_update", json={"number_of_allocations": 3}))
        wait_for(lambda: _pod_signature(stack, name) != before, timeout=30, interval=0.02,
                 what="the active operator acting on the change")
        killed = time.monotonic()
        replicas["a"].stop(signal.SIGKILL)  # in the middle of the change
        _check(stack.es.post(f"{M}/{name}/deployment/_update", json={"number_of_allocations": 1}))  # the next one
        took_over = stopwatch(lambda: "leading as operator-b" in replicas["b"].output(), killed,
                              what="operator-b leading")
        applied = stopwatch(lambda: converged(stack, name, 1, seen), killed, what="the next change applied")
        sampling.set()
        sampler.join(5)
        assert doubles == [], f"two live worker pods on one node: {doubles}"
        status = stack.deployment(name)["status"]
        assert status["start_time"] == start_time and status["max_assigned_allocations"] >= 3
        spec = json.loads(stack.kube("get", "lease", "tmd-operator", "-o", "json").stdout)["spec"]
        assert spec["holderIdentity"] == "operator-b" and spec["leaseTransitions"] == 1
        record_recovery("active operator kill -9 under allocation changes -> standby leading", took_over,
                        lease_seconds=10)
        record_recovery("active operator kill -9 under allocation changes -> next change applied", applied)
    finally:
        sampling.set()
        for replica in replicas.values():
            if replica.proc is not None and replica.proc.poll() is None:
                replica.stop()
        stack.operator.start()
    assert _check(stack.es.post(f"{M}/{name}/deployment/_stop")).json() == {"stopped": True}


# ---------------------------------------------------------------------------------------------
# c) a node (last: it cannot be undone)

def test_a_deleted_node_under_load_moves_its_allocations(stack, record_recovery):
    """`kubectl delete node` of a node serving one of the deployment's two allocations, while
    clients send requests: each gets a result or an allowed Elasticsearch error, and the
    allocation moves to a remaining node."""
    table = converged(stack, SERVED, 2)
    assert table
    routed = sorted(table["routing_table"])
    lost = routed[0]
    with BackgroundLoad(stack.infer_url(SERVED), DOC, rate=20) as load:
        load.flowing()
        deleted = time.monotonic()
        stack.kube("delete", "node", lost, "--wait=false")

        def moved() -> dict[str, Any] | bool:
            status = converged(stack, SERVED, 2)
            return status and lost not in status["routing_table"] and status

        recovery = stopwatch(moved, deleted, what="the allocation moved off the deleted node")
        time.sleep(1.0)
    record = load.stop()
    assert contract_problems(record) == [], record.summary()
    # Once the routing table is back, only results (after the shim's route cache has turned over).
    after = record.between(deleted + recovery + ROUTE_CACHE_SECONDS, time.monotonic())
    assert after.answers and set(after.statuses()) == {200}, after.summary()
    assert all(a.body == RESULT for a in record.answers if a.status == 200)
    assert lost not in [p["spec"]["nodeName"] for p in stack.pods(SERVED)]
    errors = [a.sent + a.latency - deleted for a in record.answers if a.status != 200]
    record_recovery("node deleted -> allocations placed and started on the remaining nodes", recovery,
                    last_error_after_s=round(max(errors), 2) if errors else None, **summary(record))
