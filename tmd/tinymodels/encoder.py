"""A small BERT-like encoder for throughput benchmarks (random, seeded weights).

Real transformer arithmetic at a configurable size (default 4 layers, hidden 256, the
shape the worker benchmark names), traced with torch.jit.trace into a text_embedding
model: mean-pooled last hidden state, [batch, hidden].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tmd.tinymodels.builders import TinyModel, model_config
from tmd.tinymodels.vocab import BASE_VOCABULARY, vocabulary_body


class SmallBert(nn.Module):
    def __init__(self, vocab_size: int, hidden: int, layers: int, heads: int, max_positions: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, hidden)
        self.positions = nn.Embedding(max_positions, hidden)
        self.types = nn.Embedding(2, hidden)
        self.norm = nn.LayerNorm(hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        x = self.norm(self.tokens(input_ids) + self.positions(position_ids) + self.types(token_type_ids))
        real = attention_mask == 1
        x = self.encoder(x, src_key_padding_mask=~real)
        weights = real.unsqueeze(-1).to(x.dtype)
        return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def benchmark_encoder(model_id: str = "small_bert", *, layers: int = 4, hidden: int = 256, heads: int = 4,
                      max_sequence_length: int = 64, seed: int = 0,
                      tokenization_options: dict[str, Any] | None = None) -> TinyModel:
    """A traced SmallBert serving `text_embedding` with bert tokenization (four inputs)."""
    vocab = BASE_VOCABULARY
    torch.manual_seed(seed)
    module = SmallBert(len(vocab), hidden, layers, heads, max_sequence_length).eval()
    example = torch.randint(5, len(vocab), (1, max_sequence_length))
    inputs = (example, torch.ones_like(example), torch.zeros_like(example),
              torch.arange(max_sequence_length).unsqueeze(0))
    with torch.no_grad():
        traced = torch.jit.trace(module, inputs, check_trace=False)
    options = {"do_lower_case": True, "max_sequence_length": max_sequence_length, **(tokenization_options or {})}
    config = model_config(model_id, "text_embedding", {"embedding_size": hidden}, tokenization_options=options,
                          description=f"small BERT-like encoder: {layers} layers, hidden {hidden}")
    return TinyModel(traced, config, vocabulary_body(vocab))
