"""The console's charts: throughput, latency and queue depth per deployment over the last 15 minutes.

Workers keep counters, not histories, so the shim samples them: each time the console asks for
its state (at most once every `SAMPLE_SECONDS`, whatever the number of open tabs) one sample of
every deployment is appended to a ring of `MAX_POINTS`. Nothing is sampled while nobody looks,
so the charts show a gap for that time. Memory is bounded by MAX_POINTS × deployments.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from tmd.shim.latency import LatencyWindow

SAMPLE_SECONDS = 2.0
WINDOW_SECONDS = 15 * 60.0
MAX_POINTS = int(WINDOW_SECONDS / SAMPLE_SECONDS) + 1
METRICS = ("throughput", "p50", "p99", "queue")
LATENCY_MAX_WINDOW = 60.0  # after a gap (nobody looking), a point's quantiles cover at most the last minute


@dataclass(frozen=True)
class Point:
    """One deployment at one sample: documents per second since the previous sample (None for the
    first), client-side latency quantiles in ms of the requests answered since then (None when
    there were none), and documents queued or running on its workers."""

    throughput: float | None
    p50: float | None
    p99: float | None
    queue: int


def started_counts(stats: Mapping[str, Any]) -> dict[str, int]:
    """inference_count per node, of the workers that answered with their own stats."""
    counts = {}
    for entry in stats.get("nodes") or []:
        if "inference_count" in entry:
            counts[next(iter(entry["node"]))] = int(entry["inference_count"])
    return counts


def pending(stats: Mapping[str, Any]) -> int:
    return sum(int(entry.get("number_of_pending_requests") or 0) for entry in stats.get("nodes") or [])


def rate(before: Mapping[str, int] | None, after: Mapping[str, int], seconds: float) -> float | None:
    """Documents per second between two samples of per-node counters. A worker whose counter
    went down (restarted) or that was not there before (new, or back from failed) started from
    zero within the interval, so its whole count is new work."""
    if before is None or seconds <= 0:
        return None
    done = 0
    for node, count in after.items():
        previous = before.get(node)
        done += count - previous if previous is not None and count >= previous else count
    return done / seconds


class Series:
    """The ring of samples; `t` is wall-clock epoch seconds (what the browser plots)."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self.samples: deque[tuple[float, dict[str, Point]]] = deque(maxlen=max_points)
        self._counts: dict[str, tuple[float, dict[str, int]]] = {}

    def sample(self, now: float, stats: Iterable[Mapping[str, Any]], latency: LatencyWindow) -> dict[str, Point]:
        """Append one sample of every deployment's `_stats` element; returns it."""
        points: dict[str, Point] = {}
        counts: dict[str, tuple[float, dict[str, int]]] = {}
        last_t = self.samples[-1][0] if self.samples else None
        for element in stats:
            deployment_id = element["deployment_id"]
            current = started_counts(element)
            before = self._counts.get(deployment_id)
            throughput = rate(before[1] if before else None, current, now - before[0] if before else 0.0)
            window = now - last_t if last_t is not None else SAMPLE_SECONDS
            p50, p99 = latency.quantiles_ms(deployment_id, min(max(window, SAMPLE_SECONDS), LATENCY_MAX_WINDOW))
            points[deployment_id] = Point(throughput, p50, p99, pending(element))
            counts[deployment_id] = (now, current)
        self._counts = counts  # deployments gone are forgotten with their counters
        self.samples.append((now, points))
        return points

    def latest(self) -> dict[str, Point]:
        return self.samples[-1][1] if self.samples else {}

    def since(self, after: float, now: float) -> dict[str, Any]:
        """Columns for the samples newer than `after` and within the window: a shared time axis
        `t` and, per deployment and metric, values aligned to it (None where it had none)."""
        rows = [(t, points) for t, points in self.samples if t > after and t >= now - WINDOW_SECONDS]
        ids = sorted({d for _, points in rows for d in points})
        columns: dict[str, dict[str, list[Any]]] = {d: {m: [] for m in METRICS} for d in ids}
        for _, points in rows:
            for d in ids:
                point = points.get(d)
                for metric in METRICS:
                    value = getattr(point, metric) if point is not None else None
                    columns[d][metric].append(round(value, 3) if isinstance(value, float) else value)
        return {"t": [round(t, 3) for t, _ in rows], "deployments": columns}
