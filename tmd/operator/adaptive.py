"""Adaptive allocations (es-api §2.6): how many allocations a deployment's load needs.

The same method as Elasticsearch's adaptive allocations scaler, so a deployment scales here as
it would there. Every interval the workers' counters give a sample (documents inferred, pending
and failed, mean inference time); two one-dimensional Kalman filters smooth the request rate and
the inference time; their product is the load in busy allocations. Scale up while the lower
bound of the load per allocation exceeds 0.9, down while the upper bound of the load on one
allocation fewer stays under 0.85: the gap keeps it from flapping. Pure: time is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

SCALE_UP_THRESHOLD = 0.9
SCALE_DOWN_THRESHOLD = 0.85
# Without max_number_of_allocations, never scale past this (Elasticsearch's safeguard).
MAX_ALLOCATIONS_SAFEGUARD = 32
# About the last 100 samples count (15 minutes at 10 s), as in Elasticsearch.
SMOOTHING = 100.0
JUMP_SIGMAS_SQUARED = 100.0  # a measurement 10 standard errors off means the load changed


class Estimator:
    """Mean and standard error of a drifting quantity from noisy measurements (a 1-d Kalman
    filter with a fixed amount of smoothing). On a jump, detected or announced, the next step
    forgets most of the history, so a new load is followed within a sample or two."""

    def __init__(self, smoothing: float = SMOOTHING, detect_jumps: bool = True) -> None:
        self.smoothing = smoothing
        self.detect_jumps = detect_jumps
        self.value: float | None = None
        self.variance = math.inf
        self._jumped_last = False

    @property
    def has_value(self) -> bool:
        return self.value is not None

    def add(self, measurement: float, variance: float, changed: bool = False) -> None:
        if self.value is None:
            self.value, self.variance, jumped = measurement, variance, True
        else:
            jumped = changed or (self.detect_jumps and (measurement - self.value) ** 2
                                 / (variance + self.variance) > JUMP_SIGMAS_SQUARED)
            process = measurement ** 2 if jumped or self._jumped_last else variance / self.smoothing
            gain = (self.variance + process) / (self.variance + process + variance)
            self.value += gain * (measurement - self.value)
            self.variance = (1 - gain) * (self.variance + process)
        self._jumped_last = jumped

    @property
    def error(self) -> float:
        return math.sqrt(self.variance)

    def lower(self) -> float:
        assert self.value is not None
        return self.value - self.error

    def upper(self) -> float:
        assert self.value is not None
        return self.value + self.error


@dataclass(frozen=True)
class Sample:
    """A worker's counters (cumulative), or their change over one interval."""

    success: int = 0
    pending: int = 0
    failed: int = 0
    inference_time: float = math.nan  # mean seconds per document inferred

    @property
    def requests(self) -> int:
        return self.success + self.pending + self.failed

    @classmethod
    def from_node_stats(cls, node: Mapping[str, Any]) -> "Sample":
        """From a worker's `/stats` node entry (es-api §6.2 names)."""
        failed = sum(int(node.get(k) or 0) for k in ("error_count", "timeout_count", "rejected_execution_count"))
        return cls(int(node.get("inference_count") or 0), int(node.get("number_of_pending_requests") or 0), failed,
                   float(node.get("average_inference_time_ms") or 0.0) / 1000.0)

    def _total_time(self) -> float:
        return self.success * self.inference_time if self.success else 0.0

    def minus(self, earlier: "Sample") -> "Sample":
        success = max(0, self.success - earlier.success)
        time = (self._total_time() - earlier._total_time()) / success if success else math.nan
        return Sample(success, max(0, self.pending - earlier.pending), max(0, self.failed - earlier.failed), time)

    def plus(self, other: "Sample") -> "Sample":
        success = self.success + other.success
        time = (self._total_time() + other._total_time()) / success if success else math.nan
        return Sample(success, self.pending + other.pending, self.failed + other.failed, time)


class Scaler:
    """One deployment's scaler: feed it a sample per interval, ask it for a new allocation count."""

    def __init__(self, allocations: int, minimum: int | None = None, maximum: int | None = None) -> None:
        self.rate = Estimator(detect_jumps=True)  # requests change with users: detect jumps
        # the time changes when allocations do, which `process` is told: no detection needed
        self.time = Estimator(detect_jumps=False)
        self.allocations = allocations
        self.minimum, self.maximum = minimum, maximum
        self._allocations_changed = False

    def process(self, sample: Sample, interval_seconds: float, allocations: int) -> None:
        # Requests arrive as a Poisson process: the count's variance is its mean (at least 1,
        # below which it cannot be measured); the estimate, not the measurement, keeps it unbiased.
        rate = sample.requests / interval_seconds
        expected = self.rate.value if self.rate.has_value else rate
        self.rate.add(rate, max(1.0, expected * interval_seconds) / interval_seconds ** 2)
        if sample.requests > 0 and not math.isnan(sample.inference_time):
            # Unknown distribution: take the standard deviation equal to the mean.
            time = self.time.value if self.time.has_value else sample.inference_time
            self.time.add(sample.inference_time, time ** 2 / sample.requests, self._allocations_changed)
        self.allocations = allocations
        self._allocations_changed = False

    def load_bounds(self) -> tuple[float, float]:
        """The load (busy allocations) within one standard error, low and high."""
        time_low = max(0.0, self.time.lower()) if self.time.has_value else 1.0
        time_high = self.time.upper() if self.time.has_value else 1.0
        return max(0.0, self.rate.lower()) * time_low, self.rate.upper() * time_high

    def scale(self) -> int | None:
        """The new number of allocations, or None to keep the current one."""
        if not self.rate.has_value:
            return None
        low, high = self.load_bounds()
        wanted = max(1, self.allocations)
        while low / wanted > SCALE_UP_THRESHOLD:
            wanted += 1
        while wanted > 1 and high / (wanted - 1) < SCALE_DOWN_THRESHOLD:
            wanted -= 1
        wanted = min(wanted, self.maximum if self.maximum is not None else MAX_ALLOCATIONS_SAFEGUARD)
        # tmd does not scale to zero: a deployment keeps at least one allocation.
        wanted = max(wanted, self.minimum or 1, 1)
        if wanted == self.allocations:
            return None
        self._allocations_changed = True
        self.allocations = wanted
        return wanted


def settings(spec: Mapping[str, Any]) -> tuple[int | None, int | None] | None:
    """(min, max) when the spec enables adaptive allocations, else None."""
    adaptive = spec.get("adaptive_allocations") or {}
    if not adaptive.get("enabled"):
        return None
    return adaptive.get("min_number_of_allocations"), adaptive.get("max_number_of_allocations")
