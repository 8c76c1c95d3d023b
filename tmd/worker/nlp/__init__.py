"""NLP pipelines: text in, model inputs out; model output in, Elasticsearch result out.

The worker calls this package and nothing else of it:

    pipeline = load_pipeline(config, vocabulary)      # config.json / vocabulary.json, parsed
    prepared = pipeline.prepare(doc, inference_config, prefix=None)   # 400s for user mistakes
    output = model(*prepared.inputs)                   # in an allocation lane, no_grad
    result = pipeline.postprocess(prepared, output)    # the result dict of es-api.md §5.6

`prepare` is pure CPU work (HF tokenizers, no torch threads); `prepared.cache_key` names the
tokenized input plus everything in the request that changes the result (es-api.md §11).
"""

from __future__ import annotations

import hashlib
import json
from array import array
from dataclasses import dataclass
from typing import Any

import torch

from tmd.api.errors import ElasticsearchError, IllegalArgument
from tmd.api.trained_model import NlpConfig, TrainedModelConfig, apply_inference_update, parse_trained_model_config
from tmd.worker.nlp.inputs import build_inputs, collate, extract_text
from tmd.worker.nlp.tasks import TASKS, TaskProcessor, to_rows
from tmd.worker.nlp.tokenization import Encoding, NlpTokenizer

__all__ = ["Pipeline", "Prepared", "load_pipeline"]


@dataclass
class Prepared:
    """One document, tokenized and turned into model inputs, with what postprocess needs.

    `inputs` are int64 [rows, tokens] tensors in forward()'s positional order. There is one
    row, except for zero-shot classification (one premise/hypothesis row per label) and for
    question answering / text similarity over a long input windowed by `span` (one per window).
    """

    inputs: tuple[torch.Tensor, ...]
    cache_key: bytes
    config: NlpConfig          # the stored task config with this request's overrides applied
    text: str                  # the input text, prefix included
    encodings: list[Encoding]  # one per row of `inputs`

    @property
    def is_truncated(self) -> bool:
        return any(e.is_truncated for e in self.encodings)


class Pipeline:
    """One model's task: its configuration, its tokenizer and its result processor."""

    def __init__(self, config: TrainedModelConfig, tokenizer: NlpTokenizer) -> None:
        self.config = config
        self.model_id = config.model_id
        self.task = config.task
        self.tokenizer = tokenizer
        if self.task not in TASKS:
            raise IllegalArgument(f"task [{self.task}] is not supported by this worker")
        self.processor: TaskProcessor = TASKS[self.task]
        self.processor.check_config(config.inference_config, tokenizer)
        self._stored_key = _config_key(config.inference_config)
        prefixes = config.prefix_strings
        self.prefix_strings = {"search": prefixes.search, "ingest": prefixes.ingest} if prefixes else {}

    def prepare(self, doc: dict[str, Any], inference_config: dict[str, Any] | None = None, *,
                prefix: str | None = None) -> Prepared:
        text = extract_text(doc, self.config.input_field)
        if prefix:
            text = prefix + text
        effective = apply_inference_update(self.model_id, self.config.inference_config, inference_config)
        self.processor.check_request(effective)
        encodings = self.processor.encode(effective, self.tokenizer, text)
        inputs = build_inputs(encodings, self.tokenizer)
        digest = hashlib.sha256(self._stored_key if effective is self.config.inference_config
                                else _config_key(effective))
        for enc in encodings:
            digest.update(b"|")
            digest.update(array("q", enc.ids).tobytes())
        if self.processor.result_uses_text:
            digest.update(b"|text|" + text.encode())
        return Prepared(inputs, digest.digest(), effective, text, encodings)

    def collate(self, prepared: list[Prepared], width: int) -> tuple[torch.Tensor, ...]:
        """The inputs of several prepared documents as one batch, padded to `width` (tmd.worker.batching)."""
        return collate([p.inputs for p in prepared], width, self.tokenizer.pad_id)

    def postprocess(self, prepared: Prepared, output: Any) -> dict[str, Any]:
        if isinstance(output, (tuple, list)):
            output = output[0]
        if not isinstance(output, torch.Tensor):
            raise ElasticsearchError(f"Error in inference process: [model returned {type(output).__name__}, "
                                     "expected a tensor]")
        rows = to_rows(output)
        result = self.processor.process(prepared.config, self.tokenizer, prepared, rows)
        if prepared.is_truncated:
            result["is_truncated"] = True
        return result


def _config_key(config: NlpConfig) -> bytes:
    """The effective task config, canonically serialised: every override that can change a result."""
    return json.dumps([config.task, config.model_dump(mode="json", exclude_none=True)], sort_keys=True,
                      separators=(",", ":")).encode()


def load_pipeline(config: dict[str, Any], vocabulary: dict[str, Any]) -> Pipeline:
    """Build the pipeline for a model directory's config.json and vocabulary.json."""
    parsed = parse_trained_model_config(config, for_creation=False)
    if not isinstance(vocabulary, dict):
        raise IllegalArgument("[vocabulary] must be an object with a [vocabulary] list")
    tokenizer = NlpTokenizer(parsed.inference_config.tokenization, vocabulary)
    return Pipeline(parsed, tokenizer)
