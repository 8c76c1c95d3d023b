"""Prometheus metrics, read from the worker's stats at scrape time.

A custom collector (rather than counters bumped per request) keeps the inference path free of
metric bookkeeping and guarantees `/metrics` and `/stats` never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tmd.worker.stats import StatsSnapshot

CONTENT_TYPE = CONTENT_TYPE_LATEST  # the text format generate_latest writes


class WorkerCollector(Collector):
    def __init__(self, read: Callable[[], tuple[StatsSnapshot, dict[str, int]] | None],
                 labels: Callable[[], dict[str, str]]) -> None:
        self._read = read
        self._labels = labels

    def collect(self) -> Iterator:
        state = self._read()
        if state is None:  # still loading: nothing to report yet
            return
        s, gauges = state
        labels = self._labels()  # read per scrape: the deployment id is known only after loading
        names, values = list(labels), list(labels.values())

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        yield counter("tmd_inference", "Documents inferred (cache hits included)", s.inference_count)
        yield counter("tmd_inference_cache_hits", "Documents answered from the inference cache", s.cache_hit_count)
        yield counter("tmd_inference_time_seconds", "Total inference time", s.total_time_ms / 1000.0)
        yield counter("tmd_inference_errors", "Documents that failed in the model", s.error_count)
        yield counter("tmd_rejected_executions", "Documents rejected because the queue was full or closed", s.rejected_execution_count)
        yield counter("tmd_inference_timeouts", "Documents abandoned because their request timed out", s.timeout_count)
        yield counter("tmd_forward_passes", "Forward passes of the model (a batch is one)", s.forward_passes)
        yield counter("tmd_batched_documents", "Documents computed by forward passes (cache hits excluded)", s.batched_documents)
        yield counter("tmd_batch_tokens", "Token positions of real input in forward passes", s.real_tokens)
        yield counter("tmd_batch_padded_tokens", "Token positions in forward passes, padding included", s.padded_tokens)
        yield gauge("tmd_pending_requests", "Documents queued or being computed", gauges["pending"])
        yield gauge("tmd_number_of_allocations", "Allocation lanes", gauges["allocations"])
        yield gauge("tmd_threads_per_allocation", "Threads per allocation lane", gauges["threads"])
        yield gauge("tmd_queue_capacity", "Queue capacity in documents", gauges["queue_capacity"])
        yield gauge("tmd_peak_throughput_per_minute", "Most documents inferred in one minute bucket", s.peak_throughput_per_minute)
        yield gauge("tmd_start_time_seconds", "Worker start time (epoch seconds)", s.start_time_ms / 1000.0)


def make_registry(collector: WorkerCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
