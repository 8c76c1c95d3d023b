"""The worker's HTTP API against real worker processes serving real TorchScript models."""

from __future__ import annotations

import os

import pytest

from tests.worker.conftest import Worker, start_all
from tmd.tinymodels import super_simple, text_embedding, text_expansion


@pytest.fixture(scope="module")
def served(workers, tmp_path_factory) -> dict[str, Worker]:
    root = tmp_path_factory.mktemp("models")
    simple = super_simple().write(root / "simple")
    embedding = text_embedding(dim=16).write(root / "embedding")
    expansion = text_expansion().write(root / "expansion")
    simple_w, embedding_w, expansion_w = start_all(workers, [
        (simple, ("--cache-size", "10kb"), {"TMD_LOW_PRIORITY": "true"}),
        (embedding, ("--allocations", "2", "--threads", "2"), None),
        (expansion, (), {"TMD_CACHE_SIZE": "0"}),
    ])
    return {"simple": simple_w, "embedding": embedding_w, "expansion": expansion_w}


def infer(worker: Worker, *docs: dict, **body) -> tuple[int, dict]:
    with worker.client() as c:
        r = c.post("/infer", json={"docs": list(docs), **body})
    return r.status_code, r.json()


def test_cache_hit_sequence(served) -> None:
    """es-api.md §5.5: cache 10kb; "words", "are", "words" → 3 inferences, 1 hit; clear; "words" → 4, 1."""
    w = served["simple"]
    for word in ("words", "are", "words"):
        status, body = infer(w, {"input": word})
        assert (status, body) == (200, {"inference_results": [{"predicted_value": [[1.0, 1.0]]}]})
    node = w.stats()["node"]
    assert (node["inference_count"], node["inference_cache_hit_count"]) == (3, 1)
    with w.client() as c:
        r = c.post("/cache/_clear")
    assert (r.status_code, r.json()) == (200, {"cleared": True})
    infer(w, {"input": "words"})
    stats = w.stats()
    assert (stats["node"]["inference_count"], stats["node"]["inference_cache_hit_count"]) == (4, 1)
    assert stats["deployment"]["cache_size"] == "10kb" and stats["deployment"]["inference_count"] == 4


def test_stats_fields(served) -> None:
    w = served["simple"]
    infer(w, {"input": "these are my words"})
    stats = w.stats()
    node, deployment = stats["node"], stats["deployment"]
    assert node["routing_state"] == {"routing_state": "started"}
    for name in ("average_inference_time_ms", "average_inference_time_ms_excluding_cache_hits", "last_access",
                 "start_time", "inference_cache_hit_count_last_minute"):
        assert name in node, name
    assert node["number_of_pending_requests"] == 0
    assert (node["threads_per_allocation"], node["number_of_allocations"]) == (1, 1)
    assert node["peak_throughput_per_minute"] >= node["inference_count"] or node["peak_throughput_per_minute"] > 0
    assert "throughput_last_minute" in node
    for absent in ("error_count", "rejected_execution_count", "timeout_count"):
        assert absent not in node and absent not in deployment
    assert deployment == {**deployment, "deployment_id": "test_model", "model_id": "test_model",
                          "queue_capacity": 1024, "priority": "low", "threads_per_allocation": 1,
                          "number_of_allocations": 1}


def test_default_cache_size_is_model_size_and_zero_disables(served) -> None:
    embedding, expansion = served["embedding"], served["expansion"]
    size = os.path.getsize(embedding.args[embedding.args.index("--model-dir") + 1] + "/model.pt")
    assert embedding.stats()["deployment"]["cache_size"] == f"{size}b"
    for _ in range(2):
        assert infer(expansion, {"input": "the cat"})[0] == 200
    stats = expansion.stats()
    assert stats["deployment"]["cache_size"] == "0" and stats["node"]["inference_cache_hit_count"] == 0


def test_result_shapes(served) -> None:
    status, body = infer(served["embedding"], {"input": "the cat sat"}, {"input": "on the mat"})
    assert status == 200 and len(body["inference_results"]) == 2
    for result in body["inference_results"]:
        vector = result["predicted_value"]
        assert len(vector) == 16 and all(isinstance(v, float) for v in vector)
    assert body["inference_results"][0] != body["inference_results"][1]
    status, body = infer(served["expansion"], {"input": "the cat"})
    assert status == 200
    weights = body["inference_results"][0]["predicted_value"]
    assert isinstance(weights, dict) and weights and all(v > 0 for v in weights.values())
    status, body = infer(served["embedding"], {"input": "the cat sat"}, inference_config={"text_embedding": {"results_field": "vec"}})
    assert status == 200 and set(body["inference_results"][0]) == {"vec"}


def test_multi_doc_results_in_order(served) -> None:
    w = served["embedding"]
    texts = ["one", "two", "three", "four", "five"]
    singles = [infer(w, {"input": t})[1]["inference_results"][0] for t in texts]
    status, body = infer(w, *({"input": t} for t in texts))
    assert status == 200 and body["inference_results"] == singles


@pytest.mark.parametrize("body, status, error_type, reason", [
    ({"docs": [{"text": "x"}]}, 400, "status_exception", "Input field [input] does not exist in the source document"),
    ({"docs": [{"input": 5}]}, 400, "status_exception", "Input value [5] for field [input] must be a string"),
    ({"docs": [{"input": "ok"}, {"input": ["a"]}]}, 400, "status_exception", "Input value [[a]] for field [input] must be a string"),
    ({"docs": []}, 400, "action_request_validation_exception", "Validation Failed: 1: at least one document is required;"),
    ({}, 400, "action_request_validation_exception", "Validation Failed: 1: at least one document is required;"),
    ({"docs": ["words"]}, 400, "parse_exception", None),
    ({"docs": [{"input": "x"}], "inference_config": {"ner": {}}}, 403, "status_exception",  # 403 as ES (tmd.api)
     "Trained model [test_model] is configured for task [pass_through] but called with task [ner]"),
    ({"docs": [{"input": "words " * 600}], "inference_config": {"pass_through": {"tokenization": {"bert": {"truncate": "none"}}}}},
     400, "status_exception", "Input too large. The tokenized input length [600] exceeds the maximum sequence length [512]"),
    ({"docs": [{"input": "x"}], "inference_config": {"no_such_task": {}}}, 400, "parse_exception", None),
    ({"docs": [{"input": "x"}], "inference_config": {"pass_through": {"bogus": 1}}}, 400, "parse_exception", None),
    ({"docs": [{"input": "x"}], "timeout": "soon"}, 400, "parse_exception", None),
    ({"docs": [{"input": "x"}], "extra": 1}, 400, "parse_exception", "[infer_trained_model_request] unknown field [extra]"),
])
def test_bad_input_gets_elasticsearch_errors(served, body, status, error_type, reason) -> None:
    with served["simple"].client() as c:
        r = c.post("/infer", json=body)
    assert r.status_code == status, r.text
    error = r.json()
    assert error["status"] == status and error["error"]["type"] == error_type
    assert error["error"]["root_cause"][0]["type"] == error_type
    if reason is not None:
        assert error["error"]["reason"] == reason
    assert r.headers["x-elastic-product"] == "Elasticsearch"


@pytest.mark.parametrize("method, path, content", [
    ("POST", "/infer", b'{"docs": [{"input": "x"}'),
    ("POST", "/infer", b"\xff\xfe\x00"),
    ("POST", "/infer", b""),
    ("POST", "/infer", b"[1, 2]"),
    ("POST", "/allocations", b'{"number_of_allocations": "many"}'),
    ("POST", "/allocations", b"{"),
    ("POST", "/batching", b"[16]"),
    ("POST", "/batching", b""),
    ("GET", "/infer", b""),
    ("GET", "/no/such/route", b""),
])
def test_malformed_requests_never_500(served, method, path, content) -> None:
    with served["simple"].client() as c:
        r = c.request(method, path, content=content, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["status"] == r.status_code and "reason" in r.json()["error"]
    assert r.headers["x-elastic-product"] == "Elasticsearch"


def test_health_readiness_metrics(served) -> None:
    w = served["simple"]
    with w.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"ready": True}
        metrics = c.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["x-elastic-product"] == "Elasticsearch"
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.text.splitlines() if line and not line.startswith("#")}
    count = w.stats()["node"]["inference_count"]
    assert lines['tmd_inference_total{deployment_id="test_model"}'] == count
    assert lines['tmd_queue_capacity{deployment_id="test_model"}'] == 1024


def test_low_priority_raises_nice_value(served) -> None:
    low, normal = served["simple"], served["embedding"]
    assert os.getpriority(os.PRIO_PROCESS, low.proc.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)
    assert os.getpriority(os.PRIO_PROCESS, normal.proc.pid) == os.getpriority(os.PRIO_PROCESS, 0)


def test_allocation_endpoint(served) -> None:
    w = served["embedding"]
    with w.client() as c:
        assert c.get("/allocations").json() == {"number_of_allocations": 2, "threads_per_allocation": 2}
        r = c.post("/allocations", json={"number_of_allocations": 3})
        assert (r.status_code, r.json()) == (200, {"number_of_allocations": 3, "threads_per_allocation": 2})
        bad = c.post("/allocations", json={"number_of_allocations": 0})
        assert bad.status_code == 400 and bad.json()["error"]["reason"] == (
            "Validation Failed: 1: [number_of_allocations] must be a positive integer;")
        c.post("/allocations", json={"number_of_allocations": 2})
    assert w.stats()["node"]["number_of_allocations"] == 2


def test_batching_endpoint_changes_the_knobs_live(served) -> None:
    w = served["embedding"]  # started with the defaults
    with w.client() as c:
        assert c.get("/batching").json() == {"max_batch_size": 16, "max_batch_delay": "0ms", "mode": "equal"}
        r = c.post("/batching", json={"max_batch_size": 4, "max_batch_delay": "5ms"})
        assert (r.status_code, r.json()) == (200, {"max_batch_size": 4, "max_batch_delay": "5ms", "mode": "equal"})
        assert c.post("/batching", json={"max_batch_size": 1}).json() == {
            "max_batch_size": 1, "max_batch_delay": "5ms", "mode": "none"}, "a field left out keeps its value"
        assert w.stats()["deployment"]["tmd_batching"] == {"max_batch_size": 1, "max_batch_delay": "5ms",
                                                           "mode": "none"}
        bad = c.post("/batching", json={"max_batch_size": 0, "max_batch_delay": "2s"})
        assert bad.status_code == 400 and bad.json()["error"]["reason"] == (
            "Validation Failed: 1: [tmd_batching.max_batch_size] must be between 1 and 1024;"
            "2: [tmd_batching.max_batch_delay] must be between 0ms and 1000ms;")
        shape = c.post("/batching", json={"max_batch_size": "4"})
        assert shape.status_code == 400 and shape.json()["error"]["type"] == "x_content_parse_exception"
        unknown = c.post("/batching", json={"size": 4})
        assert unknown.json()["error"]["reason"] == "[tmd_batching] unknown field [size]"
        assert c.get("/batching").json()["max_batch_size"] == 1, "a refused change changes nothing"
        c.post("/batching", json={"max_batch_size": 16, "max_batch_delay": "0ms"})


def test_prefix_is_prepended(served) -> None:
    w = served["embedding"]
    plain = infer(w, {"input": "football"})[1]["inference_results"][0]
    prefixed = infer(w, {"input": "football"}, prefix="query: ")[1]["inference_results"][0]
    spelled_out = infer(w, {"input": "query: football"})[1]["inference_results"][0]
    assert prefixed == spelled_out and prefixed != plain
