"""pass_through end to end: the SuperSimple model through the pipeline and a model directory."""

from __future__ import annotations

import json

import pytest
import torch

from tmd.api.errors import ElasticsearchError
from tmd.tinymodels import super_simple, write_model_dir
from tmd.worker.nlp import load_pipeline

# torch 2.x marks torch.jit deprecated; TorchScript is still the format pytorch_inference loads.
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def simple():
    return super_simple()


def run(pipeline, model, doc, inference_config=None):
    prepared = pipeline.prepare(doc, inference_config)
    with torch.inference_mode():
        output = model(*prepared.inputs)
    return prepared, pipeline.postprocess(prepared, output)


def test_super_simple_returns_ones(simple):
    pipeline = load_pipeline(simple.config, simple.vocabulary)
    assert (pipeline.model_id, pipeline.task) == ("test_model", "pass_through")
    prepared, result = run(pipeline, simple.model, {"input": "words"})
    assert result == {"predicted_value": [[1.0, 1.0]]}
    assert len(prepared.inputs) == 4
    assert all(t.dtype == torch.int64 and t.shape == (1, 1) for t in prepared.inputs)
    assert prepared.inputs[0].tolist() == [[5]]
    json.dumps(result)


def test_model_dir_round_trip(simple, tmp_path):
    root = write_model_dir(tmp_path / "m", model=simple.model, config=simple.config, vocabulary=simple.vocabulary)
    config = json.loads((root / "config.json").read_text())
    vocabulary = json.loads((root / "vocabulary.json").read_text())
    model = torch.jit.load(str(root / "model.pt"))
    assert config["inference_config"]["pass_through"]["tokenization"]["bert"] == {
        "do_lower_case": False, "with_special_tokens": False, "max_sequence_length": 512, "truncate": "first",
        "span": -1}
    assert vocabulary == {"vocabulary": ["[PAD]", "[UNK]", "these", "are", "my", "words"]}
    _, result = run(load_pipeline(config, vocabulary), model, {"input": "these are my words"})
    assert result == {"predicted_value": [[1.0, 1.0]]}


def test_bytes_model_written_as_is(simple, tmp_path):
    data = simple.definition()
    root = write_model_dir(tmp_path / "b", model=data, config=simple.config, vocabulary=simple.vocabulary)
    assert (root / "model.pt").read_bytes() == data


def test_same_input_same_cache_key_and_override_changes_it(simple):
    pipeline = load_pipeline(simple.config, simple.vocabulary)
    a = pipeline.prepare({"input": "words"})
    b = pipeline.prepare({"input": "words"})
    c = pipeline.prepare({"input": "are"})
    d = pipeline.prepare({"input": "words"}, {"pass_through": {"results_field": "out"}})
    assert a.cache_key == b.cache_key
    assert len({a.cache_key, c.cache_key, d.cache_key}) == 3


def test_results_field_override(simple):
    pipeline = load_pipeline(simple.config, simple.vocabulary)
    _, result = run(pipeline, simple.model, {"input": "words"}, {"pass_through": {"results_field": "out"}})
    assert result == {"out": [[1.0, 1.0]]}


@pytest.mark.parametrize("doc, message", [
    ({"text": "words"}, "Input field [input] does not exist in the source document"),
    ({"input": 42}, "Input value [42] for field [input] must be a string"),
    ({"input": ["a", "b"]}, "Input value [[a, b]] for field [input] must be a string"),
])
def test_input_errors(simple, doc, message):
    pipeline = load_pipeline(simple.config, simple.vocabulary)
    with pytest.raises(ElasticsearchError) as err:
        pipeline.prepare(doc)
    assert err.value.status == 400
    assert err.value.reason == message


def test_wrong_task_override(simple):
    pipeline = load_pipeline(simple.config, simple.vocabulary)
    with pytest.raises(ElasticsearchError) as err:
        pipeline.prepare({"input": "words"}, {"ner": {}})
    assert (err.value.status, err.value.type) == (403, "status_exception")
    assert err.value.reason == ("Trained model [test_model] is configured for task [pass_through] "
                                "but called with task [ner]")


def test_truncation_scenario_of_pytorch_model_it():
    """max_sequence_length 2, truncate none: "once twice thrice" fails; truncate first on the request works."""
    tiny = super_simple(vocabulary=["[PAD]", "[UNK]", "once", "twice", "thrice"],
                        tokenization_options={"with_special_tokens": False, "max_sequence_length": 2,
                                              "truncate": "none"})
    pipeline = load_pipeline(tiny.config, tiny.vocabulary)
    with pytest.raises(ElasticsearchError) as err:
        pipeline.prepare({"input": "once twice thrice"})
    assert (err.value.status, err.value.type, err.value.reason) == (
        400, "status_exception", "Input too large. The tokenized input length [3] exceeds the maximum sequence "
                                 "length [2]")
    prepared, result = run(pipeline, tiny.model, {"input": "once twice thrice"},
                           {"pass_through": {"tokenization": {"bert": {"truncate": "first"}}}})
    assert prepared.inputs[0].tolist() == [[2, 3]]
    assert result == {"predicted_value": [[1.0, 1.0]], "is_truncated": True}


def test_write_model_dir_refuses_an_invalid_config(simple, tmp_path):
    bad = {**simple.config, "inference_config": {"fill_mask": {"mask_token": "<mask>"}}}
    with pytest.raises(ElasticsearchError, match="Mask token requested was"):
        write_model_dir(tmp_path / "bad", model=simple.model, config=bad, vocabulary=simple.vocabulary)
    assert not (tmp_path / "bad").exists()
