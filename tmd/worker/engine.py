"""The inference engine: one model, a bounded queue of documents, allocation lanes, a cache.

The HTTP layer builds an `InferenceRequest` (its documents plus a callback that wakes the
waiting coroutine), prepares (tokenizes) it and `submit`s it; lanes take up to
`max_batch_size` queued documents at once (from one request or many), answer cache hits at
once, run the rest as one or a few forward passes (tmd.worker.batching) and postprocess each
document, entirely off the event loop. Every document keeps its own semantics: its request's
timeout, its result slot, its count in the stats. The callback fires once
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
from tmd.worker.batching import NO_BATCHING, BatchPlan, plan_groups, rows_of, split_output, width_of
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
                 queue_capacity: int, cache_bytes: int, stats: WorkerStats | None = None,
                 max_batch_size: int = 1, max_batch_delay: float = 0.0, plan: BatchPlan = NO_BATCHING) -> None:
        """`plan` comes from tmd.worker.batching.probe; with NO_BATCHING every document runs alone
        (cache hits are still answered first), whatever `max_batch_size` says."""
        self.model = model
        self.pipeline = pipeline
        self.plan = plan
        self.cache = InferenceCache(cache_bytes)
        self.stats = stats or WorkerStats()
        self.queue: InferenceQueue[tuple[InferenceRequest, int]] = InferenceQueue(queue_capacity)
        self.lanes: AllocationLanes[tuple[InferenceRequest, int]] = AllocationLanes(
            self.queue, self._work, threads=threads, max_batch_size=max_batch_size, max_batch_delay=max_batch_delay)
        self.lanes.set_allocations(allocations)

    def set_batching(self, max_batch_size: int, max_batch_delay: float) -> None:
        """Change the batching knobs live: each lane reads them when it takes its next batch."""
        self.lanes.max_batch_size = max_batch_size
        self.lanes.max_batch_delay = max_batch_delay

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
    def _work(self, items: list[tuple[InferenceRequest, int]]) -> None:
        """One lane's batch: cache hits answered at once, the rest in as few forward passes as the plan allows.

        A document whose request already finished (timed out or failed while queued) is never run.
        """
        misses: list[tuple[InferenceRequest, int, Any]] = []
        cache = self.cache
        for request, index in items:
            if request.finished:
                continue
            prepared = request.prepared[index]
            if cache.enabled:
                start = time.perf_counter()
                cached = cache.get(prepared.cache_key)
                if cached is not None:
                    self._finish(request, index, prepared, cached, (time.perf_counter() - start) * 1000.0, True)
                    continue
            misses.append((request, index, prepared))
        if not misses:
            return
        if len(misses) == 1 or not self.plan.enabled:
            for item in misses:
                self._run_one(*item)
            return
        widths = [width_of(p) for _, _, p in misses]
        rows = [rows_of(p) for _, _, p in misses]
        for group in plan_groups(widths, rows, self.plan.mode, self.lanes.max_batch_size):
            if len(group) == 1:
                self._run_one(*misses[group[0]])
            else:
                self._run_batch([misses[i] for i in group], [widths[i] for i in group], [rows[i] for i in group])

    def _run_one(self, request: InferenceRequest, index: int, prepared: Any) -> None:
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                output = self.model(*prepared.inputs)
        except Exception as err:  # the model failed on valid input: a process error
            log.warning("inference failed: %s", err)
            self.stats.record_error()
            request.fail(_process_error(err))
            return
        time_ms = (time.perf_counter() - start) * 1000.0
        tokens = prepared.inputs[0].numel()
        self.stats.record_batch(1, tokens, tokens)
        if self.cache.enabled:
            self.cache.put(prepared.cache_key, output)
        self._finish(request, index, prepared, output, time_ms, False)

    def _run_batch(self, group: list[tuple[InferenceRequest, int, Any]], widths: list[int], rows: list[int]) -> None:
        """One forward pass for `group`; if the model refuses the batch, each document runs alone."""
        width = max(widths)
        start = time.perf_counter()
        try:
            inputs = self.pipeline.collate([p for _, _, p in group], width)  # type: ignore[attr-defined]
            with torch.inference_mode():
                output = self.model(*inputs)
            parts = split_output(output, rows, widths, width, self.plan.trim)
        except Exception as err:
            log.warning("a batch of %d documents failed (%s); running them one at a time", len(group), err)
            for item in group:
                self._run_one(*item)
            return
        per_doc_ms = (time.perf_counter() - start) * 1000.0 / len(group)
        self.stats.record_batch(len(group), sum(w * r for w, r in zip(widths, rows)), width * sum(rows))
        for (request, index, prepared), part in zip(group, parts):
            if self.cache.enabled:
                part = part.clone()  # a cached part must not keep the whole batch's output alive
                self.cache.put(prepared.cache_key, part)
            self._finish(request, index, prepared, part, per_doc_ms, False)

    def _finish(self, request: InferenceRequest, index: int, prepared: Any, output: Any, time_ms: float,
                hit: bool) -> None:
        """Postprocess one document's output and hand its result to its request."""
        try:
            result = self.pipeline.postprocess(prepared, output)
        except ElasticsearchError as err:
            request.fail(err)
            return
        except Exception as err:  # a task failed on the model's output: a process error
            log.warning("inference failed: %s", err)
            self.stats.record_error()
            request.fail(_process_error(err))
            return
        if request.complete(index, result):
            self.stats.record_inference(time_ms, hit)

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
