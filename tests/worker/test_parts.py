"""Pure parts of the worker: settings, cache, stats, queue, request parsing."""

from __future__ import annotations

import argparse

import pytest
import torch

from tmd.api.deployment import DEFAULT_MAX_BATCH_SIZE
from tmd.api.errors import ElasticsearchError, ParseError, RejectedExecution, ValidationFailed
from tmd.worker.app import parse_allocations_body, parse_infer_body, parse_json_body, resolve_timeout
from tmd.worker.cache import ENTRY_OVERHEAD_BYTES, InferenceCache, output_nbytes
from tmd.worker.queue import QUEUE_FULL, SHUT_DOWN, InferenceQueue
from tmd.worker.settings import SettingsError, add_arguments, resolve_settings
from tmd.worker.stats import WorkerStats, deployment_stats, node_stats


def parse(argv: list[str], env: dict[str, str] | None = None):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return resolve_settings(parser.parse_args(argv), env or {})


# --- settings ---------------------------------------------------------------------------

def test_flags_override_environment() -> None:
    env = {"TMD_MODEL_DIR": "/env", "TMD_PORT": "9000", "TMD_ALLOCATIONS": "3", "TMD_THREADS": "2",
           "TMD_QUEUE_CAPACITY": "5", "TMD_CACHE_SIZE": "10kb", "TMD_LOW_PRIORITY": "true", "POD_IP": "10.0.0.7"}
    s = parse(["--port", "9100", "--allocations", "4"], env)
    assert (s.model_dir, s.port, s.allocations, s.threads, s.queue_capacity) == ("/env", 9100, 4, 2, 5)
    assert s.cache_size is not None and (s.cache_size.bytes, s.cache_size.text) == (10240, "10kb")
    assert s.low_priority is True
    assert s.host == "10.0.0.7"  # POD_IP is the fallback for TMD_HOST
    assert parse([], {**env, "TMD_HOST": "10.0.0.8"}).host == "10.0.0.8"


def test_defaults() -> None:
    s = parse(["--model-dir", "/m"])
    assert (s.host, s.port, s.allocations, s.threads, s.queue_capacity, s.cache_size, s.low_priority) == (
        "127.0.0.1", 8080, 1, 1, 1024, None, False)
    assert parse(["--model-dir", "/m", "--cache-size", "0"]).cache_size.bytes == 0
    assert (s.max_batch_size, s.max_batch_delay, s.max_batch_delay_s) == (DEFAULT_MAX_BATCH_SIZE, "0ms", 0.0)


def test_batching_flags_and_environment() -> None:
    env = {"TMD_MODEL_DIR": "/env", "TMD_MAX_BATCH_SIZE": "4", "TMD_MAX_BATCH_DELAY": "5ms"}
    s = parse([], env)
    assert (s.max_batch_size, s.max_batch_delay, s.max_batch_delay_s) == (4, "5ms", 0.005)
    assert parse(["--max-batch-size", "1"], env).max_batch_size == 1


@pytest.mark.parametrize("argv, message", [
    ([], "model directory is required"),
    (["--model-dir", "/m", "--allocations", "0"], "[number_of_allocations] must be between 1"),
    (["--model-dir", "/m", "--threads", "x"], "[threads_per_allocation] must be an integer"),
    (["--model-dir", "/m", "--cache-size", "10 parsecs"], "as a size in bytes"),
    (["--model-dir", "/m", "--queue-capacity", "1000001"], "[queue_capacity] must be between 1 and 1000000"),
    (["--model-dir", "/m", "--max-batch-size", "0"], "[max_batch_size] must be between 1 and 1024"),
    (["--model-dir", "/m", "--max-batch-delay", "2"], "failed to parse setting [max_batch_delay]"),
    (["--model-dir", "/m", "--max-batch-delay", "2s"], "[max_batch_delay] must be between 0ms and 1000ms"),
])
def test_bad_settings(argv: list[str], message: str) -> None:
    with pytest.raises(SettingsError, match=None) as info:
        parse(argv)
    assert message in str(info.value)


def test_bad_low_priority_env() -> None:
    with pytest.raises(SettingsError, match="low_priority"):
        parse(["--model-dir", "/m"], {"TMD_LOW_PRIORITY": "maybe"})


# --- cache ------------------------------------------------------------------------------

def test_cache_is_lru_bounded_in_bytes() -> None:
    entry = output_nbytes(torch.zeros(4, dtype=torch.float64)) + 1 + ENTRY_OVERHEAD_BYTES
    cache = InferenceCache(3 * entry)
    for key in (b"a", b"b", b"c"):
        assert cache.put(key, torch.zeros(4, dtype=torch.float64))
    assert cache.used_bytes == 3 * entry
    assert cache.get(b"a") is not None  # a is now the most recent: b is evicted next
    cache.put(b"d", torch.zeros(4, dtype=torch.float64))
    assert cache.get(b"b") is None
    assert all(cache.get(k) is not None for k in (b"a", b"c", b"d"))
    assert cache.used_bytes <= cache.capacity_bytes
    cache.clear()
    assert (len(cache), cache.used_bytes, cache.get(b"a")) == (0, 0, None)


def test_cache_disabled_and_oversized_entries() -> None:
    off = InferenceCache(0)
    assert not off.enabled and not off.put(b"k", torch.ones(1)) and off.get(b"k") is None
    small = InferenceCache(100)
    assert not small.put(b"k", torch.ones(100))  # 400 bytes: larger than the whole cache
    assert len(small) == 0


def test_output_nbytes_of_tuples() -> None:
    assert output_nbytes((torch.ones(2, 3), torch.ones(5, dtype=torch.float64))) == 2 * 3 * 4 + 5 * 8


# --- stats ------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_stats_fields_and_minute_buckets() -> None:
    clock = Clock()
    stats = WorkerStats(wall=clock, mono=clock)
    first = node_stats(stats.snapshot(), pending=0, allocations=2, threads=1)
    assert first == {"routing_state": {"routing_state": "started"}, "inference_count": 0, "inference_cache_hit_count": 0,
                     "number_of_pending_requests": 0, "start_time": 1_000_000, "threads_per_allocation": 1,
                     "number_of_allocations": 2, "peak_throughput_per_minute": 0, "throughput_last_minute": 0,
                     "inference_cache_hit_count_last_minute": 0}
    clock.t += 10
    stats.record_inference(4.0, cache_hit=False)
    stats.record_inference(2.0, cache_hit=False)
    stats.record_inference(0.5, cache_hit=True)
    stats.record_rejected(2)
    out = node_stats(stats.snapshot(), pending=3, allocations=2, threads=1)
    assert out["inference_count"] == 3 and out["inference_cache_hit_count"] == 1
    assert out["average_inference_time_ms"] == pytest.approx(6.5 / 3)
    assert out["average_inference_time_ms_excluding_cache_hits"] == pytest.approx(3.0)
    assert out["last_access"] == 1_010_000 and out["number_of_pending_requests"] == 3
    assert out["rejected_execution_count"] == 2 and "error_count" not in out and "timeout_count" not in out
    assert out["throughput_last_minute"] == 0 and out["peak_throughput_per_minute"] == 3
    clock.t += 60  # bucket 0 is complete: it becomes "last minute"
    out = node_stats(stats.snapshot(), pending=0, allocations=2, threads=1)
    assert out["throughput_last_minute"] == 3 and out["inference_cache_hit_count_last_minute"] == 1
    assert out["average_inference_time_ms_last_minute"] == pytest.approx(6.5 / 3)
    clock.t += 120  # two buckets later with nothing in between: last minute is empty again
    out = node_stats(stats.snapshot(), pending=0, allocations=2, threads=1)
    assert out["throughput_last_minute"] == 0 and "average_inference_time_ms_last_minute" not in out
    assert out["peak_throughput_per_minute"] == 3


def test_deployment_stats_omit_zero_counters() -> None:
    stats = WorkerStats(wall=Clock(), mono=Clock())
    kw = dict(model_id="m", deployment_id="d", allocations=1, threads=2, queue_capacity=8, cache_size="10kb", priority="normal")
    out = deployment_stats(stats.snapshot(), **kw)
    assert "inference_count" not in out and "timeout_count" not in out and out["peak_throughput_per_minute"] == 0
    stats.record_timeout()
    stats.record_inference(1.0, False)
    out = deployment_stats(stats.snapshot(), **kw)
    assert out["timeout_count"] == 1 and out["inference_count"] == 1 and out["cache_size"] == "10kb"


# --- queue ------------------------------------------------------------------------------

def test_queue_admits_whole_requests_or_rejects() -> None:
    q: InferenceQueue[int] = InferenceQueue(3)
    q.offer([1, 2])
    with pytest.raises(RejectedExecution) as info:
        q.offer([3, 4])
    assert info.value.reason == QUEUE_FULL and info.value.status == 429
    q.offer([3])
    assert (q.queued, q.pending) == (3, 3)
    assert q.take() == 1 and (q.queued, q.pending) == (2, 3)
    q.done()
    q.close_intake()
    with pytest.raises(RejectedExecution, match=SHUT_DOWN):
        q.offer([9])
    q.drain()
    assert [q.take(), q.take(), q.take()] == [2, 3, None]  # queued items still come out, then stop


def test_queue_retire_comes_before_work() -> None:
    q: InferenceQueue[int] = InferenceQueue(3)
    q.offer([1])
    q.retire(2)
    assert q.unretire(1) == 1
    assert q.take() is None  # one retirement left
    assert q.take() == 1


# --- request parsing --------------------------------------------------------------------

def test_parse_infer_body() -> None:
    docs, config, prefix, timeout = parse_infer_body(
        {"docs": [{"input": "a"}], "inference_config": {"ner": {}}, "timeout": "1s"})
    assert (docs, config, prefix, timeout) == ([{"input": "a"}], {"ner": {}}, None, "1s")


@pytest.mark.parametrize("body, error, text", [
    ([1], ParseError, "must be a JSON object"),
    ({}, ValidationFailed, "Validation Failed: 1: at least one document is required;"),
    ({"docs": []}, ValidationFailed, "at least one document is required"),
    ({"docs": ["text"]}, ParseError, "failed to parse field [docs]"),
    ({"docs": {"input": "x"}}, ParseError, "failed to parse field [docs]"),
    ({"docs": [{"input": "x"}], "inference_config": []}, ParseError, "failed to parse field [inference_config]"),
    ({"docs": [{"input": "x"}], "bogus": 1}, ParseError, "unknown field [bogus]"),
])
def test_parse_infer_body_errors(body, error, text) -> None:
    with pytest.raises(error) as info:
        parse_infer_body(body)
    assert text in info.value.reason and info.value.status == 400


def test_parse_json_body_errors() -> None:
    for raw in (b"", b"  ", b"{not json", b"\xff\xfe"):
        with pytest.raises(ParseError):
            parse_json_body(raw)


def test_timeouts() -> None:
    assert resolve_timeout(None, None).text == "10s"
    assert resolve_timeout("500ms", "3s").seconds == pytest.approx(0.5)  # the query wins
    assert resolve_timeout(None, "3s").text == "3s"
    assert resolve_timeout(None, "-1").seconds is None
    with pytest.raises(ElasticsearchError):
        resolve_timeout("soon", None)
    with pytest.raises(ElasticsearchError):
        resolve_timeout(None, {"s": 1})


def test_parse_allocations_body() -> None:
    assert parse_allocations_body({"number_of_allocations": 3}) == 3
    for bad in ({}, {"number_of_allocations": 0}, {"number_of_allocations": "2"}, {"number_of_allocations": True}, []):
        with pytest.raises(ValidationFailed, match=r"\[number_of_allocations\] must be a positive integer"):
            parse_allocations_body(bad)


def test_average_batch_size_counts_documents_per_forward_pass() -> None:
    stats = WorkerStats()
    assert "average_batch_size" not in node_stats(stats.snapshot(), pending=0, allocations=1, threads=1)
    stats.record_batch(4, real_tokens=30, padded_tokens=40)
    stats.record_batch(1, real_tokens=5, padded_tokens=5)
    snap = stats.snapshot()
    assert node_stats(snap, pending=0, allocations=1, threads=1)["average_batch_size"] == 2.5
    assert (snap.real_tokens, snap.padded_tokens) == (35, 45)
