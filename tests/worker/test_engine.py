"""The engine in-process: queue → lanes → model, with a real TorchScript model.

The pipeline here is a minimal text → tensor mapping written for these tests, so the engine's
own behaviour (ordering, first error wins, cache counting, live resizing, draining) is
checked apart from tokenization; tests/worker/test_worker_process.py covers the real
pipelines end to end.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
import torch

from tmd.api.errors import IllegalArgument, RejectedExecution
from tmd.worker.engine import InferenceEngine, InferenceRequest


class Doubler(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x < 0).any()):
            raise RuntimeError("negative input")
        return x * 2


@dataclass
class CharPrepared:
    inputs: tuple[torch.Tensor, ...]
    cache_key: bytes


class CharPipeline:
    model_id = "doubler"
    task = "pass_through"

    def prepare(self, doc: dict, inference_config: dict | None = None, *, prefix: str | None = None) -> CharPrepared:
        text = doc.get("input")
        if not isinstance(text, str):
            raise IllegalArgument("Input field [input] does not exist in the source document")
        values = [-1.0] if text == "boom" else [float(ord(c)) for c in (prefix or "") + text]
        return CharPrepared((torch.tensor(values),), text.encode())

    def postprocess(self, prepared: CharPrepared, output: torch.Tensor) -> dict:
        return {"predicted_value": output.tolist()}


@pytest.fixture(scope="module")
def model() -> torch.jit.ScriptModule:
    return torch.jit.script(Doubler())


def make_engine(model, **kw) -> InferenceEngine:
    args = dict(allocations=1, threads=1, queue_capacity=64, cache_bytes=10240)
    args.update(kw)
    return InferenceEngine(model, CharPipeline(), **args)


def run(engine: InferenceEngine, docs: list[dict], timeout: float = 10.0) -> InferenceRequest:
    done = threading.Event()
    request = InferenceRequest(docs, None, None, done.set)
    engine.submit(request)
    assert done.wait(timeout), "request never finished"
    return request


def test_results_in_order_and_cache_counts(model) -> None:
    engine = make_engine(model, allocations=2)
    try:
        request = run(engine, [{"input": "words"}, {"input": "are"}, {"input": "words"}])
        assert request.error is None
        assert request.results == [{"predicted_value": [2.0 * ord(c) for c in w]} for w in ("words", "are", "words")]
        # The two "words" may run at once on two lanes; then neither hits. Run once more to be sure.
        run(engine, [{"input": "words"}])
        snap = engine.stats.snapshot()
        assert snap.inference_count == 4 and snap.cache_hit_count >= 1
        engine.clear_cache()
        hits = snap.cache_hit_count
        run(engine, [{"input": "words"}])
        assert engine.stats.snapshot().cache_hit_count == hits
    finally:
        engine.drain()


def test_first_error_fails_request_and_model_errors_are_counted(model) -> None:
    engine = make_engine(model)
    try:
        with pytest.raises(IllegalArgument, match="does not exist") as bad_input:  # refused before queueing
            run(engine, [{"input": "ok"}, {"other": "x"}, {"input": "fine"}])
        assert bad_input.value.status == 400 and engine.queue.pending == 0
        assert engine.stats.snapshot().error_count == 0  # a user mistake is not a process error
        crashed = run(engine, [{"input": "boom"}])
        assert crashed.error is not None and crashed.error.status == 500
        assert crashed.error.reason.startswith("Error in inference process: [") and "negative input" in crashed.error.reason
        assert engine.stats.snapshot().error_count == 1
    finally:
        engine.drain()


def test_abandoned_request_is_skipped_and_counted(model) -> None:
    engine = make_engine(model, cache_bytes=0)
    engine.set_allocations(1)
    gate = threading.Event()
    blocker_started = threading.Event()
    original = engine.pipeline.postprocess

    def slow_postprocess(prepared, output):  # holds the lane, which postprocesses after the model
        if prepared.cache_key == b"block":
            blocker_started.set()
            gate.wait(10)
        return original(prepared, output)

    engine.pipeline.postprocess = slow_postprocess  # type: ignore[method-assign]
    try:
        blocker_done = threading.Event()
        blocker = InferenceRequest([{"input": "block"}], None, None, blocker_done.set)
        engine.submit(blocker)
        assert blocker_started.wait(10)
        waiting = InferenceRequest([{"input": "a"}, {"input": "b"}], None, None, lambda: None)
        engine.submit(waiting)
        assert engine.queue.pending == 3
        assert engine.timed_out(waiting)  # still queued: both documents time out
        gate.set()
        assert blocker_done.wait(10)
        engine.drain()
        snap = engine.stats.snapshot()
        assert snap.timeout_count == 2 and snap.inference_count == 1  # the abandoned docs never ran
        assert not engine.timed_out(blocker)  # finished requests cannot time out
    finally:
        gate.set()
        engine.drain()


def test_full_queue_rejects_whole_request(model) -> None:
    engine = make_engine(model, queue_capacity=2)
    engine.lanes.set_allocations(1)
    gate = threading.Event()
    original = engine.pipeline.postprocess
    engine.pipeline.postprocess = lambda prepared, output: (gate.wait(10), original(prepared, output))[1]  # type: ignore[method-assign]
    try:
        first = InferenceRequest([{"input": "a"}], None, None, lambda: None)
        engine.submit(first)
        while engine.queue.queued:  # the lane takes it and blocks on the gate
            time.sleep(0.001)
        engine.submit(InferenceRequest([{"input": "b"}, {"input": "c"}], None, None, lambda: None))
        with pytest.raises(RejectedExecution):
            engine.submit(InferenceRequest([{"input": "d"}], None, None, lambda: None))
        assert engine.stats.snapshot().rejected_execution_count == 1
    finally:
        gate.set()
        engine.drain()


def test_live_allocation_changes_drop_nothing(model) -> None:
    engine = make_engine(model, queue_capacity=10_000, cache_bytes=0)
    try:
        requests = []
        for i, n in enumerate([3, 1, 4, 2, 1, 2] * 5):
            engine.set_allocations(n)
            for j in range(20):
                r = InferenceRequest([{"input": f"{i}-{j}"}], None, None, lambda: None)
                engine.submit(r)
                requests.append(r)
        engine.set_allocations(2)
        engine.drain(timeout=30)
        assert all(r.finished and r.error is None and r.results[0] is not None for r in requests)
        assert engine.stats.snapshot().inference_count == len(requests)
        assert engine.lanes.live_lanes() == 0
    finally:
        engine.drain()


def test_lane_count_follows_target(model) -> None:
    engine = make_engine(model)
    try:
        engine.set_allocations(4)
        assert engine.lanes.live_lanes() == 4
        engine.set_allocations(1)
        assert engine.lanes.wait_for_surplus_to_leave(10)  # idle lanes leave at once
        assert engine.lanes.live_lanes() == 1 and engine.number_of_allocations == 1
    finally:
        engine.drain()


def test_shrinking_waits_for_busy_lanes_to_finish_their_item(model) -> None:
    engine = make_engine(model, allocations=2, cache_bytes=0)
    gate = threading.Event()
    started = threading.Semaphore(0)
    original = engine.pipeline.postprocess

    def blocking_postprocess(prepared, output):
        started.release()
        gate.wait(10)
        return original(prepared, output)

    engine.pipeline.postprocess = blocking_postprocess  # type: ignore[method-assign]
    try:
        done = [threading.Event(), threading.Event()]
        requests = [InferenceRequest([{"input": t}], None, None, d.set) for t, d in zip(("a", "b"), done)]
        for r in requests:
            engine.submit(r)
        assert started.acquire(timeout=10) and started.acquire(timeout=10)  # both lanes busy
        engine.set_allocations(1)
        assert not engine.lanes.wait_for_surplus_to_leave(0.2)  # no lane may leave mid-item
        gate.set()
        assert engine.lanes.wait_for_surplus_to_leave(10) and engine.lanes.live_lanes() == 1
        assert all(d.wait(10) for d in done) and all(r.error is None for r in requests)
    finally:
        gate.set()
        engine.drain()
