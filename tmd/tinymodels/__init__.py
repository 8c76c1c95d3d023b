"""Tiny TorchScript models for tests and benchmarks, built in milliseconds, nothing downloaded.

Each builder returns a `TinyModel` (the TorchScript module, its config.json dict and its
vocabulary.json dict); `write_model_dir` writes one as a model directory:

    DIR/config.json      the TrainedModelConfig JSON as Elasticsearch returns it (model_id,
                         model_type "pytorch", inference_config {<task>: {..., "tokenization":
                         {"bert": {...}}}}, input {field_names}, prefix_strings?)
    DIR/vocabulary.json  {"vocabulary": [...], "merges": [...]?, "scores": [...]?}
                         (the body of Elasticsearch's put vocabulary API)
    DIR/model.pt         the TorchScript archive

The task models (ner, classification, zero-shot, fill-mask, question answering) have
weights *set* from small word lists rather than learnt, so their answers are meaningful and
deterministic ("Josh lives in Berlin" → PER, LOC) without any training time.
"""

from __future__ import annotations

from tmd.tinymodels.builders import TinyModel, super_simple, text_embedding, text_expansion, write_model_dir
from tmd.tinymodels.vocab import BASE_VOCABULARY

__all__ = ["BASE_VOCABULARY", "TinyModel", "super_simple", "text_embedding", "text_expansion", "write_model_dir"]
