"""The shim end to end with the official Elasticsearch Python client: localkube, the real kopf
operator, real worker processes and `tmd shim` as a subprocess (es-api.md §7.1, §2.2–§2.4)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

elasticsearch = pytest.importorskip("elasticsearch", reason="the official client `elasticsearch>=9,<10` is optional")
from elasticsearch import ApiError, BadRequestError, ConflictError, Elasticsearch, NotFoundError  # noqa: E402

from tests.operator.e2e import install_crds, wait_for, worker_pid  # noqa: E402
from tests.shim.support import ShimProcess, free_port, start_operator, upload_model  # noqa: E402
from tmd.api.resources import LABEL_DEPLOYMENT, resource_name  # noqa: E402
from tmd.tinymodels import super_simple  # noqa: E402
from tmd.tinymodels.builders import script_bytes  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.localkube(nodes=2, node_cpus="2", node_memory="4Gi")]

WORKER_PORT = free_port()
VOCAB = ["[PAD]", "[UNK]", "these", "are", "my", "words"]


@pytest.fixture(scope="module")
def operator(localkube, kube, tmp_path_factory):
    install_crds(kube)
    proc = start_operator(localkube.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log", WORKER_PORT)
    yield proc
    assert proc.stop() == 0, proc.output()[-3000:]


@pytest.fixture(scope="module")
def shim(localkube, operator, tmp_path_factory):
    work = tmp_path_factory.mktemp("shim")
    metrics = f"127.0.0.1:{free_port()}"
    proc = ShimProcess(localkube.kubeconfig, work / "store", work / "shim.log", "--no-auth",
                       "--worker-port", str(WORKER_PORT), "--metrics", metrics).start()
    proc.metrics = f"http://{metrics}/metrics"
    yield proc
    if proc.proc and proc.proc.poll() is None:
        assert proc.stop() == 0, proc.output()[-3000:]


@pytest.fixture(scope="module")
def es(shim):
    client = Elasticsearch(shim.url, request_timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="module")
def models(es):
    """The YAML setup: `test_model` and `another_test_model`, pass_through, uploaded in three parts out of order."""
    for model_id in ("test_model", "another_test_model"):
        tiny = super_simple(model_id, vocabulary=VOCAB)
        upload_model(es, model_id, tiny.config, script_bytes(tiny.model), VOCAB, parts=3, order=[2, 0, 1])
    return "test_model"


@pytest.fixture(autouse=True)
def stop_all(es):
    yield
    es.ml.stop_trained_model_deployment(model_id="_all", force=True)


def test_root_product_header_and_version(shim):
    response = httpx.get(shim.url + "/", headers={"Accept": "application/vnd.elasticsearch+json; compatible-with=9"})
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    assert response.json()["version"]["number"].startswith("9.")
    assert response.json()["tagline"] == "You Know, for Search"
    bad = httpx.get(shim.url + "/_ml/trained_models/nope")
    assert bad.status_code == 404 and bad.headers["x-elastic-product"] == "Elasticsearch"
    assert bad.json()["error"]["type"] == "resource_not_found_exception"


def test_unknown_parameter_rejected_like_elasticsearch(shim, models):
    response = httpx.get(shim.url + "/_ml/trained_models/test_model?bogus=1")
    assert response.status_code == 400
    assert response.json()["error"]["reason"] == \
        "request [/_ml/trained_models/test_model] contains unrecognized parameter: [bogus]"


def test_include_definition_status_and_assembled_model(es, models):
    got = es.ml.get_trained_models(model_id="test_model", include="definition_status")
    assert got["count"] == 1
    config = got["trained_model_configs"][0]
    assert config["fully_defined"] is True
    assert config["model_id"] == "test_model"
    assert config["model_size_bytes"] == len(script_bytes(super_simple("test_model").model))
    assert config["inference_config"]["pass_through"]["tokenization"]["bert"]["with_special_tokens"] is False


def test_start_and_stop_deployment_with_no_cache(es, models):
    started = es.ml.start_trained_model_deployment(model_id="test_model", cache_size="0", wait_for="started")
    assignment = started["assignment"]
    assert assignment["assignment_state"] == "started"
    assert assignment["task_parameters"]["model_id"] == "test_model"
    assert assignment["task_parameters"]["cache_size"] == "0"
    assert es.ml.stop_trained_model_deployment(model_id="test_model")["stopped"] is True


def test_start_with_cache_deprecated_infer_counts_cache_hits(es, models, shim):
    started = es.ml.start_trained_model_deployment(model_id="test_model", cache_size="10kb", wait_for="started")
    assert started["assignment"]["task_parameters"]["cache_size"] == "10kb"
    for word in ("words", "are", "words"):
        response = httpx.post(shim.url + "/_ml/trained_models/test_model/deployment/_infer",
                              json={"docs": [{"input": word}]}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json() == {"predicted_value": [[1.0, 1.0]]}
        assert response.headers["warning"].endswith(
            '"[POST /_ml/trained_models/{model_id}/deployment/_infer] is deprecated! Use '
            '[POST /_ml/trained_models/{model_id}/_infer] instead."')
    stats = es.ml.get_trained_models_stats(model_id="test_model")
    node = stats["trained_model_stats"][0]["deployment_stats"]["nodes"][0]
    assert node["inference_count"] == 3
    assert node["inference_cache_hit_count"] == 1
    too_many = httpx.post(shim.url + "/_ml/trained_models/test_model/deployment/_infer",
                          json={"docs": [{"input": "a"}, {"input": "b"}]})
    assert too_many.status_code == 400
    assert "multiple documents are not supported" in too_many.json()["error"]["reason"]


def test_tmd_batching_start_parameter_reaches_the_workers_and_stats(es, models, shim):
    """tmd's extension: the knobs travel shim → resource → worker pod env, and stats show them."""
    url = shim.url + "/_ml/trained_models/test_model/deployment/_start"
    bad = httpx.post(url, json={"tmd_batching": {"max_batch_size": 0, "max_batch_delay": "2h"}}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["reason"] == (
        "Validation Failed: 1: [tmd_batching.max_batch_size] must be between 1 and 1024;"
        "2: [tmd_batching.max_batch_delay] must be whole milliseconds or seconds (e.g. 2ms), got [2h];")
    started = httpx.post(url, params={"wait_for": "started"},
                         json={"tmd_batching": {"max_batch_size": 2, "max_batch_delay": "50ms"}}, timeout=60)
    assert started.status_code == 200, started.text
    try:
        docs = [{"input": w} for w in ("words", "are", "my", "these")]
        result = es.ml.infer_trained_model(model_id="test_model", docs=docs)
        assert result["inference_results"] == [{"predicted_value": [[1.0, 1.0]]}] * 4
        stats = es.ml.get_trained_models_stats(model_id="test_model")["trained_model_stats"][0]["deployment_stats"]
        assert stats["tmd_batching"] == {"max_batch_size": 2, "max_batch_delay": "50ms"}
        node = stats["nodes"][0]
        assert node["inference_count"] == 4 and node["average_batch_size"] == 2.0  # 4 documents, 2 per pass
    finally:
        es.ml.stop_trained_model_deployment(model_id="test_model")


def test_update_tmd_batching_reaches_the_running_worker_without_failed_requests(es, models, shim, kube):
    """`_update` with only `tmd_batching`, while clients infer: the operator sets the running worker's
    knobs in place (same pod), every request gets 200, and batches form once batching is on."""
    import threading

    url = shim.url + "/_ml/trained_models/test_model/deployment"
    started = httpx.post(url + "/_start", params={"wait_for": "started", "cache_size": "0"},  # no cache: every doc computes
                         json={"tmd_batching": {"max_batch_size": 1}}, timeout=60)
    assert started.status_code == 200, started.text
    workers = ("get", "pods", "-l", f"{LABEL_DEPLOYMENT}={resource_name('test_model')}", "-o", "json")
    [pod] = json.loads(kube(*workers).stdout)["items"]
    worker = f"http://{pod['status']['podIP']}:{WORKER_PORT}"

    def worker_batching():
        return httpx.get(worker + "/stats", timeout=10).json()["deployment"]["tmd_batching"]

    def node_stats():
        stats = es.ml.get_trained_models_stats(model_id="test_model")["trained_model_stats"][0]["deployment_stats"]
        return stats["nodes"][0]

    assert worker_batching() == {"max_batch_size": 1, "max_batch_delay": "0ms", "mode": "none"}
    results: list[int] = []
    stop = threading.Event()

    def load():
        docs = [{"input": "these are my words"}] * 4  # one request, four queue entries: a batch once allowed
        with httpx.Client(timeout=30) as client:
            while not stop.is_set() and len(results) < 4000:
                results.append(client.post(shim.url + "/_ml/trained_models/test_model/_infer",
                                           json={"docs": docs}).status_code)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(results) >= 20, timeout=60, what="requests before the update")
        assert node_stats()["average_batch_size"] == 1.0
        updated = httpx.post(url + "/_update", json={"tmd_batching": {"max_batch_size": 8, "max_batch_delay": "5ms"}},
                             timeout=60)
        assert updated.status_code == 200, updated.text
        assert updated.json()["assignment"]["tmd_batching"] == {"max_batch_size": 8, "max_batch_delay": "5ms"}
        knobs = wait_for(lambda: (b := worker_batching())["max_batch_size"] == 8 and b, timeout=60,
                         what="the worker batching up to 8")
        assert knobs["max_batch_delay"] == "5ms" and knobs["mode"] != "none"
        wait_for(lambda: node_stats()["average_batch_size"] > 1.0, timeout=60, what="batches of more than one")
        # a field left out keeps its value
        updated = httpx.post(url + "/_update", json={"tmd_batching": {"max_batch_delay": "0ms"}}, timeout=60)
        assert updated.json()["assignment"]["tmd_batching"] == {"max_batch_size": 8, "max_batch_delay": "0ms"}
        wait_for(lambda: worker_batching()["max_batch_delay"] == "0ms", timeout=60, what="the worker's delay at 0ms")
        count = len(results)
        wait_for(lambda: len(results) >= count + 20, timeout=60, what="requests after the updates")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert results and set(results) == {200}, {code: results.count(code) for code in set(results)}
    [after] = json.loads(kube(*workers).stdout)["items"]
    assert after["metadata"]["uid"] == pod["metadata"]["uid"], "changed in place, not replaced"
    assert after["metadata"]["annotations"]["ml.tmd.dev/worker-batching"].startswith("8/0ms@")
    stats = es.ml.get_trained_models_stats(model_id="test_model")["trained_model_stats"][0]["deployment_stats"]
    assert stats["tmd_batching"] == {"max_batch_size": 8, "max_batch_delay": "0ms"}
    # A restarted container starts from its pod's environment (max_batch_size 1): the operator sets it again.
    os.kill(wait_for(lambda: worker_pid(pod["status"]["podIP"], "test_model"), what="worker pid"), signal.SIGKILL)
    wait_for(lambda: json.loads(kube(*workers).stdout)["items"][0]["status"]["containerStatuses"][0]["restartCount"],
             timeout=60, what="the worker container restarted")
    knobs = wait_for(lambda: (b := worker_batching())["max_batch_size"] == 8 and b, timeout=120,
                     what="the restarted worker batching up to 8 again")
    assert knobs["max_batch_delay"] == "0ms"


def test_low_priority_start_and_its_validation(es, models):
    started = es.ml.start_trained_model_deployment(model_id="test_model", priority="low", wait_for="started")
    params = started["assignment"]["task_parameters"]
    assert (params["priority"], params["number_of_allocations"], params["threads_per_allocation"]) == ("low", 1, 1)
    es.ml.stop_trained_model_deployment(model_id="test_model")
    with pytest.raises(BadRequestError) as err:
        es.ml.start_trained_model_deployment(model_id="test_model", priority="low", number_of_allocations=3)
    assert "[number_of_allocations] must be 1 when [priority] is low" in str(err.value.body)
    with pytest.raises(BadRequestError) as err:
        es.ml.start_trained_model_deployment(model_id="test_model", priority="low", threads_per_allocation=4)
    assert "[threads_per_allocation] must be 1 when [priority] is low" in str(err.value.body)


def test_validation_errors_of_start_are_collected(es, models):
    with pytest.raises(BadRequestError) as err:
        es.ml.start_trained_model_deployment(model_id="test_model", threads_per_allocation=3, queue_capacity=0)
    assert err.value.body["error"]["type"] == "action_request_validation_exception"
    assert err.value.body["error"]["reason"] == (
        "Validation Failed: 1: [threads_per_allocation] must be a power of 2 less than or equal to 32;"
        "2: [queue_capacity] must be a positive integer;")
    with pytest.raises(BadRequestError) as err:
        es.ml.start_trained_model_deployment(model_id="test_model", wait_for="nope")
    assert err.value.body["error"]["reason"] == \
        "invalid [wait_for] state [nope]; must be one of [started, starting, fully_allocated"


def test_update_deployment(es, models):
    es.ml.start_trained_model_deployment(model_id="test_model", wait_for="started")
    updated = es.ml.update_trained_model_deployment(model_id="test_model", number_of_allocations=1)
    assert updated["assignment"]["task_parameters"]["model_id"] == "test_model"
    assert updated["assignment"]["task_parameters"]["number_of_allocations"] == 1
    updated = es.ml.update_trained_model_deployment(model_id="test_model", number_of_allocations=2)
    assert updated["assignment"]["task_parameters"]["number_of_allocations"] == 2
    es.ml.stop_trained_model_deployment(model_id="test_model")
    es.ml.start_trained_model_deployment(model_id="test_model", deployment_id="test_model_deployment",
                                         wait_for="started")
    updated = es.ml.update_trained_model_deployment(model_id="test_model_deployment", number_of_allocations=1)
    assert updated["assignment"]["task_parameters"]["model_id"] == "test_model"
    with pytest.raises(NotFoundError):
        es.ml.update_trained_model_deployment(model_id="missing-model", number_of_allocations=4)
    with pytest.raises(ApiError) as err:
        es.options(max_retries=0).ml.update_trained_model_deployment(model_id="test_model_deployment",
                                                                     number_of_allocations=100)
    assert err.value.status_code == 429
    assert err.value.body["error"]["reason"] == ("Could not update deployment because there are not enough resources "
                                                 "to provide all requested allocations")
    stats = es.ml.get_trained_models_stats(model_id="test_model")["trained_model_stats"][0]["deployment_stats"]
    assert stats["number_of_allocations"] == 1


def test_clear_deployment_cache_and_infer_by_model_id(es, models):
    es.ml.start_trained_model_deployment(model_id="test_model", deployment_id="test_model_deployment_cache_test",
                                         cache_size="10kb", wait_for="started")
    for word in ("words", "are", "words"):
        result = es.ml.infer_trained_model(model_id="test_model", docs=[{"input": word}])
        assert result["inference_results"] == [{"predicted_value": [[1.0, 1.0]]}]

    def node():
        stats = es.ml.get_trained_models_stats(model_id="test_model")["trained_model_stats"]
        return stats[0]["deployment_stats"]["nodes"][0]

    assert (node()["inference_count"], node()["inference_cache_hit_count"]) == (3, 1)
    assert es.ml.clear_trained_model_deployment_cache(model_id="test_model_deployment_cache_test")["cleared"] is True
    es.ml.infer_trained_model(model_id="test_model", docs=[{"input": "words"}])
    assert (node()["inference_count"], node()["inference_cache_hit_count"]) == (4, 1)
    # `test_model` is not a deployment id: stop with allow_no_match (default true) stops nothing.
    assert es.ml.stop_trained_model_deployment(model_id="test_model")["stopped"] is True
    assert es.ml.get_trained_models_stats(model_id="test_model")["trained_model_stats"][0]["deployment_stats"]


def test_model_alias_put_get_reassign_and_infer(es, models):
    es.ml.put_trained_model_alias(model_id="test_model", model_alias="pytorch")
    got = es.ml.get_trained_models(model_id="pytorch")
    assert got["count"] == 1 and got["trained_model_configs"][0]["model_id"] == "test_model"
    es.ml.put_trained_model_alias(model_id="another_test_model", model_alias="pytorch", reassign=True)
    assert es.ml.get_trained_models(model_id="pytorch")["trained_model_configs"][0]["model_id"] == "another_test_model"
    es.ml.put_trained_model_alias(model_id="test_model", model_alias="pytorch", reassign=True)
    es.ml.start_trained_model_deployment(model_id="test_model", wait_for="started")
    es.ml.infer_trained_model(model_id="pytorch", docs=[{"input": "words"}])
    stats = es.ml.get_trained_models_stats(model_id="test_model")["trained_model_stats"][0]
    assert stats["deployment_stats"]["nodes"][0]["inference_count"] == 1
    with pytest.raises(BadRequestError) as err:
        es.ml.put_trained_model_alias(model_id="another_test_model", model_alias="pytorch", reassign=True)
    assert err.value.body["error"]["reason"] == ("cannot reassign model_alias [pytorch] to model [another_test_model] "
                                                 "from model [test_model] as it is not yet deployed")
    es.ml.delete_trained_model_alias(model_id="test_model", model_alias="pytorch")


def test_stop_with_allow_no_match(es, models):
    es.ml.start_trained_model_deployment(model_id="test_model", deployment_id="test_model_for_search",
                                         wait_for="started")
    assert es.ml.stop_trained_model_deployment(model_id="test_model_for_search")["stopped"] is True
    with pytest.raises(NotFoundError) as err:
        es.ml.stop_trained_model_deployment(model_id="test_model_for_search", allow_no_match=False)
    assert err.value.body["error"]["reason"] == "No known model deployment with id [test_model_for_search]"
    assert es.ml.stop_trained_model_deployment(model_id="test_model_for_search", allow_no_match=True)["stopped"]


def test_multiple_deployments_of_one_model_and_cat(es, models):
    for dep in ("test_model_for_search", "test_model_for_ingest"):
        es.ml.start_trained_model_deployment(model_id="test_model", deployment_id=dep, priority="low",
                                             wait_for="started")
    for dep in ("test_model_for_search", "test_model_for_ingest"):
        assert es.ml.infer_trained_model(model_id=dep, docs=[{"input": "words"}, {"input": "are"}])[
            "inference_results"] == [{"predicted_value": [[1.0, 1.0]]}] * 2
    stats = es.ml.get_trained_models_stats(model_id="test_model")
    assert stats["count"] == 1
    assert [s["deployment_stats"]["deployment_id"] for s in stats["trained_model_stats"]] == \
        ["test_model_for_ingest", "test_model_for_search"]
    assert [s["deployment_stats"].get("inference_count") for s in stats["trained_model_stats"]] == [2, 2], json.dumps(stats.body)
    cat = es.cat.ml_trained_models(v=True).body
    header, *rows = cat.splitlines()
    assert header.split() == ["id", "heap_size", "operations", "create_time", "type", "ingest.pipelines",
                              "data_frame.id"]
    assert sorted(r.split()[0] for r in rows) == ["another_test_model", "test_model"]
    as_json = es.cat.ml_trained_models(format="json", h="id,type")
    assert {"id": "test_model", "type": "pytorch"} in list(as_json)


def test_duplicate_ids_and_clashes(es, models):
    es.ml.start_trained_model_deployment(model_id="test_model", deployment_id="test_model_deployment",
                                         wait_for="started")
    with pytest.raises(BadRequestError) as err:
        es.ml.start_trained_model_deployment(model_id="test_model", deployment_id="test_model_deployment")
    assert err.value.body["error"]["reason"] == ("Could not start model deployment because an existing deployment "
                                                 "with the same id [test_model_deployment] exist")
    with pytest.raises(BadRequestError) as err:
        es.ml.start_trained_model_deployment(model_id="test_model", deployment_id="another_test_model")
    assert err.value.body["error"]["reason"].startswith(
        "Deployment id [another_test_model] is the same as an another model which is not the model being deployed.")
    with pytest.raises(BadRequestError) as err:
        es.ml.put_trained_model(model_id="test_model_deployment", model_type="pytorch",
                                inference_config={"pass_through": {}},
                                input={"field_names": ["input"]})
    assert err.value.body["error"]["reason"] == \
        "Cannot create model [test_model_deployment] the id is the same as an current model deployment"
    with pytest.raises(ConflictError) as err:
        es.ml.delete_trained_model(model_id="test_model")
    assert err.value.body["error"]["reason"] == \
        "Cannot delete model [test_model] as it is currently deployed; use force to delete the model"


def test_start_default_id_and_error_paths(es, models):
    started = es.ml.start_trained_model_deployment(model_id="test_model", wait_for="starting")
    assert started["assignment"]["task_parameters"]["deployment_id"] == "test_model"
    es.ml.stop_trained_model_deployment(model_id="test_model")
    with pytest.raises(NotFoundError) as err:
        es.ml.start_trained_model_deployment(model_id="no_such_model")
    assert err.value.body["error"]["reason"] == "Could not find trained model [no_such_model]"
    es.ml.put_trained_model(model_id="distilbert-finetuned-sst", model_type="pytorch", inference_config={"ner": {}},
                            input={"field_names": ["input"]})
    with pytest.raises(NotFoundError) as err:
        es.ml.start_trained_model_deployment(model_id="distilbert-finetuned-sst")
    assert err.value.body["error"]["reason"] == "Could not find trained model definition [distilbert-finetuned-sst]"
    # Parts disagreeing on the total → the §2.3 step-10 message.
    es.ml.put_trained_model_definition_part(model_id="distilbert-finetuned-sst", part=0, definition="AAAA",
                                            total_definition_length=10, total_parts=2)
    with pytest.raises(BadRequestError) as err:
        es.ml.start_trained_model_deployment(model_id="distilbert-finetuned-sst")
    assert "Model definition truncated" in err.value.body["error"]["reason"]
    with pytest.raises(ConflictError) as err:
        es.ml.infer_trained_model(model_id="test_model", docs=[{"input": "words"}])
    assert err.value.body["error"]["reason"] == ("Model [test_model] must be deployed to use. Please deploy with the "
                                                 "start trained model deployment API.")
    with pytest.raises(ApiError) as err:
        es.options(max_retries=0).ml.start_trained_model_deployment(model_id="test_model", number_of_allocations=100)
    assert err.value.status_code == 429
    assert err.value.body["error"]["reason"] == ("Could not start deployment because there are not enough resources "
                                                 "to provide all requested allocations")
    assert "deployment_stats" not in es.ml.get_trained_models_stats(model_id="test_model")["trained_model_stats"][0]
    es.ml.delete_trained_model(model_id="distilbert-finetuned-sst")


def test_start_timeout_answers_408_and_keeps_starting(es, models):
    with pytest.raises(ApiError) as err:
        es.ml.start_trained_model_deployment(model_id="test_model", wait_for="fully_allocated", timeout="1ms")
    assert err.value.status_code == 408
    assert err.value.body["error"]["reason"].startswith(
        "Timed out after [1ms] waiting for trained model deployment [test_model] to start.")
    wait_for(lambda: es.ml.get_trained_models_stats(model_id="test_model")["trained_model_stats"][0][
        "deployment_stats"]["state"] == "started", what="the timed-out deployment to keep starting")


def test_definition_part_validation(es, models):
    with pytest.raises(BadRequestError) as err:
        es.ml.put_trained_model_definition_part(model_id="test_model", part=5, definition="AAAA",
                                                total_definition_length=0, total_parts=2)
    assert err.value.body["error"]["reason"] == ("Validation Failed: 1: [total_definition_length] must be greater than "
                                                 "0;2: [part] must be less than total_parts;")


def test_security_from_a_kubernetes_secret(localkube, kube, models, tmp_path):
    users = {"users": {"elastic": {"password": "changeme", "roles": ["admin"]},
                      "reader": {"password": "readme", "roles": ["user"]}},
             "api_keys": {"ci-key": {"key": "s3cret", "name": "ci", "roles": ["user"]}}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tmd-shim-users"},
              "data": {"users.json": base64.b64encode(json.dumps(users).encode()).decode()}}
    kube("apply", "-f", "-", input=json.dumps(secret))
    secured = ShimProcess(localkube.kubeconfig, tmp_path / "store", tmp_path / "shim.log",
                          "--auth-secret", "tmd-shim-users", "--worker-port", str(WORKER_PORT)).start()
    try:
        anonymous = httpx.get(secured.url + "/_ml/trained_models")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Basic realm=")
        assert anonymous.headers["x-elastic-product"] == "Elasticsearch"
        assert anonymous.json()["error"]["type"] == "security_exception"
        admin = Elasticsearch(secured.url, basic_auth=("elastic", "changeme"))
        assert admin.ml.get_trained_models(model_id="test_model")["count"] == 1
        reader = Elasticsearch(secured.url, api_key=("ci-key", "s3cret"))
        assert reader.ml.get_trained_models_stats(model_id="test_model")["count"] == 1
        with pytest.raises(elasticsearch.AuthorizationException) as err:
            reader.ml.start_trained_model_deployment(model_id="test_model")
        assert err.value.status_code == 403
        with pytest.raises(elasticsearch.AuthenticationException):
            Elasticsearch(secured.url, basic_auth=("elastic", "wrong")).ml.get_trained_models()
    finally:
        assert secured.stop() == 0, secured.output()[-3000:]


ELAND_PYTHON = os.environ.get("TMD_ELAND_PYTHON", "")


@pytest.mark.skipif(not ELAND_PYTHON or not Path(ELAND_PYTHON).exists(),
                    reason="eland is test-only and needs its own interpreter (transformers<5 pins tokenizers<0.23): "
                           "set TMD_ELAND_PYTHON to a python with eland, transformers<5, sentence-transformers")
def test_eland_imports_a_tiny_bert_ner_model(shim, models, tmp_path):
    """eland traces a tiny BERT NER model saved with vocab.txt, uploads it (config, definition
    parts, vocabulary), starts it and infers through eland; elasticsearch-py infers too."""
    done = subprocess.run([ELAND_PYTHON, str(Path(__file__).with_name("eland_import.py")), shim.url, str(tmp_path)],
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["state"] == "started"
    for key in ("eland", "client"):
        (result,) = out[key]["inference_results"]
        assert isinstance(result["predicted_value"], str)
        assert isinstance(result["entities"], list)
    # NER's predicted_value is the input text, annotated where entities were found (random weights here).
    assert "Josh" in out["eland"]["inference_results"][0]["predicted_value"]
    assert "Acme" in out["client"]["inference_results"][0]["predicted_value"]
    assert all(c["model_id"] != "tiny_bert_ner" for c in out["config"]["trained_model_configs"])  # ptm.delete()


def test_documents_spread_over_routes_and_come_back_in_order(es, models, shim):
    started = es.ml.start_trained_model_deployment(model_id="test_model", number_of_allocations=2,
                                                   wait_for="fully_allocated", cache_size="0")
    assert sum(r["current_allocations"] for r in started["assignment"]["routing_table"].values()) == 2
    docs = [{"input": w} for w in ("these", "are", "my", "words")]
    result = es.ml.infer_trained_model(model_id="test_model", docs=docs)
    assert result["inference_results"] == [{"predicted_value": [[1.0, 1.0]]}] * 4
    nodes = es.ml.get_trained_models_stats(model_id="test_model")["trained_model_stats"][0]["deployment_stats"]["nodes"]
    # Both routes took documents, in proportion to their allocations.
    counts = {next(iter(n["node"])): n.get("inference_count", 0) for n in nodes}
    allocations = {node: r["current_allocations"] for node, r in started["assignment"]["routing_table"].items()}
    assert counts == {node: 4 * a // 2 for node, a in allocations.items()}
    exported = httpx.get(shim.metrics, timeout=5).text
    assert 'tmd_shim_requests_total{api="ml.infer_trained_model",status="200"}' in exported
    assert 'tmd_shim_requests_total{api="ml.start_trained_model_deployment",status="200"}' in exported


def test_a_route_failing_during_the_wait_fails_the_start_and_removes_the_deployment(es, models):
    """§2.4: a definition that is not TorchScript makes the worker fail to load; the start fails
    with Elasticsearch's 500 and the deployment is deleted (not left crash-looping)."""
    es.ml.put_trained_model(model_id="broken_model", model_type="pytorch", input={"field_names": ["input"]},
                            inference_config={"pass_through": {"tokenization": {"bert": {"with_special_tokens": False}}}})
    junk = b"this is not a torchscript archive" * 10
    es.ml.put_trained_model_definition_part(model_id="broken_model", part=0, definition=base64.b64encode(junk).decode(),
                                            total_definition_length=len(junk), total_parts=1)
    es.ml.put_trained_model_vocabulary(model_id="broken_model", vocabulary=VOCAB)
    with pytest.raises(ApiError) as err:
        es.options(max_retries=0).ml.start_trained_model_deployment(model_id="broken_model", wait_for="started",
                                                                    timeout="120s")
    assert err.value.status_code == 500
    assert err.value.body["error"]["reason"].startswith(
        "Could not start trained model deployment, the following nodes failed with errors [{")
    with pytest.raises(NotFoundError):
        es.ml.stop_trained_model_deployment(model_id="broken_model", allow_no_match=False)
    es.ml.delete_trained_model(model_id="broken_model")


def test_put_model_configs_fill_mask_bert_ja_and_prefix_strings(es, models):
    """§7.1 items 1, 20, 21: configurations accepted, echoed with defaults, or refused as Elasticsearch does."""
    put = es.ml.put_trained_model(model_id="fill_mask_model", model_type="pytorch",
                                  inference_config={"fill_mask": {"tokenization": {"bert": {}}}})
    assert put["inference_config"]["fill_mask"]["mask_token"] == "[MASK]"
    with pytest.raises(BadRequestError) as err:
        es.ml.put_trained_model(model_id="bad_mask_model", model_type="pytorch",
                                inference_config={"fill_mask": {"mask_token": "<mask>",
                                                                "tokenization": {"bert": {}}}})
    assert "Mask token requested was [<mask>] but must be [[MASK]] for this model" in err.value.body["error"]["reason"]
    ja = es.ml.put_trained_model(model_id="bert_ja_model", model_type="pytorch", inference_config={"pass_through": {
        "tokenization": {"bert_ja": {"with_special_tokens": False, "max_sequence_length": 512, "truncate": "first",
                                     "span": -1}}}})
    assert ja["inference_config"]["pass_through"]["tokenization"]["bert_ja"]["max_sequence_length"] == 512
    es.ml.put_trained_model(model_id="prefix_model", model_type="pytorch", inference_config={"pass_through": {}},
                            prefix_strings={"search": "query: "})
    got = es.ml.get_trained_models(model_id="prefix_model")["trained_model_configs"][0]
    assert got["prefix_strings"] == {"search": "query: "}
    for model_id in ("fill_mask_model", "bert_ja_model", "prefix_model"):
        es.ml.delete_trained_model(model_id=model_id)
