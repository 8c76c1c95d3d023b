"""The `_inference` API's pure pieces: task types, service settings, request validation and the
result shapes, with Elasticsearch's texts (ServiceUtils, InferenceAction, ElasticsearchInternalService)."""

from __future__ import annotations

import pytest

from tmd.api.errors import ElasticsearchError, ParseError, ValidationFailed
from tmd.shim.inference_api import (attached_settings, embedding_settings, endpoint_view, parse_put_config,
                                   parse_put_head, start_body, inference_results, java_map, model_task_type,
                                   parse_infer_body, parse_service_settings, parse_task_type, resolve_task_type,
                                   task_of, unknown_settings)


def reason(fn, *args) -> str:
    with pytest.raises(ElasticsearchError) as err:
        fn(*args)
    return err.value.reason


def test_task_types():
    assert task_of(None) == "any" and task_of("Text_Embedding") == "text_embedding"
    assert reason(parse_task_type, "embeddings") == "Unknown task_type [embeddings]"
    assert resolve_task_type("rerank", None) == "rerank" and resolve_task_type("any", "rerank") == "rerank"
    assert reason(resolve_task_type, "any", None) == "model is missing required setting [task_type]"
    assert reason(resolve_task_type, "rerank", "any") == "task_type [any] is not valid type for inference"
    assert reason(resolve_task_type, "rerank", "text_embedding") == \
        "Cannot resolve conflicting task_type parameter in the request URL [rerank] and the request body [text_embedding]"


def test_service_settings_collect_every_error():
    with pytest.raises(ValidationFailed) as err:
        parse_service_settings({"num_allocations": 0, "num_threads": "2", "model_id": ""})
    assert err.value.messages == [
        "[service_settings] Invalid value [0]. [num_allocations] must be a positive integer",
        "field [num_threads] is not of the expected type. The value [2] cannot be converted to a [Integer]",
        "[service_settings] Invalid value empty string. [model_id] must be a non-empty string",
        "[service_settings] does not contain one of the required settings [num_allocations, adaptive_allocations]"]
    settings, left = parse_service_settings({"model_id": "m", "num_threads": 2, "foo": 1,
                                             "adaptive_allocations": {"enabled": True, "max_number_of_allocations": 4}})
    assert settings == {"model_id": "m", "num_threads": 2,
                        "adaptive_allocations": {"enabled": True, "max_number_of_allocations": 4}}
    assert left == {"foo": 1}
    assert reason(unknown_settings, left) == \
        "Model configuration contains settings [{foo=1}] unknown to the [elasticsearch] service"
    assert java_map({"a": [1, True], "b": None}) == "{a=[1, true], b=null}"


def test_the_model_decides_the_task_type():
    embedding = {"spec": {"inference_config": {"text_embedding": {}}}}
    model_task_type("m", embedding, "text_embedding")
    assert reason(model_task_type, "m", embedding, "rerank") == \
        "Deployed model [m] with type [text_embedding] does not match the requested task type [rerank]"
    assert reason(model_task_type, "m", {"spec": {"inference_config": {"ner": {}}}}, "rerank") == \
        "Deployed model [m] has type [ner] which does not map to any supported task types"


def test_infer_request_validation():
    assert parse_infer_body("any", {"input": "one"})["input"] == ["one"]
    assert reason(parse_infer_body, "any", {"inputs": ["x"]}) == "[cluster:internal/xpack/inference] unknown field [inputs]"
    assert reason(parse_infer_body, "text_embedding", {}) == "Validation Failed: 1: Field [input] cannot be null;"
    assert reason(parse_infer_body, "text_embedding", {"input": []}) == \
        "Validation Failed: 1: Field [input] cannot be an empty array;"
    assert reason(parse_infer_body, "rerank", {"input": ["a"]}) == \
        "Validation Failed: 1: Field [query] cannot be null for task type [rerank];"
    assert reason(parse_infer_body, "sparse_embedding", {"input": ["a"], "top_n": 1}) == \
        "Validation Failed: 1: Field [top_n] cannot be specified for task type [sparse_embedding];"
    assert reason(parse_infer_body, "text_embedding", {"input": ["a"], "query": "q"}) == \
        "Validation Failed: 1: Field [query] cannot be specified for task type [text_embedding];"
    assert reason(parse_infer_body, "rerank", {"input": ["a"], "query": "q", "input_type": "search"}) == \
        "Validation Failed: 1: Field [input_type] cannot be specified for task type [rerank];"
    with pytest.raises(ParseError):
        parse_infer_body("any", {"input": [1]})


def test_result_shapes():
    assert inference_results("text_embedding", [{"predicted_value": [0.5, 1.0]}], "predicted_value", ["a"], True,
                             None) == {"text_embedding": [{"embedding": [0.5, 1.0]}]}
    assert inference_results("sparse_embedding", [{"out": {"a": 1.0}, "is_truncated": True}], "out", ["a"], True,
                             None) == {"sparse_embedding": [{"is_truncated": True, "embedding": {"a": 1.0}}]}
    ranked = inference_results("rerank", [{"predicted_value": 0.1}, {"predicted_value": 2.5}], "predicted_value",
                               ["x", "y"], True, None)
    assert ranked == {"rerank": [{"index": 1, "relevance_score": 2.5, "text": "y"},
                                 {"index": 0, "relevance_score": 0.1, "text": "x"}]}
    assert inference_results("rerank", [{"predicted_value": 0.1}, {"predicted_value": 2.5}], "predicted_value",
                             ["x", "y"], False, 1) == {"rerank": [{"index": 1, "relevance_score": 2.5}]}


def test_endpoint_view_reports_the_deployment_allocations():
    endpoint = {"inference_id": "e", "task_type": "rerank", "service": "elasticsearch",
                "service_settings": {"num_allocations": 1, "num_threads": 1, "model_id": "m"}, "task_settings": {}}
    view = endpoint_view(endpoint, {"spec": {"number_of_allocations": 3}})
    assert view == {"inference_id": "e", "task_type": "rerank", "service": "elasticsearch",
                    "service_settings": {"num_allocations": 3, "num_threads": 1, "model_id": "m"}, "task_settings": {}}


def test_embedding_settings_defaults_and_choices():
    left = {"similarity": "DOT_PRODUCT", "dimensions": 3, "other": 1}
    assert embedding_settings(left) == {"similarity": "dot_product", "element_type": "float"}
    assert left == {"other": 1}
    assert embedding_settings({}) == {"similarity": "cosine", "element_type": "float"}
    assert reason(embedding_settings, {"similarity": "hamming"}) == \
        "Validation Failed: 1: [service_settings] Invalid value [hamming] received. [similarity] must be one of " \
        "[cosine, dot_product, l2_norm];"


def test_put_checks_before_the_cluster():
    assert parse_put_head("any", "e", {"service": "elasticsearch", "task_type": "rerank", "x": 1}) == \
        ("rerank", {"x": 1})
    assert reason(parse_put_head, "rerank", ".elser-2-elasticsearch", {"service": "elasticsearch"}) == \
        "[.elser-2-elasticsearch] is a reserved inference ID. Cannot create a new inference endpoint with a reserved ID."
    assert reason(parse_put_head, "rerank", "e", {}) == \
        "Inference endpoint configuration is missing the [service] setting"
    assert reason(parse_put_head, "rerank", "e", {"service": "openai"}) == "Unknown service [openai]"


def test_put_config():
    raw, task, chunking = parse_put_config("sparse_embedding", {"service_settings": {"model_id": "m"}})
    assert (raw, task, chunking) == ({"model_id": "m"}, {}, {"strategy": "sentence", "max_chunk_size": 250,
                                                             "sentence_overlap": 1})
    assert parse_put_config("rerank", {"service_settings": {}, "task_settings": {"return_documents": False}})[1:] == \
        ({"return_documents": False}, None)
    assert reason(parse_put_config, "rerank", {}) == "Missing required field [service_settings]"
    assert reason(parse_put_config, "rerank", {"service_settings": {}, "chunking_settings": {}}) == \
        "Model configuration contains settings [{chunking_settings={}}] unknown to the [elasticsearch] service"
    assert reason(parse_put_config, "rerank", {"service_settings": {}, "task_settings": {"top_n": 3}}) == \
        "Model configuration contains settings [{top_n=3}] unknown to the [elasticsearch] service"


def test_attaching_to_a_deployment_takes_its_settings():
    deployment = {"spec": {"model_id": "m", "deployment_id": "d", "number_of_allocations": 2,
                           "threads_per_allocation": 4}}
    assert attached_settings("d", deployment, None) == {"num_allocations": 2, "num_threads": 4, "model_id": "m",
                                                        "deployment_id": "d"}
    assert reason(attached_settings, "d", None, None) == "Cannot find deployment [d]"
    assert reason(attached_settings, "d", deployment, "other") == \
        "Deployment [d] uses model [m] which does not match the model [other] in the request."
    assert start_body("e", {"num_threads": 2, "num_allocations": 3, "model_id": "m"}) == \
        {"deployment_id": "e", "threads_per_allocation": 2, "number_of_allocations": 3}
