"""Running documents through a real engine with and without dynamic batching, for the batching tests."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from tmd.worker.batching import probe
from tmd.worker.engine import InferenceEngine, InferenceRequest
from tmd.worker.model import LoadedModel, load_model_dir, warm_up

REL_TOL = 1e-4
ABS_TOL = 1e-5


def load(model_dir: Path) -> tuple[LoadedModel, Any]:
    loaded = load_model_dir(str(model_dir))
    return loaded, warm_up(loaded)


def engine_for(loaded: LoadedModel, sample: Any, *, batch: int, delay: float = 0.0, cache_bytes: int = 0,
               allocations: int = 1, queue_capacity: int = 10_000) -> InferenceEngine:
    plan = probe(loaded.model, loaded.pipeline.collate, sample)
    return InferenceEngine(loaded.model, loaded.pipeline, allocations=allocations, threads=1,
                           queue_capacity=queue_capacity, cache_bytes=cache_bytes, max_batch_size=batch,
                           max_batch_delay=delay, plan=plan)


def infer(engine: InferenceEngine, docs: list[dict], config: dict | None = None, timeout: float = 60.0) -> list[dict]:
    """One request of `docs`: its documents are queued together, so a batching lane takes them together."""
    done = threading.Event()
    request = InferenceRequest(docs, config, None, done.set)
    engine.submit(request)
    assert done.wait(timeout), "request never finished"
    assert request.error is None, request.error.body()
    return request.results  # type: ignore[return-value]


def one_by_one(engine: InferenceEngine, docs: list[dict], config: dict | None = None) -> list[dict]:
    return [infer(engine, [doc], config)[0] for doc in docs]


def assert_same_results(batched: Any, alone: Any, path: str = "") -> None:
    """Equal structure, equal strings and labels, floats within a float32 tolerance."""
    if isinstance(alone, dict):
        assert isinstance(batched, dict) and batched.keys() == alone.keys(), f"{path}: {batched} != {alone}"
        for key in alone:
            assert_same_results(batched[key], alone[key], f"{path}.{key}")
    elif isinstance(alone, list):
        assert isinstance(batched, list) and len(batched) == len(alone), f"{path}: lengths differ"
        for i, (b, a) in enumerate(zip(batched, alone)):
            assert_same_results(b, a, f"{path}[{i}]")
    elif isinstance(alone, float) and not isinstance(alone, bool):
        assert math.isclose(batched, alone, rel_tol=REL_TOL, abs_tol=ABS_TOL), f"{path}: {batched} != {alone}"
    else:
        assert batched == alone, f"{path}: {batched!r} != {alone!r}"
