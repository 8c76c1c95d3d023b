"""Regression tests for the bad input the fuzzer (test_shim_fuzz.py) found, one per finding.

Each request here is refused while it is parsed, before the shim asks Kubernetes anything, so
the app runs in-process with a real Kubernetes client aimed at a closed port: a request that got
as far as the cluster would fail differently (and loudly), not pass.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from kubernetes import client

from tmd.shim.app import create_app
from tmd.shim.kube import ShimKube
from tmd.shim.service import Shim, ShimSettings
from tmd.store.directory import DirectoryStore

M = "/_ml/trained_models"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    unreachable = client.Configuration(host="http://127.0.0.1:9")  # discard port: nothing answers
    shim = Shim(ShimSettings(store_root=str(tmp_path_factory.mktemp("store"))),
                ShimKube("default", client.ApiClient(unreachable)), DirectoryStore(str(tmp_path_factory.mktemp("s"))))
    return create_app(shim)


def call(app: Any, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://shim") as c:
            content = None if body is None else json.dumps(body)
            return await c.request(method, path, content=content,
                                   headers={"content-type": "application/json"} if content else {}, **kw)
    return asyncio.run(go())


def es_error(response: httpx.Response, status: int, type_: str, reason: str | None = None) -> dict[str, Any]:
    body = response.json()
    assert response.status_code == status, body
    assert body["status"] == status and body["error"]["type"] == type_, body
    assert body["error"]["root_cause"][0]["type"] == type_
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    if reason is not None:
        assert body["error"]["reason"] == reason
    return body


def test_update_checks_adaptive_allocations_as_start_does(app):
    response = call(app, "POST", M + "/d/deployment/_update", {"adaptive_allocations": {
        "enabled": True, "min_number_of_allocations": 4, "max_number_of_allocations": 2}, "number_of_allocations": 0})
    es_error(response, 400, "action_request_validation_exception",
             "Validation Failed: 1: [number_of_allocations] must be a positive integer;"
             "2: [number_of_allocations] cannot be set if adaptive allocations is enabled;"
             "3: [min_number_of_allocations] must not be larger than [max_number_of_allocations];")


def test_update_with_adaptive_allocations_not_an_object_is_a_parse_error_not_a_500(app):
    # was: AttributeError 'list' object has no attribute 'get' -> 500
    response = call(app, "POST", M + "/d/deployment/_update",
                    {"adaptive_allocations": [None, None], "number_of_allocations": 1})
    es_error(response, 400, "x_content_parse_exception",
             "[update_trained_model_deployment] failed to parse field [adaptive_allocations]")


def test_update_checks_tmd_batching_as_start_does(app):
    response = call(app, "POST", M + "/d/deployment/_update",
                    {"tmd_batching": {"max_batch_size": 2000, "max_batch_delay": "1h"}})
    es_error(response, 400, "action_request_validation_exception",
             "Validation Failed: 1: [tmd_batching.max_batch_size] must be between 1 and 1024;"
             "2: [tmd_batching.max_batch_delay] must be whole milliseconds or seconds (e.g. 2ms), got [1h];")
    es_error(call(app, "POST", M + "/d/deployment/_update", {"tmd_batching": 16}), 400, "x_content_parse_exception",
             "[update_trained_model_deployment] failed to parse field [tmd_batching]")


@pytest.mark.parametrize("body, field", [({"finish_pending_work": {}}, "finish_pending_work"),
                                         ({"force": "yes"}, "force"), ({"allow_no_match": 3}, "allow_no_match")])
def test_stop_body_booleans_are_parsed_even_when_the_query_repeats_them(app, body, field):
    # was: the query value replaced the body's, so `{"finish_pending_work": {}}` stopped deployments
    response = call(app, "POST", M + f"/d/deployment/_stop?{field}=true", body)
    es_error(response, 400, "illegal_argument_exception")


def test_stop_body_unknown_field_and_non_string_id(app):
    es_error(call(app, "POST", M + "/d/deployment/_stop", {"bogus": 1}), 400, "x_content_parse_exception",
             "[stop_trained_model_deployment] unknown field [bogus]")
    es_error(call(app, "POST", M + "/d/deployment/_stop", {"id": 5}), 400, "x_content_parse_exception")
    es_error(call(app, "POST", M + "/d/deployment/_stop?finish_pending_work=true", {"finish_pending_work": None}),
             400, "x_content_parse_exception", "[stop_trained_model_deployment] failed to parse field "
             "[finish_pending_work]")


@pytest.mark.parametrize("name", ["pretty", "human", "error_trace"])
def test_global_boolean_parameters_must_be_booleans(app, name):
    # was: any value accepted (and `pretty=false` indented the answer)
    es_error(call(app, "GET", f"/?{name}=nope"), 400, "illegal_argument_exception",
             "Failed to parse value [nope] as only [true] or [false] are allowed.")
    assert call(app, "GET", f"/?{name}=").status_code == 200  # a bare flag is true


def test_pretty_false_is_not_pretty(app):
    assert "\n" not in call(app, "GET", "/?pretty=false").text
    assert "\n" in call(app, "GET", "/?pretty=true").text


@pytest.mark.parametrize("query", ["decompress_definition=maybe", "exclude_generated=1",
                                   "include_model_definition=yes"])
def test_ignored_boolean_parameters_are_still_parsed(app, query):
    # was: accepted whatever their value; Elasticsearch parses them with paramAsBoolean
    es_error(call(app, "GET", M + f"?{query}"), 400, "illegal_argument_exception")


@pytest.mark.parametrize("query, reason", [
    ("size=-211", "Parameter [size] cannot be < 0"),
    ("from=-1", "Parameter [from] cannot be < 0"),
    ("size=362498955925720465408", "Failed to parse int parameter [size] with value [362498955925720465408]"),
    ("from=1_000", "Failed to parse int parameter [from] with value [1_000]"),
    ("size=%D9%A1", "Failed to parse int parameter [size] with value [\u0661]"),
])
def test_page_parameters_like_elasticsearch(app, query, reason):
    # was: negative sizes sliced from the end, Python int() syntax and unbounded integers accepted
    for path in (M, M + "/_stats", "/_cat/ml/trained_models"):
        es_error(call(app, "GET", f"{path}?{query}"), 400, "illegal_argument_exception", reason)


def test_wrong_method_names_the_allowed_ones_and_sets_allow(app):
    # was: 405 without the Allow header and without Elasticsearch's ", allowed: [...]"
    response = call(app, "PUT", M + "/x/deployment/_start")
    es_error(response, 405, "exception",
             "Incorrect HTTP method for uri [/_ml/trained_models/x/deployment/_start] and method [PUT], "
             "allowed: [POST]")
    assert response.headers["allow"] == "POST"
    assert call(app, "DELETE", "/").headers["allow"] == "GET,HEAD"


@pytest.mark.parametrize("path", [M + "/d/deployment/_stop", M + "/m/deployment/_start", M + "/d/deployment/_update"])
@pytest.mark.parametrize("raw", [b"null", b"[]", b"3"])
def test_a_body_that_is_not_an_object_is_refused(app, path, raw):
    # was: `null` read as "no body", so a stop with body `null` stopped deployments
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shim") as c:
            return await c.post(path, content=raw, headers={"content-type": "application/json"})
    es_error(asyncio.run(go()), 400, "parse_exception", "request body must be an object")
