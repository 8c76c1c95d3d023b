"""Every task type of es-api.md §5.6 served by a real worker process over HTTP.

The nlp tests check each task's answers in-process; these check that the worker serves each
task end to end (tokenize on a lane, forward, postprocess), warms up even the tasks that need
request options (QA, zero-shot without configured labels, text similarity) and answers
task-level mistakes with 400s (the exact texts are tests/nlp's to pin down).
"""

from __future__ import annotations

import pytest

from tests.worker.conftest import Worker, start_all
from tmd import tinymodels

pytestmark = pytest.mark.slow  # six worker processes at once; tests/nlp covers each task in-process

BUILDERS = {
    "ner": tinymodels.ner,
    "text_classification": tinymodels.text_classification,
    "zero_shot_classification": tinymodels.zero_shot_classification,
    "fill_mask": tinymodels.fill_mask,
    "question_answering": tinymodels.question_answering,
    "text_similarity": tinymodels.text_similarity,
}


@pytest.fixture(scope="module")
def served(workers, tmp_path_factory) -> dict[str, Worker]:
    root = tmp_path_factory.mktemp("tasks")
    dirs = [build().write(root / task) for task, build in BUILDERS.items()]
    return dict(zip(BUILDERS, start_all(workers, [(d, ("--cache-size", "0"), None) for d in dirs])))


def infer(worker: Worker, text: str, inference_config: dict | None = None) -> tuple[int, dict]:
    body: dict = {"docs": [{"input": text}]}
    if inference_config is not None:
        body["inference_config"] = inference_config
    with worker.client() as c:
        r = c.post("/infer", json=body)
    return r.status_code, r.json()


def only_result(status: int, body: dict) -> dict:
    assert status == 200, body
    (result,) = body["inference_results"]
    return result


def test_ner(served) -> None:
    result = only_result(*infer(served["ner"], "Josh lives in Berlin"))
    assert result["predicted_value"] == "[Josh](PER&Josh) lives in [Berlin](LOC&Berlin)"
    assert [(e["entity"], e["class_name"], e["start_pos"], e["end_pos"]) for e in result["entities"]] == [
        ("josh", "PER", 0, 4), ("berlin", "LOC", 14, 20)]  # entity text as tokenized (lower-cased model)
    assert all(0.0 < e["class_probability"] <= 1.0 for e in result["entities"])


def test_text_classification(served) -> None:
    result = only_result(*infer(served["text_classification"], "I love this wonderful film",
                                {"text_classification": {"num_top_classes": 2}}))
    assert result["predicted_value"] == "positive"
    assert [set(c) for c in result["top_classes"]] == [{"class_name", "class_probability", "class_score"}] * 2
    assert result["prediction_probability"] == result["top_classes"][0]["class_probability"]


def test_zero_shot_classification(served) -> None:
    labels = {"zero_shot_classification": {"labels": ["politics", "sports", "food"]}}
    result = only_result(*infer(served["zero_shot_classification"], "The football team won the match", labels))
    assert result["predicted_value"] == "sports" and result["top_classes"][0]["class_name"] == "sports"
    status, error = infer(served["zero_shot_classification"], "football")
    assert status == 400 and "zero_shot_classification requires non-empty [labels]" in error["error"]["reason"]


def test_fill_mask(served) -> None:
    result = only_result(*infer(served["fill_mask"], "The capital of France is [MASK]."))
    assert result["predicted_value"] == "paris"
    assert result["predicted_value_sequence"] == "The capital of France is paris."
    status, error = infer(served["fill_mask"], "no mask here")
    assert status == 400 and "no [MASK] token could be found in the input" in error["error"]["reason"]


def test_question_answering(served) -> None:
    context = "Josh lives in New York and works at Elastic."
    result = only_result(*infer(served["question_answering"], context,
                                {"question_answering": {"question": "Where does Josh live?"}}))
    assert (result["predicted_value"], result["start_offset"], result["end_offset"]) == ("New York", 14, 22)
    status, error = infer(served["question_answering"], context)
    assert status == 400 and "Question is required for question answering" in error["error"]["reason"]


def test_text_similarity(served) -> None:
    sports = only_result(*infer(served["text_similarity"], "the football match", {"text_similarity": {"text": "sports"}}))
    food = only_result(*infer(served["text_similarity"], "pizza for dinner", {"text_similarity": {"text": "sports"}}))
    assert isinstance(sports["predicted_value"], float) and sports["predicted_value"] > food["predicted_value"]
