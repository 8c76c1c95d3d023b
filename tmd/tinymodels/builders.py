"""Builders of tiny TorchScript models and the model directory they are served from."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from tmd.api.trained_model import parse_trained_model_config
from tmd.tinymodels.vocab import vocabulary_body, vocabulary_for


@dataclass
class TinyModel:
    """A TorchScript model with the config.json and vocabulary.json that go with it."""

    model: torch.jit.ScriptModule
    config: dict[str, Any]
    vocabulary: dict[str, Any]

    def definition(self) -> bytes:
        """The TorchScript archive as bytes (what put-definition-part uploads, base64-encoded)."""
        return script_bytes(self.model)

    def write(self, path: str | Path) -> Path:
        return write_model_dir(path, model=self.model, config=self.config, vocabulary=self.vocabulary)


def script_bytes(model: torch.jit.ScriptModule) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(model, buf)
    return buf.getvalue()


def write_model_dir(path: str | Path, *, model: torch.jit.ScriptModule | bytes, config: dict[str, Any],
                    vocabulary: dict[str, Any]) -> Path:
    """Write DIR/config.json, DIR/vocabulary.json and DIR/model.pt; returns DIR.

    The config is validated first, so a directory written here always loads.
    """
    parse_trained_model_config(config, for_creation=False)
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    data = model if isinstance(model, bytes) else script_bytes(model)
    (root / "model.pt").write_bytes(data)
    (root / "config.json").write_text(json.dumps(config, indent=2))
    (root / "vocabulary.json").write_text(json.dumps(vocabulary))
    return root


def model_config(model_id: str, task: str, options: dict[str, Any] | None = None, *,
                 tokenization: str = "bert", tokenization_options: dict[str, Any] | None = None,
                 field_names: list[str] | None = None, prefix_strings: dict[str, str] | None = None,
                 description: str | None = None) -> dict[str, Any]:
    """A config.json as Elasticsearch returns it: parsed, defaults filled, written back."""
    body: dict[str, Any] = {
        "model_id": model_id,
        "model_type": "pytorch",
        "inference_config": {task: {**(options or {}), "tokenization": {tokenization: dict(tokenization_options or {})}}},
    }
    if field_names is not None:
        body["input"] = {"field_names": field_names}
    if prefix_strings is not None:
        body["prefix_strings"] = prefix_strings
    if description is not None:
        body["description"] = description
    return parse_trained_model_config(body).to_es()


# --------------------------------------------------------------------------- §8.4 test models


class SuperSimple(nn.Module):
    """Elasticsearch's `SuperSimple` test model: ones of shape [batch, 2], float64, four inputs."""

    def forward(self, input_ids: Tensor, argument_2: Tensor, argument_3: Tensor, argument_4: Tensor) -> Tensor:
        return torch.ones((input_ids.size(0), 2), dtype=torch.float64)


def super_simple(model_id: str = "test_model", *, vocabulary: list[str] | None = None,
                 tokenization_options: dict[str, Any] | None = None) -> TinyModel:
    """The pass_through model of es-api.md §8.4, configured as the YAML tests' `test_model`."""
    vocab = vocabulary if vocabulary is not None else ["[PAD]", "[UNK]", "these", "are", "my", "words"]
    options = {"with_special_tokens": False} if tokenization_options is None else tokenization_options
    config = model_config(model_id, "pass_through", tokenization_options=options,
                          description="simple model for testing")
    return TinyModel(torch.jit.script(SuperSimple()), config, vocabulary_body(vocab))


class TinyTextEmbedding(nn.Module):
    """A deterministic-per-input vector: position-weighted sum of a fixed random table, squashed."""

    def __init__(self, vocab_size: int, dim: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("table", torch.rand((vocab_size, dim), generator=gen) * 2 - 1)
        self.vocab_size = vocab_size

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Optional[Tensor] = None,
                position_ids: Optional[Tensor] = None) -> Tensor:
        rows = self.table[input_ids.remainder(self.vocab_size)]                  # [B, T, D]
        weights = torch.arange(1, input_ids.size(1) + 1, dtype=rows.dtype).view(1, -1, 1)
        mask = (attention_mask == 1).to(rows.dtype).unsqueeze(-1)
        return torch.tanh((rows * weights * mask).sum(dim=1) / input_ids.size(1))  # [B, D]


def text_embedding(model_id: str = "tiny_text_embedding", *, dim: int = 100, seed: int = 7,
                   tokenization: str = "bert", tokenization_options: dict[str, Any] | None = None,
                   prefix_strings: dict[str, str] | None = None) -> TinyModel:
    """`TinyTextEmbedding` of §8.4: the same input always gives the same `dim`-vector.

    Any tokenization family (bert, mpnet, roberta, xlm_roberta, deberta_v2) with its tiny vocabulary.
    """
    body = vocabulary_for(tokenization)
    lower = {"do_lower_case": True} if tokenization in ("bert", "mpnet") else {}
    config = model_config(model_id, "text_embedding", {"embedding_size": dim}, tokenization=tokenization,
                          tokenization_options={**lower, **(tokenization_options or {})},
                          prefix_strings=prefix_strings)
    model = TinyTextEmbedding(len(body["vocabulary"]), dim, seed)
    return TinyModel(torch.jit.script(model), config, body)


class TinyTextExpansion(nn.Module):
    """1.0 at every token id present in the input, 0 elsewhere: [batch, max(id)+1]."""

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Optional[Tensor] = None,
                position_ids: Optional[Tensor] = None) -> Tensor:
        width = int(input_ids.max().item()) + 1
        out = torch.zeros((input_ids.size(0), width), dtype=torch.float32)
        return out.scatter(1, input_ids, torch.ones(input_ids.shape, dtype=torch.float32))


def text_expansion(model_id: str = "tiny_text_expansion", *, tokenization: str = "bert",
                   tokenization_options: dict[str, Any] | None = None) -> TinyModel:
    """`TinyTextExpansion` of §8.4: predicted_value maps each input token to 1.0."""
    lower = {"do_lower_case": True} if tokenization in ("bert", "mpnet") else {}
    config = model_config(model_id, "text_expansion", tokenization=tokenization,
                          tokenization_options={**lower, **(tokenization_options or {})})
    return TinyModel(torch.jit.script(TinyTextExpansion()), config, vocabulary_for(tokenization))
