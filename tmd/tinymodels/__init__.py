"""Tiny TorchScript models for tests and benchmarks, built in milliseconds, nothing downloaded.

Each builder returns a `TinyModel` (the TorchScript module, its config.json dict and its
vocabulary.json dict); `write_model_dir` writes one as a model directory:

    DIR/config.json      the TrainedModelConfig JSON as Elasticsearch returns it (model_id,
                         model_type "pytorch", inference_config {<task>: {..., "tokenization":
                         {"bert": {...}}}}, input {field_names}, prefix_strings?)
    DIR/vocabulary.json  {"vocabulary": [...], "merges": [...]?, "scores": [...]?}
                         (the body of Elasticsearch's put vocabulary API)
    DIR/model.pt         the TorchScript archive

Builders: `super_simple` (es-api.md §8.4 SuperSimple, the YAML tests' `test_model`),
`text_embedding` (TinyTextEmbedding), `text_expansion` (TinyTextExpansion), `ner`,
`text_classification`, `zero_shot_classification`, `fill_mask`, `question_answering`, `text_similarity`,
and `benchmark_encoder` (a traced small BERT-like encoder for throughput benchmarks).

The task models (ner, classification, zero-shot, fill-mask, question answering) have
weights *set* from small word lists rather than learnt, so their answers are meaningful and
deterministic ("Josh lives in Berlin" → PER, LOC) without any training time.
"""

from __future__ import annotations

from tmd.tinymodels.builders import TinyModel, model_config, super_simple, text_embedding, text_expansion, write_model_dir
from tmd.tinymodels.encoder import benchmark_encoder
from tmd.tinymodels.task_models import (
    fill_mask,
    ner,
    question_answering,
    text_classification,
    text_similarity,
    zero_shot_classification,
)
from tmd.tinymodels.vocab import BASE_VOCABULARY, vocabulary_for

__all__ = [
    "BASE_VOCABULARY", "TinyModel", "benchmark_encoder", "fill_mask", "model_config", "ner", "question_answering",
    "super_simple", "text_classification", "text_embedding", "text_expansion", "text_similarity", "vocabulary_for", "write_model_dir",
    "zero_shot_classification",
]
