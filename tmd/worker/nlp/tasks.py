"""Per-task encoding and result processing (es-api.md §5.6).

Each task turns the document text into one or more encodings (rows of the model's batch)
and turns the model's output, seen as Elasticsearch's 3-D wire array, into the result
Elasticsearch returns for that task.
"""

from __future__ import annotations

from typing import Any

import torch

from tmd.api.errors import ElasticsearchError
from tmd.api.trained_model import NlpConfig, TextEmbeddingConfig
from tmd.worker.nlp.tokenization import Encoding, NlpTokenizer


def to_rows(output: torch.Tensor) -> torch.Tensor:
    """The model output as pytorch_inference writes it: always 3-D, float64 (§5.6 wire format).

    A scalar becomes [[[x]]], a vector [[[...]]], a 2-D [batch, dim] output is wrapped in one
    extra array, a 3-D output is kept.
    """
    out = output.detach().to(torch.float64)
    while out.dim() < 3:
        out = out.unsqueeze(0)
    if out.dim() > 3:
        raise ElasticsearchError(f"Error in inference process: [unexpected output with {out.dim()} dimensions]")
    return out


def softmax(values: torch.Tensor) -> torch.Tensor:
    return torch.softmax(values.to(torch.float64), dim=-1)


class TaskProcessor:
    """Encoding and result processing for one task type."""

    # whether the result quotes the input text (then the cache key must include it)
    result_uses_text = False

    def check_config(self, config: NlpConfig, tokenizer: NlpTokenizer) -> None:
        """Load-time checks of the stored config against the tokenizer."""

    def check_request(self, config: NlpConfig) -> None:
        """Checks of the effective (stored + request override) config before tokenizing."""

    def encode(self, config: NlpConfig, tokenizer: NlpTokenizer, text: str) -> tuple[list[Encoding], dict[str, Any]]:
        return tokenizer.encode(text), {}

    def process(self, config: NlpConfig, tokenizer: NlpTokenizer, prepared: Any, rows: torch.Tensor) -> dict[str, Any]:
        raise NotImplementedError


class PassThrough(TaskProcessor):
    """The first batch element of the output as a 2-D array of doubles."""

    def process(self, config, tokenizer, prepared, rows):
        return {config.results_key: rows[0].tolist()}


class TextEmbedding(TaskProcessor):
    """The first row of the first batch element: one vector."""

    def process(self, config: TextEmbeddingConfig, tokenizer, prepared, rows):
        return {config.results_key: rows[0][0].tolist()}


class TextExpansion(TaskProcessor):
    """Vocabulary tokens with a positive weight in the first output row."""

    def process(self, config, tokenizer, prepared, rows):
        weights = rows[0][0]
        vocab = tokenizer.vocab_list
        picked = torch.nonzero(weights > 0).flatten().tolist()
        return {config.results_key: {vocab[i]: float(weights[i]) for i in picked if i < len(vocab)}}


TASKS: dict[str, TaskProcessor] = {
    "pass_through": PassThrough(),
    "text_embedding": TextEmbedding(),
    "text_expansion": TextExpansion(),
}
