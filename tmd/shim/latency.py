"""Recent `_infer` latencies per deployment, as clients see them through the shim.

Workers report only means (es-api.md §6); the console's p50/p99 need the distribution, and the
shim is where every request passes. Each deployment keeps its last `MAX_SAMPLES` latencies with
their time, and at most `MAX_TRACKED` deployments are kept (the one answered least recently goes
first), so memory is bounded whatever the load and however many deployments come and go while
no console prunes them; percentiles are computed only when someone asks (the console).
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable, Iterable

MAX_SAMPLES = 4096
MAX_TRACKED = 2 * 100  # twice Elasticsearch's limit of deployments (tmd.api.deployment.MAX_DEPLOYMENTS)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The nearest-rank `q`-quantile (0 < q ≤ 1) of ascending values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class LatencyWindow:
    """Bounded (time, seconds) samples per deployment id; `clock` is injectable for tests."""

    def __init__(self, max_samples: int = MAX_SAMPLES, clock: Callable[[], float] = time.monotonic,
                 max_tracked: int = MAX_TRACKED) -> None:
        self.max_samples = max_samples
        self.max_tracked = max_tracked
        self.clock = clock
        self._samples: dict[str, deque[tuple[float, float]]] = {}

    def record(self, deployment_id: str, seconds: float) -> None:
        samples = self._samples.get(deployment_id)
        if samples is None:
            if len(self._samples) >= self.max_tracked:
                stalest = min(self._samples, key=lambda d: self._samples[d][-1][0])
                del self._samples[stalest]
            samples = self._samples[deployment_id] = deque(maxlen=self.max_samples)
        samples.append((self.clock(), seconds))

    def quantiles_ms(self, deployment_id: str, window_seconds: float,
                     qs: tuple[float, ...] = (0.5, 0.99)) -> tuple[float | None, ...]:
        """Quantiles in milliseconds of the requests that finished in the last `window_seconds`."""
        since = self.clock() - window_seconds
        values = sorted(s * 1000.0 for t, s in self._samples.get(deployment_id, ()) if t >= since)
        return tuple(percentile(values, q) for q in qs)

    def keep_only(self, deployment_ids: Iterable[str]) -> None:
        """Forget deployments that no longer exist."""
        keep = set(deployment_ids)
        for gone in [d for d in self._samples if d not in keep]:
            del self._samples[gone]
