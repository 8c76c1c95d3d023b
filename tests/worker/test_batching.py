"""Dynamic batching keeps every per-document semantic: same results, timeouts, cache, allocation changes.

The engines here run real tiny TorchScript models through the real NLP pipelines, in-process;
a request's documents are queued together, so a batching lane takes them together and runs
them as one or a few padded forward passes. Each test compares with the same engine code
running one document per pass (max_batch_size 1).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

import tmd.tinymodels as tiny
from tests.worker.batching_support import assert_same_results, engine_for, infer, load, one_by_one
from tmd.worker.batching import BatchMismatch, plan_groups, probe, split_output
from tmd.worker.engine import InferenceRequest
from tmd.worker.nlp.inputs import collate

# Mixed lengths in one request; the last is longer than max_sequence_length and is truncated.
TEXTS = [
    "Josh lives in Berlin",
    "the food was great and the game was fun",
    "Sarah",
    "the capital of france is paris and the team won the game in new york with josh and sarah " * 3,
    "a terrible awful movie",
]
TRUNCATING = {"max_sequence_length": 24, "truncate": "first"}
TRUNCATING_SECOND = {"max_sequence_length": 24, "truncate": "second"}  # pairs: the document is the second text

CASES = {
    # builder, documents, inference_config override, the probe's expected mode
    "ner": (lambda: tiny.ner(tokenization_options=TRUNCATING), TEXTS, None, "pad"),
    "text_classification": (lambda: tiny.text_classification(tokenization_options=TRUNCATING), TEXTS, None, "pad"),
    "zero_shot_classification": (lambda: tiny.zero_shot_classification(tokenization_options=TRUNCATING), TEXTS,
                                 {"zero_shot_classification": {"labels": ["sports", "food", "politics"]}}, "pad"),
    "fill_mask": (lambda: tiny.fill_mask(tokenization_options=TRUNCATING),
                  ["the capital of france is [MASK]", "[MASK] lives in berlin and plays the game with sarah",
                   "the [MASK] " + "is great " * 20], None, "pad"),
    "text_similarity": (lambda: tiny.text_similarity(tokenization_options=TRUNCATING_SECOND), TEXTS,
                        {"text_similarity": {"text": "football game"}}, "pad"),
    "pass_through": (lambda: tiny.super_simple(tokenization_options={"with_special_tokens": False}),
                     ["these are my words", "words", "my words are these words"], None, "pad"),
    "text_embedding": (lambda: tiny.text_embedding(tokenization_options=TRUNCATING), TEXTS, None, "equal"),
    "text_expansion": (lambda: tiny.text_expansion(tokenization_options=TRUNCATING), TEXTS, None, "equal"),
    "question_answering": (lambda: tiny.question_answering(tokenization_options=TRUNCATING_SECOND), TEXTS,
                           {"question_answering": {"question": "who lives in berlin?"}}, "none"),
    "encoder": (lambda: tiny.benchmark_encoder(layers=2, hidden=64, heads=2, max_sequence_length=24,
                                               tokenization_options={"truncate": "first"}), TEXTS, None, "pad"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_batched_results_equal_one_at_a_time(name: str, tmp_path: Path) -> None:
    build, texts, config, mode = CASES[name]
    loaded, sample = load(build().write(tmp_path / name))
    docs = [{"input": t} for t in texts]
    alone_engine = engine_for(loaded, sample, batch=1)
    batch_engine = engine_for(loaded, sample, batch=len(docs), delay=0.5)
    try:
        assert batch_engine.plan.mode == mode, batch_engine.plan
        alone = one_by_one(alone_engine, docs, config)
        batched = infer(batch_engine, docs, config)
        assert_same_results(batched, alone)
        if name != "pass_through":
            assert any(r.get("is_truncated") for r in batched), "the long text should have been truncated"
        snap = batch_engine.stats.snapshot()
        assert snap.inference_count == len(docs) and snap.batched_documents == len(docs)
        if mode == "none":
            assert snap.forward_passes == len(docs)
        elif mode == "pad":
            assert snap.forward_passes < len(docs)  # some documents shared a pass
            assert snap.padded_tokens > snap.real_tokens  # and were padded to do so
    finally:
        alone_engine.drain()
        batch_engine.drain()


def test_equal_mode_batches_only_equal_lengths(tmp_path: Path) -> None:
    loaded, sample = load(tiny.text_embedding().write(tmp_path / "m"))
    engine = engine_for(loaded, sample, batch=8, delay=0.5)
    alone = engine_for(loaded, sample, batch=1)
    try:
        docs = [{"input": t} for t in ("josh", "sarah", "berlin", "josh lives in berlin")]
        assert_same_results(infer(engine, docs), one_by_one(alone, docs))
        snap = engine.stats.snapshot()
        assert snap.forward_passes == 2 and snap.padded_tokens == snap.real_tokens  # the 3 one-word docs, then 1
    finally:
        engine.drain()
        alone.drain()


def test_cache_hits_never_enter_a_batch(tmp_path: Path) -> None:
    loaded, sample = load(tiny.ner().write(tmp_path / "m"))
    engine = engine_for(loaded, sample, batch=8, delay=0.5, cache_bytes=1 << 20)
    try:
        first = infer(engine, [{"input": "Josh lives in Berlin"}])
        before = engine.stats.snapshot()
        docs = [{"input": "Sarah works in Paris"}, {"input": "Josh lives in Berlin"}, {"input": "the game"}]
        results = infer(engine, docs)
        after = engine.stats.snapshot()
        assert results[1] == first[0]
        assert after.cache_hit_count - before.cache_hit_count == 1
        assert after.forward_passes - before.forward_passes == 1  # the two misses shared one pass
        assert after.batched_documents - before.batched_documents == 2  # the hit was not in it
        assert after.inference_count - before.inference_count == 3
    finally:
        engine.drain()


def _hold_the_lane(engine) -> tuple[threading.Event, threading.Event]:
    """Make the next document's postprocess block the lane until `gate` is set."""
    gate, started = threading.Event(), threading.Event()
    original = engine.pipeline.postprocess

    def blocking(prepared, output):
        if prepared.text == "hold":
            started.set()
            gate.wait(10)
        return original(prepared, output)

    engine.pipeline.postprocess = blocking
    return gate, started


def test_timed_out_documents_never_run_in_a_batch(tmp_path: Path) -> None:
    loaded, sample = load(tiny.text_classification().write(tmp_path / "m"))
    engine = engine_for(loaded, sample, batch=16)
    gate, started = _hold_the_lane(engine)
    try:
        holder = InferenceRequest([{"input": "hold"}], None, None, lambda: None)
        engine.submit(holder)
        assert started.wait(10)
        late = InferenceRequest([{"input": "a good game"}, {"input": "bad"}], None, None, lambda: None)
        kept_done = threading.Event()
        kept = InferenceRequest([{"input": "great"}], None, None, kept_done.set)
        engine.submit(late)
        engine.submit(kept)
        assert engine.timed_out(late)  # both its documents are still queued
        gate.set()
        assert kept_done.wait(10) and kept.error is None
        snap = engine.stats.snapshot()
        assert snap.timeout_count == 2 and snap.inference_count == 2  # holder + kept; the late pair never ran
        assert snap.batched_documents == 2
    finally:
        gate.set()
        engine.drain()


def test_full_queue_rejects_while_lanes_batch(tmp_path: Path) -> None:
    loaded, sample = load(tiny.text_classification().write(tmp_path / "m"))
    engine = engine_for(loaded, sample, batch=4, queue_capacity=5)
    gate, started = _hold_the_lane(engine)
    try:
        engine.submit(InferenceRequest([{"input": "hold"}], None, None, lambda: None))
        assert started.wait(10)
        accepted = InferenceRequest([{"input": f"text {i}"} for i in range(5)], None, None, lambda: None)
        engine.submit(accepted)
        from tmd.api.errors import RejectedExecution
        with pytest.raises(RejectedExecution, match="inference process queue is full. Unable to execute command"):
            engine.submit(InferenceRequest([{"input": "one more"}], None, None, lambda: None))
        gate.set()
        engine.drain(timeout=30)
        snap = engine.stats.snapshot()
        assert snap.rejected_execution_count == 1 and snap.inference_count == 6
        assert all(r is not None for r in accepted.results)
    finally:
        gate.set()
        engine.drain()


def test_live_allocation_changes_mid_batch_drop_nothing(tmp_path: Path) -> None:
    loaded, sample = load(tiny.ner().write(tmp_path / "m"))
    engine = engine_for(loaded, sample, batch=8, delay=0.002)
    try:
        requests = []
        for i, n in enumerate([3, 1, 4, 2, 1, 2] * 4):
            engine.set_allocations(n)
            for j in range(6):
                r = InferenceRequest([{"input": f"Josh {i} lives in Berlin {j}"}, {"input": "Sarah"}], None, None,
                                     lambda: None)
                engine.submit(r)
                requests.append(r)
        engine.set_allocations(1)
        engine.drain(timeout=60)
        assert all(r.finished and r.error is None and None not in r.results for r in requests)
        snap = engine.stats.snapshot()
        assert snap.inference_count == 2 * len(requests)
        assert snap.batched_documents == 2 * len(requests)
        assert engine.lanes.live_lanes() == 0
    finally:
        engine.drain()


def test_a_batch_the_model_refuses_runs_one_at_a_time(tmp_path: Path) -> None:
    """A model that fails only on some batches still answers every document (each alone)."""

    class OnlyPairs(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor,
                    positions: torch.Tensor) -> torch.Tensor:
            if input_ids.size(0) > 2:
                raise RuntimeError("batch too large")
            return (input_ids * mask).sum(dim=1, keepdim=True).to(torch.float64)

    base = tiny.super_simple(tokenization_options={"with_special_tokens": False})
    model_dir = tiny.write_model_dir(tmp_path / "m", model=torch.jit.script(OnlyPairs()), config=base.config,
                                     vocabulary=base.vocabulary)
    loaded, sample = load(model_dir)
    engine = engine_for(loaded, sample, batch=8, delay=0.5)
    try:
        assert engine.plan.mode == "pad"
        docs = [{"input": t} for t in ("these", "are", "my", "words")]
        results = infer(engine, docs)
        assert [r["predicted_value"] for r in results] == [[[2.0]], [[3.0]], [[4.0]], [[5.0]]]
        assert engine.stats.snapshot().error_count == 0
    finally:
        engine.drain()


# --- the pure parts -----------------------------------------------------------------------

def test_plan_groups_sorts_by_length_and_bounds_padding_and_size() -> None:
    widths = [10, 3, 10, 40, 9, 3]
    rows = [1] * 6
    assert plan_groups(widths, rows, "none", 8) == [[1], [5], [4], [0], [2], [3]]
    assert plan_groups(widths, rows, "equal", 8) == [[1, 5], [4], [0, 2], [3]]
    groups = plan_groups(widths, rows, "pad", 8, max_waste=0.25)
    assert sorted(i for g in groups for i in g) == list(range(6))
    for g in groups:
        w = max(widths[i] for i in g)
        assert 1 - sum(widths[i] for i in g) / (w * len(g)) <= 0.25
    assert [3] in groups  # the long one is alone
    assert all(len(g) <= 2 for g in plan_groups([5] * 5, [1] * 5, "pad", 2))


def test_collate_pads_with_pad_token_zero_attention_and_continued_positions() -> None:
    a = (torch.tensor([[5, 6]]), torch.tensor([[1, 1]]), torch.tensor([[0, 0]]), torch.tensor([[0, 1]]))
    b = (torch.tensor([[7, 8, 9], [7, 9, 1]]), torch.tensor([[1, 1, 1], [1, 1, 1]]), torch.zeros(2, 3, dtype=torch.int64),
         torch.tensor([[0, 1, 2], [0, 1, 2]]))
    tokens, mask, types, positions = collate([a, b], 4, pad_id=1)
    assert tokens.tolist() == [[5, 6, 1, 1], [7, 8, 9, 1], [7, 9, 1, 1]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]]
    assert types.tolist() == [[0] * 4] * 3
    assert positions.tolist() == [[0, 1, 2, 3]] * 3


def test_split_output_trims_token_dimension_and_refuses_other_shapes() -> None:
    out = torch.arange(2 * 4 * 3).reshape(2, 4, 3)
    parts = split_output(out, [1, 1], [2, 4], 4, trim=True)
    assert parts[0].shape == (1, 2, 3) and parts[1].shape == (1, 4, 3)
    assert torch.equal(parts[0], out[:1, :2])
    with pytest.raises(BatchMismatch):
        split_output(torch.zeros(2, 3, 4), [1, 1, 1], [4, 4, 4], 4, trim=False)


def test_probe_without_collate_or_with_a_model_that_fails_is_off(tmp_path: Path) -> None:
    loaded, sample = load(tiny.ner().write(tmp_path / "m"))
    assert probe(loaded.model, None, sample).mode == "none"

    def fails_on_pairs(*inputs):
        if inputs[0].size(0) > 1:
            raise RuntimeError("shape\nfixed batch of 1")
        return loaded.model(*inputs)

    plan = probe(fails_on_pairs, loaded.pipeline.collate, sample)
    assert plan.mode == "none" and "fixed batch of 1" in plan.reason


def test_queue_take_batch_waits_at_most_the_delay() -> None:
    from tmd.worker.queue import InferenceQueue

    q: InferenceQueue[int] = InferenceQueue(100)
    q.offer([1, 2, 3])
    assert q.take_batch(2) == [1, 2] and q.pending == 3
    start = time.monotonic()
    assert q.take_batch(5, delay=0.05) == [3]
    assert 0.04 <= time.monotonic() - start < 1.0
    threading.Timer(0.02, q.offer, args=([4, 5],)).start()
    assert q.take_batch(2, delay=2.0) == [4, 5]  # full before the delay ran out
    for n in (2, 1, 2):
        q.done(n)
    assert q.pending == 0


def test_a_batch_keeps_holding_queue_slots_until_computed() -> None:
    """queue_capacity bounds what waits, batching or not: pending <= capacity + one per busy lane."""
    from tmd.api.errors import RejectedExecution
    from tmd.worker.queue import InferenceQueue

    q: InferenceQueue[int] = InferenceQueue(4)
    q.offer([1, 2, 3, 4])
    assert q.take_batch(16) == [1, 2, 3, 4] and q.queued == 0
    q.offer([5])  # the batch's first document left the queue; its other three still count
    with pytest.raises(RejectedExecution):
        q.offer([6])
    assert q.pending == 5  # capacity 4 + the one document the busy lane took
    q.done(4)
    q.offer([6, 7, 8])
