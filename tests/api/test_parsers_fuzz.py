"""Arbitrary input to the Elasticsearch parameter parsers: every outcome is a value or an
Elasticsearch error (a 4xx body for the user), never another exception (which would be a 500)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings, strategies as st

from tmd.api.deployment import START_PARAMS, parse_start_request
from tmd.api.errors import ElasticsearchError
from tmd.api.trained_model import parse_trained_model_config
from tmd.api.units import parse_byte_size, parse_time_value

json_scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
param_names = st.sampled_from(sorted(START_PARAMS)) | st.text(max_size=12)
unit_text = st.from_regex(r"-?[0-9]{0,6}(\.[0-9]{0,3})?\s?(b|kb|mb|gb|tb|pb|k|m|g|ms|s|h|d|nanos|micros|x)?",
                          fullmatch=True) | st.text(max_size=12)


def outcome(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except ElasticsearchError as err:
        assert 400 <= err.status < 500, err.body()
        assert err.reason
        return err


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(param_names, json_values, max_size=6) | st.none(),
       st.dictionaries(param_names, st.text(max_size=12), max_size=6))
def test_start_request_parsing_only_fails_with_elasticsearch_errors(body, query):
    outcome(parse_start_request, "model", body, query)


@settings(max_examples=300, deadline=None)
@given(unit_text)
def test_byte_sizes_and_time_values_only_fail_with_elasticsearch_errors(text):
    outcome(parse_byte_size, text, "cache_size")
    outcome(parse_time_value, text, "timeout")


tasks = st.sampled_from(["pass_through", "text_embedding", "text_expansion", "ner", "text_classification",
                         "zero_shot_classification", "fill_mask", "question_answering", "text_similarity", "nope"])


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "model_type": st.sampled_from(["pytorch", "tree_ensemble"]) | json_scalars,
    "inference_config": st.dictionaries(tasks, json_values | st.fixed_dictionaries(
        {}, optional={"tokenization": st.dictionaries(st.sampled_from(["bert", "mpnet", "roberta", "x"]), json_values,
                                                     max_size=2)}), max_size=2) | json_scalars,
    "input": json_values, "tags": json_values, "description": json_values, "metadata": json_values,
    "prefix_strings": json_values,
}))
def test_model_config_parsing_only_fails_with_elasticsearch_errors(body):
    outcome(parse_trained_model_config, body, model_id="m")
