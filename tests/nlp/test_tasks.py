"""Every task end to end through real TorchScript models: prepare → forward → postprocess (es-api.md §5.6)."""

from __future__ import annotations

import io
import json

import pytest
import torch

from tmd import tinymodels
from tmd.api.errors import ElasticsearchError
from tmd.tinymodels.vocab import bpe_vocabulary
from tmd.worker.nlp import Pipeline, load_pipeline
from tmd.worker.nlp.tasks import float32_json

# torch 2.x marks torch.jit deprecated; TorchScript is still the format pytorch_inference loads.
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")


class Served:
    """A tiny model as the worker serves it: the TorchScript archive reloaded, plus its pipeline."""

    def __init__(self, tiny: tinymodels.TinyModel) -> None:
        self.model = torch.jit.load(io.BytesIO(tiny.definition()))
        self.pipeline: Pipeline = load_pipeline(json.loads(json.dumps(tiny.config)), tiny.vocabulary)

    def infer(self, text: str, inference_config: dict | None = None, *, prefix: str | None = None,
              field: str = "input") -> dict:
        prepared = self.pipeline.prepare({field: text}, inference_config, prefix=prefix)
        with torch.inference_mode():
            output = self.model(*prepared.inputs)
        result = self.pipeline.postprocess(prepared, output)
        assert json.loads(json.dumps(result)) == result  # JSON-serialisable as is
        return result


@pytest.fixture(scope="module")
def models() -> dict[str, Served]:
    return {name: Served(build()) for name, build in {
        "embedding": tinymodels.text_embedding, "expansion": tinymodels.text_expansion, "ner": tinymodels.ner,
        "sentiment": tinymodels.text_classification, "nli": tinymodels.zero_shot_classification,
        "fill_mask": tinymodels.fill_mask, "qa": tinymodels.question_answering,
        "similarity": tinymodels.text_similarity}.items()}


def error(fn, *args, **kwargs) -> ElasticsearchError:
    with pytest.raises(ElasticsearchError) as err:
        fn(*args, **kwargs)
    return err.value


# --------------------------------------------------------------------------- text_embedding / text_expansion


def test_text_embedding_is_a_deterministic_vector(models):
    a = models["embedding"].infer("the football match")["predicted_value"]
    assert len(a) == 100 and all(isinstance(x, float) for x in a)
    assert models["embedding"].infer("the football match")["predicted_value"] == a
    assert models["embedding"].infer("the election")["predicted_value"] != a


@pytest.mark.parametrize("kind", ["mpnet", "roberta", "xlm_roberta", "deberta_v2"])
def test_text_embedding_with_other_tokenizers(kind):
    served = Served(tinymodels.text_embedding(tokenization=kind))
    inputs = served.pipeline.prepare({"input": "Hello world"}).inputs
    assert len(inputs) == {"mpnet": 2, "roberta": 2, "xlm_roberta": 2, "deberta_v2": 3}[kind]
    assert len(served.infer("Hello world")["predicted_value"]) == 100


def test_prefix_strings_are_prepended(models):
    served = Served(tinymodels.text_embedding(prefix_strings={"search": "query: ", "ingest": "passage: "}))
    assert served.pipeline.prefix_strings == {"search": "query: ", "ingest": "passage: "}
    plain = served.pipeline.prepare({"input": "football"})
    prefixed = served.pipeline.prepare({"input": "football"}, prefix=served.pipeline.prefix_strings["search"])
    assert prefixed.text == "query: football"
    assert prefixed.encodings[0].tokens[1:-1] == ["query", ":", "football"]
    assert plain.cache_key != prefixed.cache_key
    assert served.infer("football", prefix="query: ") != served.infer("football")


def test_text_expansion_maps_each_input_token(models):
    result = models["expansion"].infer("words are words")
    assert result == {"predicted_value": {"[CLS]": 1.0, "[SEP]": 1.0, "words": 1.0, "are": 1.0}}


def test_text_expansion_weights_print_as_floats():
    assert float32_json(float(torch.tensor(0.1, dtype=torch.float32))) == 0.1
    assert float32_json(float(torch.tensor(1 / 3, dtype=torch.float32))) == 0.33333334
    assert float32_json(2.0) == 2.0


# --------------------------------------------------------------------------- ner


def test_ner_entities_and_annotated_text(models):
    result = models["ner"].infer("Josh lives in New York and works at Elastic.")
    assert result["predicted_value"] == ("[Josh](PER&Josh) lives in [New York](LOC&New+York) and works at "
                                         "[Elastic](ORG&Elastic).")
    assert [(e["entity"], e["class_name"], e["start_pos"], e["end_pos"]) for e in result["entities"]] == [
        ("josh", "PER", 0, 4), ("new york", "LOC", 14, 22), ("elastic", "ORG", 36, 43)]
    assert all(0.9 < e["class_probability"] <= 1.0 for e in result["entities"])
    assert list(result["entities"][0]) == ["entity", "class_name", "class_probability", "start_pos", "end_pos"]


def test_ner_without_entities_and_results_field(models):
    result = models["ner"].infer("the weather today", {"ner": {"results_field": "tagged"}})
    assert result == {"tagged": "the weather today", "entities": []}


def test_ner_averages_sub_tokens_of_a_word(models):
    # "zzyzx" splits into single-character pieces, all tagged O: one word, no entity
    result = models["ner"].infer("zzyzx met Alice")
    assert [(e["entity"], e["start_pos"]) for e in result["entities"]] == [("alice", 10)]


# --------------------------------------------------------------------------- text_classification


def test_text_classification(models):
    result = models["sentiment"].infer("I love this wonderful film")
    assert result["predicted_value"] == "positive"
    assert [c["class_name"] for c in result["top_classes"]] == ["positive", "negative"]
    assert result["prediction_probability"] == result["top_classes"][0]["class_probability"] > 0.9
    assert list(result) == ["predicted_value", "top_classes", "prediction_probability"]
    assert models["sentiment"].infer("what an awful boring film")["predicted_value"] == "negative"


def test_text_classification_num_top_classes_and_labels_override(models):
    one = models["sentiment"].infer("great", {"text_classification": {"num_top_classes": 1}})
    assert [c["class_name"] for c in one["top_classes"]] == ["positive"]
    none = models["sentiment"].infer("great", {"text_classification": {"num_top_classes": 0}})
    assert "top_classes" not in none and none["predicted_value"] == "positive"
    renamed = models["sentiment"].infer("great", {"text_classification": {"classification_labels": ["bad", "good"]}})
    assert renamed["predicted_value"] == "good"


def test_text_classification_label_count_mismatch_is_a_server_error():
    tiny = tinymodels.text_classification()
    tiny.config["inference_config"]["text_classification"]["classification_labels"] = ["a", "b", "c"]
    err = error(Served(tiny).infer, "great")
    assert (err.status, err.reason) == (500, "Expected exactly [3] values in text classification result; got [2]")


def test_is_truncated_added_when_input_was_cut():
    served = Served(tinymodels.text_classification(tokenization_options={"max_sequence_length": 4}))
    result = served.infer("the film was great but long")
    assert result["is_truncated"] is True
    assert "is_truncated" not in served.infer("great")


# --------------------------------------------------------------------------- zero_shot_classification


def test_zero_shot_single_and_multi_label(models):
    labels = {"zero_shot_classification": {"labels": ["politics", "sports", "food"]}}
    result = models["nli"].infer("The football team won the match", labels)
    assert result["predicted_value"] == "sports"
    assert [c["class_name"] for c in result["top_classes"]][0] == "sports"
    assert abs(sum(c["class_probability"] for c in result["top_classes"]) - 1.0) < 1e-9
    multi = models["nli"].infer("The football match and pizza for dinner",
                                {"zero_shot_classification": {"labels": ["sports", "food", "politics"],
                                                              "multi_label": True}})
    probs = {c["class_name"]: c["class_probability"] for c in multi["top_classes"]}
    assert probs["sports"] > 0.5 and probs["food"] > 0.5 and probs["politics"] < 0.5


def test_zero_shot_uses_configured_labels_and_label_positions():
    served = Served(tinymodels.zero_shot_classification(labels=["food", "sports"]))
    assert served.infer("pizza for dinner")["predicted_value"] == "food"
    # declaring the model's outputs in the opposite order flips which logit is entailment
    tiny = tinymodels.zero_shot_classification(labels=["food", "sports"])
    tiny.config["inference_config"]["zero_shot_classification"]["classification_labels"] = [
        "contradiction", "neutral", "entailment"]
    assert Served(tiny).infer("pizza for dinner")["predicted_value"] == "sports"


def test_zero_shot_needs_labels(models):
    err = error(models["nli"].infer, "football")
    assert (err.status, err.reason) == (400, "zero_shot_classification requires non-empty [labels]")


def test_zero_shot_batches_one_row_per_label(models):
    prepared = models["nli"].pipeline.prepare({"input": "football"},
                                              {"zero_shot_classification": {"labels": ["a", "b", "c"]}})
    assert prepared.inputs[0].shape[0] == 3
    assert prepared.encodings[1].tokens == ["[CLS]", "football", "[SEP]", "this", "example", "is", "b", ".", "[SEP]"]


# --------------------------------------------------------------------------- fill_mask


def test_fill_mask(models):
    result = models["fill_mask"].infer("The capital of France is [MASK].")
    assert result["predicted_value"] == "paris"
    assert result["predicted_value_sequence"] == "The capital of France is paris."
    assert len(result["top_classes"]) == 5
    assert result["prediction_probability"] == result["top_classes"][0]["class_probability"]
    germany = models["fill_mask"].infer("The capital of Germany is [MASK].", {"fill_mask": {"num_top_classes": 2,
                                                                                            "results_field": "x"}})
    assert germany["x"] == "berlin" and germany["x_sequence"] == "The capital of Germany is berlin."
    assert len(germany["top_classes"]) == 2


class PreferToken(torch.nn.Module):
    """Vocabulary logits [batch, seq, vocab] that favour one token id everywhere (roberta's two inputs)."""

    def __init__(self, vocab_size: int, token_id: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.token_id = token_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros((input_ids.size(0), input_ids.size(1), self.vocab_size))
        logits[:, :, self.token_id] = 10.0
        return logits


def test_fill_mask_with_roberta_bpe():
    vocabulary = bpe_vocabulary()
    token_id = next(i for i, t in enumerate(vocabulary["vocabulary"]) if t.startswith("Ġ") and len(t) > 4)
    word = vocabulary["vocabulary"][token_id][1:]
    config = tinymodels.model_config("roberta_fill", "fill_mask", {"mask_token": "<mask>"}, tokenization="roberta")
    served = Served(tinymodels.TinyModel(torch.jit.script(PreferToken(len(vocabulary["vocabulary"]), token_id)),
                                         config, vocabulary))
    result = served.infer("It is a <mask>")
    assert result["predicted_value"] == word
    assert result["predicted_value_sequence"] == f"It is a {word}"
    assert result["top_classes"][0]["class_probability"] > 0.9
    assert "no <mask> token could be found in the input" in error(served.infer, "It is a [MASK]").reason


def test_fill_mask_needs_exactly_one_mask(models):
    missing = error(models["fill_mask"].infer, "no mask here")
    assert (missing.status, missing.type, missing.reason) == (
        400, "validation_exception", "Validation Failed: 1: no [MASK] token could be found in the input;")
    two = error(models["fill_mask"].infer, "[MASK] and [MASK]")
    assert (two.status, two.type, two.reason) == (400, "status_exception",
                                                  "only one [MASK] token should exist in the input")


def test_fill_mask_cache_key_includes_the_text(models):
    pipeline = models["fill_mask"].pipeline
    upper = pipeline.prepare({"input": "Paris is a [MASK]"})
    lower = pipeline.prepare({"input": "paris is a [MASK]"})
    assert upper.encodings[0].ids == lower.encodings[0].ids  # do_lower_case: same tokens...
    assert upper.cache_key != lower.cache_key                 # ...but the result quotes the text


def test_cache_key_ignores_case_when_the_result_does_not_quote_text(models):
    pipeline = models["sentiment"].pipeline
    assert pipeline.prepare({"input": "Great"}).cache_key == pipeline.prepare({"input": "great"}).cache_key


# --------------------------------------------------------------------------- question_answering


def test_question_answering(models):
    context = "Josh lives in New York and works at Elastic."
    where = models["qa"].infer(context, {"question_answering": {"question": "Where does Josh live?"}})
    assert (where["predicted_value"], where["start_offset"], where["end_offset"]) == ("New York", 14, 22)
    assert "top_classes" not in where and 0.9 < where["prediction_probability"] <= 1.0
    who = models["qa"].infer(context, {"question_answering": {"question": "Who works at Elastic?",
                                                              "num_top_classes": 3}})
    assert who["predicted_value"] == "Josh"
    assert len(who["top_classes"]) == 3
    assert list(who["top_classes"][0]) == ["answer", "score", "start_offset", "end_offset"]
    assert who["top_classes"][0]["answer"] == context[who["top_classes"][0]["start_offset"]:
                                                      who["top_classes"][0]["end_offset"]]


def test_question_answering_max_answer_length(models):
    result = models["qa"].infer("Josh lives in New York.", {"question_answering": {"question": "where?",
                                                                                   "max_answer_length": 1}})
    assert result["predicted_value"] in ("New", "York")


def test_question_answering_needs_a_question(models):
    err = error(models["qa"].infer, "Josh lives in Paris")
    assert (err.status, err.reason) == (400, "Question is required for question answering")


def test_question_answering_over_span_windows():
    served = Served(tinymodels.question_answering(
        tokenization_options={"max_sequence_length": 12, "truncate": "none", "span": 2}))
    context = "the weather today was very nice and then josh went to london on the day"
    prepared = served.pipeline.prepare({"input": context}, {"question_answering": {"question": "where?"}})
    assert len(prepared.encodings) > 2 and prepared.inputs[0].shape[0] == len(prepared.encodings)
    result = served.infer(context, {"question_answering": {"question": "where?"}})
    assert result["predicted_value"] == "london"
    assert context[result["start_offset"]:result["end_offset"]] == "london"
    assert "is_truncated" not in result


# --------------------------------------------------------------------------- text_similarity


def test_text_similarity(models):
    query = {"text_similarity": {"text": "football sports"}}
    assert models["similarity"].infer("the team won the match", query)["predicted_value"] > 4.0
    assert models["similarity"].infer("pizza and pasta", query)["predicted_value"] < -4.0
    err = error(models["similarity"].infer, "pizza")
    assert err.reason == "Text is required for text similarity"


# --------------------------------------------------------------------------- shared behaviour


def test_dotted_input_field_paths():
    tiny = tinymodels.text_classification()
    tiny.config["input"] = {"field_names": ["body.text"]}
    pipeline = load_pipeline(tiny.config, tiny.vocabulary)
    nested = pipeline.prepare({"body": {"text": "great"}})
    flat = pipeline.prepare({"body.text": "great"})
    assert nested.cache_key == flat.cache_key
    assert error(pipeline.prepare, {"body": {"other": "x"}}).reason == (
        "Input field [body.text] does not exist in the source document")
    assert error(pipeline.prepare, {"body": {"text": None}}).reason == (
        "Input value [null] for field [body.text] must be a string")


def test_tuple_output_uses_element_zero(models):
    pipeline = models["sentiment"].pipeline
    prepared = pipeline.prepare({"input": "great"})
    with torch.inference_mode():
        output = models["sentiment"].model(*prepared.inputs)
    assert pipeline.postprocess(prepared, (output, torch.zeros(3))) == pipeline.postprocess(prepared, output)


def test_unknown_override_field_is_rejected(models):
    err = error(models["sentiment"].infer, "great", {"text_classification": {"bogus": 1}})
    assert (err.status, err.reason) == (400, "[text_classification] unknown field [bogus]")
