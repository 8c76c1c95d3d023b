"""Response bodies from resources (assignment §3, stats §6, cat §1.13) and the HTTP conventions (§0)."""

from __future__ import annotations

import base64

import pytest

from tmd.api.errors import IllegalArgument, ParseError
from tmd.shim import views
from tmd.shim.auth import Authenticator, SecurityError, required_role
from tmd.shim.http import check_params, is_json_media_type, parse_body

MODEL = {"metadata": {"name": "test-model-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
         "spec": {"model_id": "test_model", "model_type": "pytorch",
                  "inference_config": {"pass_through": {"tokenization": {"bert": {"with_special_tokens": False}}}},
                  "input": {"field_names": ["input"]},
                  "definition": {"uri": "file:///x/model.pt", "sha256": "0" * 64, "total_definition_length": 1630}}}


def deployment(**status):
    return {"metadata": {"name": "d", "generation": 1, "creationTimestamp": "2026-01-01T00:00:01Z"},
            "spec": {"model_id": "test_model", "deployment_id": "d", "number_of_allocations": 2,
                     "threads_per_allocation": 1, "queue_capacity": 1024, "priority": "normal"},
            "status": {"observedGeneration": 1, **status}}


def test_model_config_echoes_defaults_and_stamps():
    body = views.model_config_body(MODEL, "9.1.0", include_definition_status=True)
    bert = body["inference_config"]["pass_through"]["tokenization"]["bert"]
    assert bert == {"do_lower_case": False, "with_special_tokens": False, "max_sequence_length": 512,
                    "truncate": "first", "span": -1}
    assert body["inference_config"]["pass_through"]["vocabulary"] == {"index": views.NATIVE_INDEX}
    assert body["fully_defined"] is True and body["model_size_bytes"] == 1630
    assert body["create_time"] == 1767225600000 and body["version"] == "9.1.0"


def test_assignment_shape_with_default_cache_size():
    dep = deployment(assignment_state="started", start_time="2026-01-01T00:00:02Z", max_assigned_allocations=2,
                     routing_table={"n2": {"current_allocations": 1, "target_allocations": 1, "routing_state": "started",
                                           "reason": ""},
                                    "n1": {"current_allocations": 1, "target_allocations": 1,
                                           "routing_state": "started"}})
    body = views.assignment_body(dep, MODEL)
    assert body["task_parameters"] == {"model_id": "test_model", "deployment_id": "d", "model_bytes": 1630,
                                       "threads_per_allocation": 1, "number_of_allocations": 2,
                                       "queue_capacity": 1024, "cache_size": "1630b", "priority": "normal",
                                       "per_deployment_memory_bytes": 0, "per_allocation_memory_bytes": 0}
    assert list(body["routing_table"]) == ["n1", "n2"] and "reason" not in body["routing_table"]["n2"]
    assert body["tmd_batching"] == {"max_batch_size": 16, "max_batch_delay": "0ms"}  # tmd extension: the defaults
    assert body["assignment_state"] == "started" and "reason" not in body


def test_deployment_stats_sums_nodes_and_omits_zero_counters():
    route = {"routing_state": "started", "current_allocations": 1}
    started = views.node_entry("n1", route, {"node": {"routing_state": {"routing_state": "started"},
                                                     "inference_count": 3, "inference_cache_hit_count": 1,
                                                     "peak_throughput_per_minute": 3}}, "10.0.0.1", 8080)
    starting = views.node_entry("n0", {"routing_state": "starting", "reason": ""}, None, None, 8080)
    stats = views.deployment_stats(deployment(assignment_state="started",
                                              allocation_status={"allocation_count": 1, "target_allocation_count": 2,
                                                                 "state": "started"}), MODEL, [started, starting])
    assert stats["inference_count"] == 3 and "error_count" not in stats
    assert stats["peak_throughput_per_minute"] == 3
    assert [next(iter(n["node"])) for n in stats["nodes"]] == ["n0", "n1"]
    assert stats["nodes"][0] == {"node": views.node_identity("n0", None, 8080), "routing_state":
                                 {"routing_state": "starting"}, "peak_throughput_per_minute": 0,
                                 "throughput_last_minute": 0}
    assert stats["nodes"][1]["node"]["n1"]["transport_address"] == "10.0.0.1:8080"
    elements = views.model_stats(MODEL, [stats])
    assert elements[0]["model_size_stats"] == {"model_size_bytes": 1630, "required_native_memory_bytes": 251661500}
    assert views.model_stats(MODEL, [])[0].get("deployment_stats") is None
    human = views.model_stats(MODEL, [], human=True)[0]["model_size_stats"]
    assert (human["model_size"], human["required_native_memory"]) == ("1.5kb", "240mb")


def test_cat_columns_and_aliases():
    assert views.cat_columns(None) == list(views.CAT_DEFAULT)
    assert views.cat_columns("id,l,dfid,ip") == ["id", "license", "data_frame.id", "ingest.pipelines"]
    with pytest.raises(IllegalArgument):
        views.cat_columns("nope")
    text = views.cat_text([views.cat_row(MODEL, "9.1.0")], ["id", "type"], header=True)
    assert text.splitlines() == ["id         type", "test_model pytorch"]


def test_vendor_media_types_are_json_and_unknown_params_rejected():
    assert is_json_media_type("application/vnd.elasticsearch+json; compatible-with=9")
    assert is_json_media_type("application/json; charset=utf-8")
    assert parse_body(b'{"a": 1}', "application/vnd.elasticsearch+json;compatible-with=8") == {"a": 1}
    with pytest.raises(IllegalArgument):
        parse_body(b"a=1", "application/x-www-form-urlencoded")
    with pytest.raises(ParseError):
        parse_body(b"{", "application/json")
    with pytest.raises(IllegalArgument, match=r"^request \[/x\] contains unrecognized parameter: \[b\]$"):
        check_params("/x", {"a": "1", "b": "2", "pretty": ""}, ["a"])


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_auth_roles_and_errors():
    auth = Authenticator({"users": {"elastic": {"password": "pw", "roles": ["admin"]},
                                    "reader": {"password": "r", "roles": ["user"]}},
                          "api_keys": {"k1": {"key": "secret", "name": "ci", "roles": ["user"]}}})
    admin = auth.authenticate(basic("elastic", "pw"), "/")
    auth.authorize(admin, "POST", "/_ml/trained_models/m/deployment/_start")
    reader = auth.authenticate("ApiKey " + base64.b64encode(b"k1:secret").decode(), "/")
    auth.authorize(reader, "POST", "/_ml/trained_models/m/_infer")
    auth.authorize(reader, "GET", "/_ml/trained_models/_stats")
    with pytest.raises(SecurityError) as err:
        auth.authorize(reader, "PUT", "/_ml/trained_models/m")
    assert err.value.status == 403 and err.value.body()["error"]["type"] == "security_exception"
    for header in (None, basic("elastic", "wrong"), "ApiKey " + base64.b64encode(b"k1:nope").decode(), "Bearer x"):
        with pytest.raises(SecurityError) as err:
            auth.authenticate(header, "/")
        assert err.value.status == 401 and "WWW-Authenticate" in err.value.headers
    assert required_role("POST", "/_ml/trained_models/m/deployment/_infer").value == "user"
    assert required_role("DELETE", "/_ml/trained_models/m").value == "admin"
    assert required_role("POST", "/_inference/text_embedding/e").value == "user"
    assert required_role("GET", "/_inference/_all").value == "user"
    assert required_role("PUT", "/_inference/text_embedding/e").value == "admin"
    assert required_role("PUT", "/_inference/e/_update").value == "admin"
    assert required_role("DELETE", "/_inference/e").value == "admin"


def test_worker_errors_pass_through_with_their_status_type_and_reason():
    from tmd.shim.service import worker_error

    body = {"error": {"root_cause": [], "type": "es_rejected_execution_exception",
                      "reason": "inference process queue is full. Unable to execute command"}, "status": 429}
    err = worker_error(body, 429)
    assert (err.status, err.type, err.reason) == (429, "es_rejected_execution_exception",
                                                  "inference process queue is full. Unable to execute command")
    assert err.body()["error"]["root_cause"][0]["type"] == "es_rejected_execution_exception"
    timeout = worker_error({"error": {"type": "status_exception", "reason": "timeout [1ms] waiting for inference "
                                      "result"}}, 408)
    assert (timeout.status, timeout.type) == (408, "status_exception")
    assert worker_error(None, 502).status == 502
