"""Adaptive allocations: the scaler's decisions from load samples (pure)."""

from __future__ import annotations

import math

import pytest

from tmd.operator.adaptive import MAX_ALLOCATIONS_SAFEGUARD, Estimator, Sample, Scaler, settings

INTERVAL = 10.0


def feed(scaler: Scaler, rate: float, seconds_per_doc: float, rounds: int) -> list[int | None]:
    """`rounds` samples of `rate` documents/s taking `seconds_per_doc`; the decisions taken."""
    out = []
    for _ in range(rounds):
        n = round(rate * INTERVAL)
        scaler.process(Sample(n, 0, 0, seconds_per_doc if n else math.nan), INTERVAL, scaler.allocations)
        out.append(scaler.scale())
    return out


def test_the_estimator_smooths_noise_and_follows_a_jump_quickly():
    estimator = Estimator()
    for x in (10, 11, 9, 10, 10.5, 9.5):
        estimator.add(x, 1.0)
    assert 9.5 < estimator.value < 10.5
    estimator.add(100, 1.0)  # far outside the error: a change of load, not noise
    estimator.add(100, 1.0)
    assert estimator.value > 90


def test_load_above_the_allocations_scales_up_to_what_it_needs():
    scaler = Scaler(1)
    decisions = feed(scaler, rate=30, seconds_per_doc=0.1, rounds=6)  # 3 busy allocations
    # at once to nearly all it needs, then, as the estimate firms up, one spare (3 / 4 < 0.9 ≤ 3 / 3)
    assert [d for d in decisions if d is not None] == [3, 4]
    assert decisions[0] == 3 and decisions[-3:] == [None, None, None]


def test_no_load_scales_down_to_one_not_to_zero():
    scaler = Scaler(4, minimum=0)
    feed(scaler, rate=0, seconds_per_doc=0.1, rounds=5)
    assert scaler.allocations == 1


def test_min_and_max_bound_the_decision():
    scaler = Scaler(1, minimum=2, maximum=3)
    feed(scaler, rate=100, seconds_per_doc=0.1, rounds=3)
    assert scaler.allocations == 3
    feed(scaler, rate=0, seconds_per_doc=0.1, rounds=5)
    assert scaler.allocations == 2


def test_without_a_maximum_the_safeguard_applies():
    scaler = Scaler(1)
    feed(scaler, rate=1000, seconds_per_doc=0.1, rounds=3)
    assert scaler.allocations == MAX_ALLOCATIONS_SAFEGUARD


def test_steady_load_between_the_thresholds_keeps_the_allocations():
    scaler = Scaler(2)
    decisions = feed(scaler, rate=16, seconds_per_doc=0.1, rounds=20)  # 1.6 busy of 2: 0.8 each
    assert decisions == [None] * 20


def test_samples_subtract_and_add_like_counters():
    earlier = Sample(success=10, pending=2, failed=1, inference_time=0.1)
    later = Sample(success=30, pending=0, failed=3, inference_time=0.2)
    recent = later.minus(earlier)
    assert (recent.success, recent.pending, recent.failed) == (20, 0, 2)
    assert recent.inference_time == pytest.approx((30 * 0.2 - 10 * 0.1) / 20)
    both = recent.plus(Sample(success=20, inference_time=0.1))
    assert both.inference_time == pytest.approx((20 * 0.25 + 20 * 0.1) / 40)
    assert math.isnan(Sample().minus(Sample()).inference_time)


def test_a_sample_from_worker_stats():
    node = {"inference_count": 12, "number_of_pending_requests": 3, "error_count": 1, "timeout_count": 2,
            "rejected_execution_count": 4, "average_inference_time_ms": 25.0}
    assert Sample.from_node_stats(node) == Sample(12, 3, 7, 0.025)


def test_settings_only_when_enabled():
    assert settings({"adaptive_allocations": {"enabled": True, "min_number_of_allocations": 1,
                                              "max_number_of_allocations": 4}}) == (1, 4)
    assert settings({"adaptive_allocations": {"enabled": False}}) is None
    assert settings({"adaptive_allocations": None}) is None
    assert settings({}) is None
