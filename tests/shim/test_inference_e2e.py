"""`_ml/info`, `_ml/memory/_stats`, trained model stats without an id and the `_inference` API,
called through the official Elasticsearch client against localkube, the real kopf operator, real
worker processes and `tmd shim` (issue #12)."""

from __future__ import annotations

import math

import pytest

elasticsearch = pytest.importorskip("elasticsearch", reason="the official client `elasticsearch>=9,<10` is optional")
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError  # noqa: E402

from tests.operator.e2e import install_crds  # noqa: E402
from tests.shim.support import ShimProcess, free_port, start_operator  # noqa: E402
from tmd.api.memory import MB, NATIVE_EXECUTABLE_CODE_OVERHEAD_BYTES  # noqa: E402
from tmd.tinymodels import text_embedding, text_expansion, text_similarity  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.localkube(nodes=2, node_cpus="2", node_memory="4Gi")]

WORKER_PORT = free_port()
GI = 1 << 30


@pytest.fixture(scope="module")
def es(localkube, kube, tmp_path_factory):
    install_crds(kube)
    work = tmp_path_factory.mktemp("inference")
    operator = start_operator(localkube.kubeconfig, work / "operator.log", WORKER_PORT)
    shim = ShimProcess(localkube.kubeconfig, work / "store", work / "shim.log", "--no-auth",
                       "--worker-port", str(WORKER_PORT)).start()
    client = Elasticsearch(shim.url, request_timeout=120)
    try:
        for tiny in (text_embedding("tiny_embed", dim=16), text_expansion("tiny_expand"),
                     text_similarity("tiny_rerank")):
            _upload(client, tiny)
        yield client
    finally:
        client.close()
        log = shim.output()
        assert shim.stop() == 0, log[-3000:]
        assert "Traceback" not in log, log[-5000:]
        assert operator.stop() == 0, operator.output()[-3000:]


def _upload(es: Elasticsearch, tiny) -> None:
    import base64
    model_id = tiny.config["model_id"]
    es.ml.put_trained_model(model_id=model_id, **{k: v for k, v in tiny.config.items() if k != "model_id"})
    definition = tiny.definition()
    es.ml.put_trained_model_definition_part(model_id=model_id, part=0, definition=base64.b64encode(definition).decode(),
                                            total_definition_length=len(definition), total_parts=1)
    es.ml.put_trained_model_vocabulary(model_id=model_id, **tiny.vocabulary)


def test_trained_models_stats_without_an_id(es):
    """The first call of every dashboard: `_stats` is the stats API, not a model named `_stats`."""
    stats = es.ml.get_trained_models_stats()
    assert stats["count"] == 3
    assert {s["model_id"] for s in stats["trained_model_stats"]} == {"tiny_embed", "tiny_expand", "tiny_rerank"}
    assert es.ml.get_trained_models_stats(model_id="tiny_e*")["count"] == 2


def test_ml_info_limits_come_from_the_ml_nodes(es):
    info = es.ml.info()
    limits = info["limits"]
    # two ML nodes of 2 CPUs and 4Gi, nothing else requesting on them
    assert limits["total_ml_processors"] == 4 and limits["max_single_ml_node_processors"] == 2
    # largest node's ML memory less the native code (30mb) and process (10mb) overheads
    assert limits["effective_max_model_memory_limit"] == f"{(4 * GI - NATIVE_EXECUTABLE_CODE_OVERHEAD_BYTES) // MB - 10}mb"
    assert limits["total_ml_memory"] == f"{8 * GI // MB}mb"
    assert "max_model_memory_limit" not in limits
    assert info["upgrade_mode"] is False and info["native_code"]["version"] == "9.1.0"
    assert info["defaults"]["anomaly_detectors"]["model_memory_limit"] == "1gb"
    # what Kibana's trained models page reads besides: the ML nodes' os info, keyed as memory stats are
    nodes = es.nodes.info(node_id="ml:true", metric="os")["nodes"]
    assert set(nodes) == set(es.ml.get_memory_stats()["nodes"]) and len(nodes) == 2
    assert all(n["os"]["allocated_processors"] == 2 and n["roles"] == ["ml"] for n in nodes.values())


def test_inference_text_embedding_endpoint_lifecycle(es):
    created = es.inference.put(task_type="text_embedding", inference_id="my-embed", inference_config={
        "service": "elasticsearch", "service_settings": {"model_id": "tiny_embed", "num_allocations": 1,
                                                         "num_threads": 1}})
    assert created["inference_id"] == "my-embed" and created["task_type"] == "text_embedding"
    assert created["service_settings"] == {"num_allocations": 1, "num_threads": 1, "model_id": "tiny_embed",
                                           "dimensions": 16, "similarity": "cosine", "element_type": "float"}
    # a deployment as `_start` creates it: id = the inference id, started
    stats = es.ml.get_trained_models_stats(model_id="tiny_embed")["trained_model_stats"][0]["deployment_stats"]
    assert stats["deployment_id"] == "my-embed" and stats["state"] == "started"
    memory = es.ml.get_memory_stats()
    assert len(memory["nodes"]) == 2
    used = [n for n in memory["nodes"].values() if n["mem"]["ml"]["native_inference_in_bytes"] > 0]
    assert len(used) == 1 and used[0]["mem"]["ml"]["native_code_overhead_in_bytes"] == NATIVE_EXECUTABLE_CODE_OVERHEAD_BYTES
    assert all(n["mem"]["total_in_bytes"] == 4 * GI and n["mem"]["ml"]["max_in_bytes"] == 4 * GI
               for n in memory["nodes"].values())
    # the node id joins the two APIs (Kibana's ML node overview matches deployment_stats.nodes[].node keys)
    (route,) = stats["nodes"]
    assert [k for k, n in memory["nodes"].items() if n is used[0]] == list(route["node"])
    one = es.ml.get_memory_stats(node_id=used[0]["name"])
    assert list(one["nodes"].values())[0]["name"] == used[0]["name"] and one["_nodes"]["total"] == 1

    result = es.inference.inference(inference_id="my-embed", input=["these are my words", "words"])
    vectors = [e["embedding"] for e in result["text_embedding"]]
    assert len(vectors) == 2 and all(len(v) == 16 for v in vectors) and vectors[0] != vectors[1]
    field = es.ml.get_trained_models(model_id="tiny_embed")["trained_model_configs"][0]["input"]["field_names"][0]
    direct = es.ml.infer_trained_model(model_id="my-embed", docs=[{field: "words"}])
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in
               zip(direct["inference_results"][0]["predicted_value"], vectors[1]))

    updated = es.inference.update(inference_id="my-embed", inference_config={"service_settings": {"num_allocations": 2}})
    assert updated["service_settings"]["num_allocations"] == 2
    stats = es.ml.get_trained_models_stats(model_id="tiny_embed")["trained_model_stats"][0]["deployment_stats"]
    assert stats["number_of_allocations"] == 2
    assert es.inference.get(inference_id="my-embed")["endpoints"][0]["service_settings"]["num_allocations"] == 2
    assert es.inference.get(inference_id="my-embed")["endpoints"][0]["service"] == "elasticsearch"
    assert [e["inference_id"] for e in es.inference.get()["endpoints"]] == ["my-embed"]
    with pytest.raises(BadRequestError) as err:
        es.inference.inference(task_type="sparse_embedding", inference_id="my-embed", input="x")
    assert err.value.body["error"]["reason"] == ("Incompatible task_type, the requested type [sparse_embedding] does "
                                                 "not match the model type [text_embedding]")
    with pytest.raises(BadRequestError) as err:
        es.inference.put(task_type="text_embedding", inference_id="my-embed", inference_config={
            "service": "elasticsearch", "service_settings": {"model_id": "tiny_embed", "num_allocations": 1,
                                                             "num_threads": 1}})
    assert "must be unique" in err.value.body["error"]["reason"]

    assert es.inference.delete(inference_id="my-embed")["acknowledged"] is True
    with pytest.raises(NotFoundError) as err:
        es.inference.get(inference_id="my-embed")
    assert err.value.body["error"]["reason"] == "Inference endpoint not found [my-embed]"
    with pytest.raises(NotFoundError):  # not answered from the shim's short-lived endpoint cache
        es.inference.inference(inference_id="my-embed", input="words")
    assert "deployment_stats" not in es.ml.get_trained_models_stats(model_id="tiny_embed")["trained_model_stats"][0]


def test_sparse_embedding_and_rerank(es):
    es.inference.put(task_type="sparse_embedding", inference_id="my-sparse", inference_config={
        "service": "elasticsearch", "service_settings": {"model_id": "tiny_expand", "num_allocations": 1,
                                                         "num_threads": 1}})
    es.inference.put(task_type="rerank", inference_id="my-rerank", inference_config={
        "service": "elasticsearch", "service_settings": {"model_id": "tiny_rerank", "num_allocations": 1,
                                                         "num_threads": 1}})
    try:
        sparse = es.inference.sparse_embedding(inference_id="my-sparse", input="these are my words")
        (only,) = sparse["sparse_embedding"]
        assert only["is_truncated"] is False and only["embedding"] and all(w == 1.0 for w in only["embedding"].values())

        ranked = es.inference.rerank(inference_id="my-rerank", query="football match",
                                     input=["the election vote", "a football goal"])
        assert [d["index"] for d in ranked["rerank"]] == [1, 0]
        assert ranked["rerank"][0]["text"] == "a football goal"
        assert ranked["rerank"][0]["relevance_score"] > ranked["rerank"][1]["relevance_score"]
        top = es.inference.rerank(inference_id="my-rerank", query="football", input=["vote", "goal"], top_n=1,
                                  return_documents=False)
        assert len(top["rerank"]) == 1 and top["rerank"][0]["index"] == 1 and "text" not in top["rerank"][0]
        with pytest.raises(BadRequestError) as err:
            es.inference.rerank(inference_id="my-rerank", input=["a"], query="")
        assert err.value.body["error"]["reason"] == \
            "Validation Failed: 1: Field [query] cannot be empty for task type [rerank];"
        kinds = {e["inference_id"]: e["task_type"] for e in es.inference.get(inference_id="_all")["endpoints"]}
        assert kinds == {"my-rerank": "rerank", "my-sparse": "sparse_embedding"}
        assert [e["inference_id"] for e in es.inference.get(task_type="rerank", inference_id="_all")["endpoints"]] \
            == ["my-rerank"]
    finally:
        es.inference.delete(inference_id="my-sparse")
        es.inference.delete(inference_id="my-rerank")


def test_kibana_trained_models_page_calls(es):
    """The Elasticsearch calls Kibana's trained models page makes (models_provider.ts
    getTrainedModelList, memory_usage.ts getNodesOverview, the start dialog's ml info), in its
    order, and the joins it does over their answers."""
    es.inference.put(task_type="sparse_embedding", inference_id="kibana-sparse", inference_config={
        "service": "elasticsearch", "service_settings": {"model_id": "tiny_expand", "num_allocations": 1,
                                                         "num_threads": 1}})
    try:
        configs = es.ml.get_trained_models(size=1000)["trained_model_configs"]
        endpoints = es.inference.get(inference_id="_all")["endpoints"]
        by_model = {e["service_settings"]["model_id"]: e["inference_id"] for e in endpoints
                    if e["service"] in ("elser", "elasticsearch")}
        assert by_model == {"tiny_expand": "kibana-sparse"}
        stats = es.ml.get_trained_models_stats(size=1000)["trained_model_stats"]
        assert {c["model_id"] for c in configs} == {s["model_id"] for s in stats}
        deployed = [s for s in stats if s.get("deployment_stats")]
        assert [s["deployment_stats"]["deployment_id"] for s in deployed] == ["kibana-sparse"]
        nodes = es.perform_request("GET", "/_nodes/ml:true/os", headers={"accept": "application/json"}).body
        assert len(nodes["nodes"]) == 2 and all("arch" in n["os"] for n in nodes["nodes"].values())
        limits = es.ml.info()["limits"]
        assert limits["max_single_ml_node_processors"] == 2
        memory = es.ml.get_memory_stats()["nodes"]
        ml_nodes = [node_id for node_id, n in memory.items() if "ml" in n["roles"]]
        allocated = {node_id for s in deployed for n in s["deployment_stats"]["nodes"] for node_id in n["node"]}
        assert allocated and allocated <= set(ml_nodes)
        assert all(memory[n]["mem"]["ml"]["native_inference_in_bytes"] > 0 for n in allocated)
    finally:
        es.inference.delete(inference_id="kibana-sparse")


def test_put_errors_as_elasticsearch_words_them(es):
    def refusal(**kw) -> tuple[int, str]:
        with pytest.raises((BadRequestError, NotFoundError)) as err:
            es.inference.put(**kw)
        return err.value.meta.status, err.value.body["error"]["reason"]

    settings = {"model_id": "tiny_expand", "num_allocations": 1, "num_threads": 1}
    assert refusal(task_type="text_embedding", inference_id="x1",
                   inference_config={"service": "elasticsearch", "service_settings": settings}) == \
        (400, "Deployed model [tiny_expand] with type [text_expansion] does not match the requested task type "
              "[text_embedding]")
    assert refusal(task_type="sparse_embedding", inference_id="x1",
                   inference_config={"service": "openai", "service_settings": settings}) == \
        (400, "Unknown service [openai]")
    assert refusal(task_type="sparse_embedding", inference_id="x1",
                   inference_config={"service": "elasticsearch",
                                     "service_settings": {**settings, "model_id": "missing"}}) == \
        (404, "Could not find trained model [missing]")
    assert refusal(task_type="sparse_embedding", inference_id="x1",
                   inference_config={"service": "elasticsearch", "service_settings": {"model_id": "tiny_expand"}}) \
        == (400, "Validation Failed: 1: [service_settings] does not contain the required setting [num_threads];2: "
                 "[service_settings] does not contain one of the required settings [num_allocations, "
                 "adaptive_allocations];")
    assert es.inference.get()["endpoints"] == []
