"""The trained-model configuration: defaults written back, Elasticsearch's validation texts, overrides."""

from __future__ import annotations

import pytest

from tmd.api.errors import ElasticsearchError, ValidationFailed
from tmd.api.trained_model import (
    TASK_TYPES,
    apply_inference_update,
    parse_inference_config,
    parse_tokenization,
    parse_trained_model_config,
)

BERT_DEFAULTS = {"do_lower_case": False, "with_special_tokens": True, "max_sequence_length": 512,
                 "truncate": "first", "span": -1}


def put(inference_config, **extra):
    return parse_trained_model_config({"model_type": "pytorch", "inference_config": inference_config, **extra},
                                      model_id="m")


def error_of(fn, *args, **kwargs) -> ElasticsearchError:
    with pytest.raises(ElasticsearchError) as err:
        fn(*args, **kwargs)
    return err.value


def test_nine_task_types():
    assert set(TASK_TYPES) == {"pass_through", "ner", "text_classification", "text_embedding", "fill_mask",
                               "zero_shot_classification", "question_answering", "text_expansion", "text_similarity"}


def test_defaults_filled_on_output():
    body = put({"pass_through": {}}).to_es()
    assert body == {
        "model_id": "m", "model_type": "pytorch",
        "inference_config": {"pass_through": {"tokenization": {"bert": BERT_DEFAULTS}}},
        "input": {"field_names": ["input"]}, "tags": [],
    }


def test_roberta_has_add_prefix_space_and_other_families_parse():
    assert put({"ner": {"tokenization": {"roberta": {}}}}).to_es()["inference_config"]["ner"]["tokenization"] == {
        "roberta": {**BERT_DEFAULTS, "add_prefix_space": False}}
    for kind in ("bert_ja", "mpnet", "xlm_roberta", "deberta_v2"):
        out = put({"text_embedding": {"tokenization": {kind: {"do_lower_case": True}}}}).to_es()
        assert out["inference_config"]["text_embedding"]["tokenization"] == {kind: {**BERT_DEFAULTS,
                                                                                     "do_lower_case": True}}


def test_full_config_round_trips():
    body = put({"text_classification": {"classification_labels": ["neg", "pos"], "results_field": "sentiment"}},
               description="d", tags=["a-tag"], metadata={"k": 1}, input={"field_names": ["text_field"]},
               prefix_strings={"search": "query: ", "ingest": "passage: "}).to_es()
    assert body["inference_config"]["text_classification"] == {
        "tokenization": {"bert": BERT_DEFAULTS}, "results_field": "sentiment",
        "classification_labels": ["neg", "pos"], "num_top_classes": -1}
    assert body["prefix_strings"] == {"search": "query: ", "ingest": "passage: "}
    assert body["input"] == {"field_names": ["text_field"]}
    assert (body["description"], body["tags"], body["metadata"]) == ("d", ["a-tag"], {"k": 1})
    assert parse_trained_model_config(body, for_creation=False).to_es() == body


@pytest.mark.parametrize("options, message", [
    ({"max_sequence_length": 0}, "[max_sequence_length] must be positive"),
    ({"span": -2}, "[span] must be non-negative to indicate span length or [-1] to indicate no windowing should "
                   "occur"),
    ({"truncate": "none", "span": 600}, "[span] provided [600] must not be greater than [max_sequence_length] "
                                        "provided [512]"),
    ({"span": 10}, "[span] must not be provided when [truncate] is [first]"),
])
def test_tokenization_validation_texts(options, message):
    err = error_of(parse_tokenization, {"bert": options})
    assert (err.status, err.type, err.reason) == (400, "illegal_argument_exception", message)


def test_truncate_values_and_span_with_none():
    for value in ("first", "second", "none", "balanced", "FIRST"):
        assert parse_tokenization({"bert": {"truncate": value}}).truncate == value.lower()
    assert parse_tokenization({"mpnet": {"truncate": "none", "span": 128}}).span == 128
    assert "Truncate.SIDEWAYS" in error_of(parse_tokenization, {"bert": {"truncate": "sideways"}}).reason


def test_unknown_tokenization_field_and_kind():
    assert error_of(parse_tokenization, {"bert": {"lowercase": True}}).reason == "[bert] unknown field [lowercase]"
    assert "Unknown tokenization type [gpt2]" in error_of(parse_tokenization, {"gpt2": {}}).reason


def test_inference_config_required_and_illegal_fields_reported_together():
    err = error_of(parse_trained_model_config, {"model_type": "pytorch", "created_by": "me", "version": "8.0.0",
                                                "metadata": {"model_aliases": ["x"]}}, model_id="m")
    assert isinstance(err, ValidationFailed) and err.status == 400
    assert err.type == "action_request_validation_exception"
    assert err.reason == ("Validation Failed: 1: [inference_config] must not be null.;"
                          "2: illegal to set [version] at inference model creation;"
                          "3: illegal to set [created_by] at inference model creation;"
                          "4: illegal to set [metadata.model_aliases] at inference model creation;")


def test_illegal_create_time_license_location():
    err = error_of(put, {"pass_through": {}}, create_time=1, license_level="basic", location={"index": {}})
    assert err.messages == [f"illegal to set [{f}] at inference model creation"
                            for f in ("create_time", "license_level", "location")]


def test_invalid_model_id_and_tags():
    err = error_of(parse_trained_model_config, {"model_type": "pytorch", "inference_config": {"ner": {}},
                                                "tags": ["Bad Tag", "m"]}, model_id="Bad_Id")
    assert err.messages[0].startswith("Invalid model_id; 'Bad_Id' can contain lowercase alphanumeric")
    assert err.messages[1].startswith("Invalid tags [Bad Tag]; must only can contain lowercase alphanumeric")


def test_input_field_names_checks():
    err = error_of(put, {"ner": {}}, input={"field_names": []})
    assert err.messages == ["[input.field_names] must not be empty"]
    err = error_of(put, {"ner": {}}, input={"field_names": ["a..b"]})
    assert err.messages == ["[input.field_names] must only contain valid dot delimited field names"]
    assert put({"ner": {}}, input={"field_names": ["body.text", "other"]}).input_field == "body.text"


def test_stored_config_tolerates_server_fields():
    stored = {**put({"pass_through": {}}).to_es(), "created_by": "api_user", "create_time": 1, "version": "12.0.0",
              "license_level": "platinum", "model_size_bytes": 1630}
    assert parse_trained_model_config(stored, for_creation=False).model_id == "m"
    assert error_of(parse_trained_model_config, {**put({"pass_through": {}}).to_es(), "bogus": 1}).reason == \
        "[trained_model_config] unknown field [bogus]"


def test_vocabulary_location_kept_from_stored_configs_but_refused_at_creation():
    stored = put({"ner": {}}).to_es()
    stored["inference_config"]["ner"]["vocabulary"] = {"index": ".ml-inference-native-000002"}
    assert parse_trained_model_config(stored, for_creation=False).to_es() == stored
    err = error_of(parse_trained_model_config, stored)
    assert (err.status, err.reason) == (400, "illegal setting [vocabulary] on inference model creation")


def test_mask_token_rule_both_ways():
    assert put({"fill_mask": {"tokenization": {"bert": {"with_special_tokens": False}}}}).to_es()[
        "inference_config"]["fill_mask"]["mask_token"] == "[MASK]"
    assert put({"fill_mask": {"tokenization": {"roberta": {}}}}).to_es()["inference_config"]["fill_mask"][
        "mask_token"] == "<mask>"
    assert put({"fill_mask": {"mask_token": "[MASK]"}}).inference_config.num_top_classes == 5
    err = error_of(put, {"fill_mask": {"tokenization": {"bert": {}}, "mask_token": "<mask>"}})
    assert (err.type, err.reason) == ("illegal_argument_exception",
                                      "Mask token requested was [<mask>] but must be [[MASK]] for this model")
    err = error_of(put, {"fill_mask": {"tokenization": {"roberta": {}}, "mask_token": "[MASK]"}})
    assert err.reason == "Mask token requested was [[MASK]] but must be [<mask>] for this model"


@pytest.mark.parametrize("config, message", [
    ({"text_classification": {"classification_labels": ["only"]}},
     "[text_classification] requires at least 2 [classification_labels]; provided [only]"),
    ({"text_classification": {}}, "[text_classification] requires at least 2 [classification_labels]; provided null"),
    ({"zero_shot_classification": {}}, "[classification_labels] must not be null."),
    ({"zero_shot_classification": {"classification_labels": ["entailment", "neutral"]}},
     "[classification_labels] must contain exactly the three values [entailment, neutral, contradiction]"),
    ({"zero_shot_classification": {"classification_labels": ["entailment", "neutral", "nope"]}},
     "[classification_labels] must contain exactly the three values [entailment, neutral, contradiction]. "
     "Invalid labels [nope]"),
    ({"zero_shot_classification": {"classification_labels": ["entailment", "neutral", "contradiction"],
                                   "labels": []}}, "[labels] must not be empty"),
    ({"fill_mask": {"tokenization": {"bert": {"truncate": "none", "span": 10}}}},
     "[fill_mask] does not support windowing long text sequences; configured span [10]"),
])
def test_task_option_validation(config, message):
    err = error_of(put, config)
    assert (err.status, err.reason) == (400, message)


def test_ner_labels_validated_together():
    assert put({"ner": {"classification_labels": ["O", "B-PER", "i_per"]}}).inference_config.labels == [
        "O", "B-PER", "i_per"]
    err = error_of(put, {"ner": {"classification_labels": ["O", "PER", "B_PER", "B_PER"]}})
    assert err.reason == ("Validation Failed: 1: classification label [PER] is not an entity I-O-B tag.;"
                          "2: the classification label [B_PER] is duplicated in the list [O, PER, B_PER, B_PER];")


def test_task_defaults():
    qa = put({"question_answering": {}}).to_es()["inference_config"]["question_answering"]
    assert (qa["num_top_classes"], qa["max_answer_length"]) == (0, 15)
    zs = put({"zero_shot_classification": {"classification_labels": ["Entailment", "neutral", "contradiction"]}})
    assert zs.to_es()["inference_config"]["zero_shot_classification"] == {
        "tokenization": {"bert": BERT_DEFAULTS}, "classification_labels": ["Entailment", "neutral", "contradiction"],
        "hypothesis_template": "This example is {}.", "multi_label": False}
    assert zs.inference_config.entailment_index == 0
    assert put({"ner": {}}).inference_config.labels[:3] == ["O", "B_MISC", "I_MISC"]


# --------------------------------------------------------------------------- per-request overrides


def test_override_wrong_task():
    config = parse_inference_config({"pass_through": {}})
    err = error_of(apply_inference_update, "test_model", config, {"ner": {}})
    assert (err.status, err.type) == (403, "status_exception")
    assert err.reason == "Trained model [test_model] is configured for task [pass_through] but called with task [ner]"


def test_override_allowed_fields_per_task():
    zs = parse_inference_config({"zero_shot_classification": {"classification_labels": ["entailment", "neutral",
                                                                                         "contradiction"]}})
    updated = apply_inference_update("m", zs, {"zero_shot_classification": {"labels": ["a", "b"],
                                                                             "multi_label": True,
                                                                             "results_field": "out"}})
    assert (updated.labels, updated.multi_label, updated.results_key) == (["a", "b"], True, "out")
    assert zs.labels is None  # the stored config is not changed
    err = error_of(apply_inference_update, "m", zs, {"zero_shot_classification": {"hypothesis_template": "{}"}})
    assert err.reason == "[zero_shot_classification] unknown field [hypothesis_template]"
    qa = parse_inference_config({"question_answering": {}})
    updated = apply_inference_update("m", qa, {"question_answering": {"question": "who?", "max_answer_length": 3,
                                                                      "num_top_classes": 2}})
    assert (updated.question, updated.max_answer_length, updated.num_top_classes) == ("who?", 3, 2)
    tc = parse_inference_config({"text_classification": {"classification_labels": ["a", "b"]}})
    assert apply_inference_update("m", tc, {"text_classification": {"num_top_classes": 1}}).num_top_classes == 1
    err = error_of(apply_inference_update, "m", tc, {"text_classification": {"classification_labels": ["x"]}})
    assert err.reason == ("The number of [classification_labels] the model is defined with [2] does not match the "
                          "number in the update [1]")


def test_tokenization_override_only_truncate_and_span():
    config = parse_inference_config({"pass_through": {"tokenization": {"bert": {"truncate": "none",
                                                                               "max_sequence_length": 2}}}})
    updated = apply_inference_update("m", config, {"pass_through": {"tokenization": {"bert": {"truncate": "first"}}}})
    assert (updated.tokenization.truncate, updated.tokenization.max_sequence_length) == ("first", 2)
    windowed = apply_inference_update("m", config, {"pass_through": {"tokenization": {"bert": {"span": 1}}}})
    assert (windowed.tokenization.truncate, windowed.tokenization.span) == ("none", 1)
    err = error_of(apply_inference_update, "m", config,
                   {"pass_through": {"tokenization": {"bert": {"max_sequence_length": 5}}}})
    assert err.reason == "[bert] unknown field [max_sequence_length]"
    err = error_of(apply_inference_update, "m", config, {"pass_through": {"tokenization": {"roberta": {}}}})
    assert err.reason == "Tokenization config of type [bert] can not be updated with a request of type [roberta]"
    err = error_of(apply_inference_update, "m", config,
                   {"pass_through": {"tokenization": {"bert": {"truncate": "first", "span": 1}}}})
    assert err.reason == "[span] must not be provided when [truncate] is [first]"


def test_override_of_unknown_task_is_a_parse_error():
    config = parse_inference_config({"pass_through": {}})
    err = error_of(apply_inference_update, "m", config, {"regression": {}})
    assert err.status == 400 and "regression" in err.reason
