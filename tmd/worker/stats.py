"""Inference statistics with the fields of Elasticsearch's deployment stats (es-api.md §6).

Lanes record each processed document; the HTTP layer records rejections and timeouts. The
"last minute" figures use 60 s buckets aligned to the worker's start, as Elasticsearch's
result processor does: they report the previous complete bucket. Rendering is a pure
function of a snapshot and the time, so it is tested with a fake clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

BUCKET_SECONDS = 60.0


@dataclass
class Bucket:
    index: int = -1
    count: int = 0
    time_ms: float = 0.0
    cache_hits: int = 0


@dataclass
class StatsSnapshot:
    start_time_ms: int
    inference_count: int = 0
    total_time_ms: float = 0.0
    cache_hit_count: int = 0
    cache_hit_time_ms: float = 0.0
    error_count: int = 0
    rejected_execution_count: int = 0
    timeout_count: int = 0
    # dynamic batching (tmd extension): forward passes, the documents they computed, and the
    # real and padded token positions they held (1 - real/padded is the padding waste)
    forward_passes: int = 0
    batched_documents: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    last_access_ms: int | None = None
    peak_throughput_per_minute: int = 0
    current: Bucket = field(default_factory=Bucket)
    previous: Bucket = field(default_factory=Bucket)


class WorkerStats:
    """Thread-safe counters; `wall` gives epoch seconds, `mono` a monotonic clock (injectable)."""

    def __init__(self, wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._mono = mono
        self._mono_start = mono()
        self._lock = threading.Lock()
        self._s = StatsSnapshot(start_time_ms=int(wall() * 1000))

    def _bucket_index(self) -> int:
        return int((self._mono() - self._mono_start) // BUCKET_SECONDS)

    def _roll(self, index: int) -> None:
        """Move to bucket `index`; the bucket just finished becomes `previous` if adjacent."""
        s = self._s
        if s.current.index == index:
            return
        s.previous = s.current if s.current.index == index - 1 else Bucket(index=index - 1)
        s.current = Bucket(index=index)

    def record_inference(self, time_ms: float, cache_hit: bool) -> None:
        with self._lock:
            s = self._s
            self._roll(self._bucket_index())
            s.inference_count += 1
            s.total_time_ms += time_ms
            s.current.count += 1
            s.current.time_ms += time_ms
            if cache_hit:
                s.cache_hit_count += 1
                s.cache_hit_time_ms += time_ms
                s.current.cache_hits += 1
            s.peak_throughput_per_minute = max(s.peak_throughput_per_minute, s.current.count)
            s.last_access_ms = int(self._wall() * 1000)

    def record_batch(self, documents: int, real_tokens: int, padded_tokens: int) -> None:
        """One forward pass over `documents` documents (cache hits make none)."""
        with self._lock:
            s = self._s
            s.forward_passes += 1
            s.batched_documents += documents
            s.real_tokens += real_tokens
            s.padded_tokens += padded_tokens

    def record_error(self, n: int = 1) -> None:
        with self._lock:
            self._s.error_count += n

    def record_rejected(self, n: int = 1) -> None:
        with self._lock:
            self._s.rejected_execution_count += n

    def record_timeout(self, n: int = 1) -> None:
        with self._lock:
            self._s.timeout_count += n

    def snapshot(self) -> StatsSnapshot:
        """A consistent copy, rolled to the current bucket so "last minute" is up to date."""
        with self._lock:
            self._roll(self._bucket_index())
            s = self._s
            return replace(s, current=replace(s.current), previous=replace(s.previous))


def node_stats(s: StatsSnapshot, *, pending: int, allocations: int, threads: int) -> dict[str, Any]:
    """The node-level entry of deployment stats (es-api.md §6.2), less the `node` identity."""
    out: dict[str, Any] = {"routing_state": {"routing_state": "started"}, "inference_count": s.inference_count}
    if s.inference_count > 0:
        out["average_inference_time_ms"] = s.total_time_ms / s.inference_count
        computed = s.inference_count - s.cache_hit_count
        out["average_inference_time_ms_excluding_cache_hits"] = (
            (s.total_time_ms - s.cache_hit_time_ms) / computed if computed > 0 else 0.0
        )
    out["inference_cache_hit_count"] = s.cache_hit_count
    if s.forward_passes > 0:  # tmd extension: documents per forward pass, cache hits excluded
        out["average_batch_size"] = s.batched_documents / s.forward_passes
    if s.last_access_ms is not None:
        out["last_access"] = s.last_access_ms
    out["number_of_pending_requests"] = pending
    for name in ("error_count", "rejected_execution_count", "timeout_count"):
        if getattr(s, name) > 0:
            out[name] = getattr(s, name)
    out["start_time"] = s.start_time_ms
    out["threads_per_allocation"] = threads
    out["number_of_allocations"] = allocations
    out["peak_throughput_per_minute"] = s.peak_throughput_per_minute
    last = s.previous
    out["throughput_last_minute"] = last.count
    if last.count > 0:
        out["average_inference_time_ms_last_minute"] = last.time_ms / last.count
    out["inference_cache_hit_count_last_minute"] = last.cache_hits
    return out


def deployment_stats(
    s: StatsSnapshot,
    *,
    model_id: str,
    deployment_id: str,
    allocations: int,
    threads: int,
    queue_capacity: int,
    cache_size: str,
    priority: str,
) -> dict[str, Any]:
    """The deployment-level fields this one worker knows (es-api.md §6.1); the shim sums nodes."""
    out: dict[str, Any] = {
        "deployment_id": deployment_id,
        "model_id": model_id,
        "threads_per_allocation": threads,
        "number_of_allocations": allocations,
        "queue_capacity": queue_capacity,
        "cache_size": cache_size,
        "priority": priority,
        "start_time": s.start_time_ms,
    }
    for name in ("error_count", "rejected_execution_count", "timeout_count", "inference_count"):
        if getattr(s, name) > 0:
            out[name] = getattr(s, name)
    out["peak_throughput_per_minute"] = s.peak_throughput_per_minute
    return out
