import pytest

from tmd.api.deployment import DeploymentSpec, Priority, TmdBatching, WaitFor, parse_start_request, parse_update_request
from tmd.api.errors import IllegalArgument, ParseError, ValidationFailed


def test_defaults():
    req = parse_start_request("test_model", None, {})
    spec = req.spec
    assert (spec.model_id, spec.deployment_id) == ("test_model", "test_model")
    assert (spec.number_of_allocations, spec.threads_per_allocation, spec.queue_capacity) == (1, 1, 1024)
    assert spec.priority is Priority.normal and spec.cache_size is None
    assert req.timeout.seconds == 30 and req.wait_for is WaitFor.started


def test_query_overrides_body_and_legacy_names_are_read():
    req = parse_start_request("m", {"number_of_allocations": 4, "inference_threads": 2, "cache_size": "1mb"},
                              {"number_of_allocations": "2", "deployment_id": "d1"})
    assert req.spec.number_of_allocations == 2
    assert req.spec.threads_per_allocation == 2
    assert req.spec.deployment_id == "d1"
    assert req.spec.cache_size == "1mb"


def test_cache_size_is_echoed_as_given_or_defaults_to_model_size():
    assert parse_start_request("m", None, {"cache_size": "10kb"}).spec.cache_size_value(1630).text == "10kb"
    assert parse_start_request("m", None, {"cache_size": "0"}).spec.cache_size_value(1630).text == "0"
    assert parse_start_request("m", None, {}).spec.cache_size_value(1630).text == "1630b"


@pytest.mark.parametrize(
    "query, messages",
    [
        ({"number_of_allocations": "0"}, ["[number_of_allocations] must be a positive integer"]),
        ({"threads_per_allocation": "3"}, ["[threads_per_allocation] must be a power of 2 less than or equal to 32"]),
        ({"threads_per_allocation": "64"}, ["[threads_per_allocation] must be a power of 2 less than or equal to 32"]),
        ({"threads_per_allocation": "0"}, ["[threads_per_allocation] must be a positive integer"]),
        ({"queue_capacity": "0"}, ["[queue_capacity] must be a positive integer"]),
        ({"queue_capacity": "1000001"}, ["[queue_capacity] must be less than 1000000"]),
        ({"timeout": "0s"}, ["[timeout] must be positive"]),
        ({"priority": "low", "number_of_allocations": "3"}, ["[number_of_allocations] must be 1 when [priority] is low"]),
        ({"priority": "low", "threads_per_allocation": "4"}, ["[threads_per_allocation] must be 1 when [priority] is low"]),
        ({"number_of_allocations": "0", "queue_capacity": "0", "threads_per_allocation": "5"},
         ["[number_of_allocations] must be a positive integer",
          "[threads_per_allocation] must be a power of 2 less than or equal to 32",
          "[queue_capacity] must be a positive integer"]),
    ],
)
def test_validation_messages_are_collected(query, messages):
    with pytest.raises(ValidationFailed) as err:
        parse_start_request("m", None, query)
    assert err.value.messages == messages
    assert err.value.reason == "Validation Failed: " + "".join(f"{i}: {m};" for i, m in enumerate(messages, 1))


def test_inconsistent_model_id():
    with pytest.raises(ValidationFailed, match="Inconsistent model_id; 'other' specified in the body differs from 'm'"):
        parse_start_request("m", {"model_id": "other"}, {})


def test_bad_values():
    with pytest.raises(IllegalArgument, match=r"must be one of \[started, starting, fully_allocated$"):
        parse_start_request("m", None, {"wait_for": "done"})
    with pytest.raises(IllegalArgument, match="Failed to parse int parameter"):
        parse_start_request("m", None, {"number_of_allocations": "many"})
    with pytest.raises(IllegalArgument, match="No enum constant"):
        parse_start_request("m", None, {"priority": "urgent"})
    with pytest.raises(ParseError, match="unknown field"):
        parse_start_request("m", {"bogus": 1}, {})
    with pytest.raises(ParseError, match="failed to parse field"):
        parse_start_request("m", {"number_of_allocations": "2"}, {})


@pytest.mark.parametrize("field", ["deployment_id", "priority", "cache_size", "timeout", "wait_for"])
def test_string_fields_refuse_arrays_and_objects(field):
    # found by hypothesis (test_parsers_fuzz.py): {"deployment_id": []} escaped as a pydantic error
    for value in ([], {}, ["x"]):
        with pytest.raises(ParseError, match=rf"failed to parse field \[{field}\]"):
            parse_start_request("m", {field: value}, {})


def test_string_fields_read_scalars_as_text_and_null_as_unset():
    request = parse_start_request("m", {"deployment_id": 12, "cache_size": 0, "priority": None}, {})
    assert (request.spec.deployment_id, request.spec.cache_size, request.spec.priority) == ("12", "0", Priority.normal)


def test_adaptive_allocations():
    req = parse_start_request("m", {"adaptive_allocations": {"enabled": True, "min_number_of_allocations": 2,
                                                             "max_number_of_allocations": 4}}, {})
    assert req.spec.number_of_allocations == 2
    assert req.spec.adaptive_allocations.to_es() == {"enabled": True, "min_number_of_allocations": 2,
                                                     "max_number_of_allocations": 4}
    with pytest.raises(ValidationFailed, match="cannot be set if adaptive allocations is enabled"):
        parse_start_request("m", {"adaptive_allocations": {"enabled": True}, "number_of_allocations": 2}, {})
    with pytest.raises(ValidationFailed, match="must not be larger than"):
        parse_start_request("m", {"adaptive_allocations": {"min_number_of_allocations": 5,
                                                           "max_number_of_allocations": 2}}, {})


def test_spec_schema_carries_limits_for_the_crd():
    schema = DeploymentSpec.model_json_schema()
    assert schema["properties"]["threads_per_allocation"]["maximum"] == 32
    assert schema["properties"]["queue_capacity"]["maximum"] == 1_000_000


def test_tmd_batching_extension_is_parsed_validated_and_optional():
    from tmd.api.deployment import DEFAULT_MAX_BATCH_SIZE

    assert parse_start_request("m", None, {}).spec.tmd_batching is None
    spec = parse_start_request("m", {"tmd_batching": {"max_batch_size": 8}}, {}).spec
    assert spec.tmd_batching == TmdBatching(max_batch_size=8)
    assert parse_start_request("m", {"tmd_batching": {}}, {}).spec.tmd_batching.max_batch_size == DEFAULT_MAX_BATCH_SIZE
    with pytest.raises(ValidationFailed) as err:
        parse_start_request("m", {"tmd_batching": {"max_batch_size": 2000, "max_batch_delay": "5s"}}, {})
    assert err.value.reason == ("Validation Failed: 1: [tmd_batching.max_batch_size] must be between 1 and 1024;"
                                "2: [tmd_batching.max_batch_delay] must be between 0ms and 1000ms;")
    for bad in ([], {"max_batch_size": "8"}, {"max_batch_size": True}, {"max_batch_delay": 5}):
        with pytest.raises(ParseError, match="failed to parse field \\[tmd_batching\\]"):
            parse_start_request("m", {"tmd_batching": bad}, {})
    with pytest.raises(ParseError, match="\\[tmd_batching\\] unknown field \\[size\\]"):
        parse_start_request("m", {"tmd_batching": {"size": 8}}, {})


def test_update_takes_tmd_batching_alone_or_with_allocations_and_checks_it_as_start_does():
    alone = parse_update_request({"tmd_batching": {"max_batch_delay": "5ms"}}, {})
    assert (alone.number_of_allocations, alone.adaptive_given) == (None, False)
    current = TmdBatching(max_batch_size=4, max_batch_delay="0ms")
    assert alone.batching(current) == TmdBatching(max_batch_size=4, max_batch_delay="5ms"), "left out: kept"
    both = parse_update_request({"number_of_allocations": 2, "tmd_batching": {"max_batch_size": 1}}, {})
    assert both.number_of_allocations == 2 and both.batching(current) == TmdBatching(max_batch_size=1)
    assert parse_update_request({"number_of_allocations": 2}, {}).batching(current) is None
    with pytest.raises(ValidationFailed) as err:
        parse_update_request({"number_of_allocations": 0, "tmd_batching": {"max_batch_size": 0,
                                                                            "max_batch_delay": "2s"}}, {})
    assert err.value.reason == ("Validation Failed: 1: [number_of_allocations] must be a positive integer;"
                                "2: [tmd_batching.max_batch_size] must be between 1 and 1024;"
                                "3: [tmd_batching.max_batch_delay] must be between 0ms and 1000ms;")
    for bad in ([1], "16", {"max_batch_size": "8"}, {"max_batch_size": True}, {"max_batch_delay": 5}):
        with pytest.raises(ParseError, match="\\[update_trained_model_deployment\\] failed to parse field "
                                             "\\[tmd_batching\\]"):
            parse_update_request({"tmd_batching": bad}, {})
    with pytest.raises(ParseError, match="\\[tmd_batching\\] unknown field \\[size\\]"):
        parse_update_request({"tmd_batching": {"size": 8}}, {})
    with pytest.raises(ValidationFailed, match="Either \\[number_of_allocations\\] or \\[adaptive_allocations\\] "
                                               "must be provided"):
        parse_update_request({"tmd_batching": None}, {})
    with pytest.raises(ParseError, match="unknown field \\[threads_per_allocation\\]"):
        parse_update_request({"threads_per_allocation": 2}, {})
