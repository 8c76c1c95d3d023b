"""The inference engine: one model, a bounded queue of documents, allocation lanes, a cache.

The HTTP layer builds an `InferenceRequest` (its documents plus a callback that wakes the
waiting coroutine) and `submit`s it; lanes prepare (tokenize), look up the cache, run the
model and postprocess each document, entirely off the event loop. The callback fires once
per request, when every document has a result or the first one failed (es-api.md §5.1: the
first error fails the whole request). A request that timed out or failed is marked finished;
its documents still queued are skipped when a lane reaches them (es-api.md §5.3).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch

from tmd.api.errors import ElasticsearchError, StatusException
from tmd.worker.cache import InferenceCache
from tmd.worker.lanes import AllocationLanes
from tmd.worker.queue import InferenceQueue
from tmd.worker.stats import WorkerStats

log = logging.getLogger("tmd.worker.engine")


class Prepared(Protocol):
    inputs: tuple[torch.Tensor, ...]
    cache_key: bytes


class Pipeline(Protocol):
    """What tmd.worker.nlp provides: text in, model inputs; model output, result dict out."""

    model_id: str
    task: str

    def prepare(self, doc: dict, inference_config: dict | None = None, *, prefix: str | None = None) -> Prepared: ...

    def postprocess(self, prepared: Any, output: Any) -> dict: ...


class InferenceRequest:
    """The documents of one request and their results, completed from lane threads."""

    __slots__ = ("docs", "inference_config", "prefix", "prepared", "results", "error", "finished", "_remaining", "_lock",
                 "_on_done")

    def __init__(self, docs: list[dict], inference_config: dict | None, prefix: str | None,
                 on_done: Callable[[], None]) -> None:
        self.docs = docs
        self.inference_config = inference_config
        self.prefix = prefix
        self.prepared: list[Any] = []
        self.results: list[dict | None] = [None] * len(docs)
        self.error: ElasticsearchError | None = None
        self.finished = False
        self._remaining = len(docs)
        self._lock = threading.Lock()
        self._on_done = on_done

    def complete(self, index: int, result: dict) -> bool:
        """Record one document's result; False if the request had already finished (dropped)."""
        with self._lock:
            if self.finished:
                return False
            self.results[index] = result
            self._remaining -= 1
            if self._remaining > 0:
                return True
            self.finished = True
        self._on_done()
        return True

    def fail(self, error: ElasticsearchError) -> None:
        with self._lock:
            if self.finished:
                return
            self.finished = True
            self.error = error
        self._on_done()

    def abandon(self) -> int:
        """Give up waiting (timeout): returns how many documents were still without a result."""
        with self._lock:
            if self.finished:
                return 0
            self.finished = True
            return self._remaining


def _process_error(err: Exception) -> ElasticsearchError:
    """An error raised by the model itself; TorchScript puts the useful line last."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    message = lines[-1] if lines else type(err).__name__
    return StatusException(f"Error in inference process: [{message}]", 500)


class InferenceEngine:
    def __init__(self, model: Any, pipeline: Pipeline, *, allocations: int, threads: int,
                 queue_capacity: int, cache_bytes: int, stats: WorkerStats | None = None) -> None:
        self.model = model
        self.pipeline = pipeline
        self.cache = InferenceCache(cache_bytes)
        self.stats = stats or WorkerStats()
        self.queue: InferenceQueue[tuple[InferenceRequest, int]] = InferenceQueue(queue_capacity)
        self.lanes: AllocationLanes[tuple[InferenceRequest, int]] = AllocationLanes(self.queue, self._work, threads=threads)
        self.lanes.set_allocations(allocations)

    # --- intake (event loop) -------------------------------------------------------------
    def prepare(self, request: InferenceRequest) -> None:
        """Tokenize every document before it is queued, as Elasticsearch tokenizes outside the
        inference process: the allocation lanes then spend their time in the model (profiled: in a
        lane, tokenizing and building inputs took 8% and 18% was not the model), and a bad
        document is refused at once (400) instead of after waiting in the queue.
        Raises the pipeline's ElasticsearchError for the first bad document."""
        pipeline = self.pipeline
        request.prepared = [pipeline.prepare(doc, request.inference_config, prefix=request.prefix)
                            for doc in request.docs]

    def submit(self, request: InferenceRequest) -> None:
        """Queue every (prepared) document of `request` or raise RejectedExecution (counted)."""
        if len(request.prepared) != len(request.docs):
            self.prepare(request)
        try:
            self.queue.offer([(request, i) for i in range(len(request.docs))])
        except ElasticsearchError:
            self.stats.record_rejected(len(request.docs))
            raise

    def timed_out(self, request: InferenceRequest) -> bool:
        """Abandon a request whose timeout expired; False if it finished just in time."""
        missing = request.abandon()
        if missing:
            self.stats.record_timeout(missing)
        return missing > 0

    # --- lanes ---------------------------------------------------------------------------
    def _work(self, item: tuple[InferenceRequest, int]) -> None:
        request, index = item
        if request.finished:  # timed out or failed while queued
            return
        try:
            prepared = request.prepared[index]
            output, time_ms, hit = self._infer(prepared)
            result = self.pipeline.postprocess(prepared, output)
        except ElasticsearchError as err:
            request.fail(err)
            return
        except Exception as err:  # the model or a task failed on valid input: a process error
            log.warning("inference failed: %s", err)
            self.stats.record_error()
            request.fail(_process_error(err))
            return
        if request.complete(index, result):
            self.stats.record_inference(time_ms, hit)

    def _infer(self, prepared: Prepared) -> tuple[Any, float, bool]:
        """The model output for `prepared`, its time in ms, and whether it came from the cache."""
        start = time.perf_counter()
        if self.cache.enabled:
            cached = self.cache.get(prepared.cache_key)
            if cached is not None:
                return cached, (time.perf_counter() - start) * 1000.0, True
            start = time.perf_counter()
        with torch.inference_mode():
            output = self.model(*prepared.inputs)
        time_ms = (time.perf_counter() - start) * 1000.0
        if self.cache.enabled:
            self.cache.put(prepared.cache_key, output)
        return output, time_ms, False

    # --- control -------------------------------------------------------------------------
    def set_allocations(self, n: int) -> None:
        self.lanes.set_allocations(n)

    @property
    def number_of_allocations(self) -> int:
        return self.lanes.number_of_allocations

    @property
    def threads_per_allocation(self) -> int:
        return self.lanes.threads_per_allocation

    def clear_cache(self) -> None:
        self.cache.clear()

    def close_intake(self) -> None:
        self.queue.close_intake()

    def drain(self, timeout: float | None = None) -> None:
        """Finish every queued document, then stop the lanes."""
        self.queue.drain()
        self.lanes.join(timeout)
