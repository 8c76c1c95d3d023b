"""What `GET /_tmd/console/state` answers: the console's whole picture at one moment.

Reading it costs Kubernetes lists (deployments, worker pods, events, and the cluster's nodes and
pods for the ML nodes' capacity) and one `/stats` call per started worker, so one reading is
shared by every tab for `SAMPLE_SECONDS`; each reading is also one sample of the charts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from tmd.api.ml_nodes import MLNode
from tmd.shim.console import view
from tmd.shim.console.series import SAMPLE_SECONDS, Series
from tmd.shim.ml_info import cluster_ml_nodes
from tmd.shim.service import Shim

log = logging.getLogger("tmd.shim.console")
LATENCY_TABLE_SECONDS = 60.0


class ConsoleState:
    def __init__(self, shim: Shim, clock: Callable[[], float] = time.time) -> None:
        self.shim = shim
        self.clock = clock
        self.series = Series()
        self._reading: dict[str, Any] | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def read(self) -> dict[str, Any]:
        """The deployments table, grid, models and events; sampled anew when the last reading is
        older than SAMPLE_SECONDS (concurrent callers wait for one reading)."""
        async with self._lock:
            now = self.clock()
            if self._reading is not None and now - self._read_at < SAMPLE_SECONDS:
                return self._reading
            (models, pairs), (events, events_error), (ml_nodes, nodes_error) = await asyncio.gather(
                self.shim.deployments_with_stats(), self._events(), self._ml_nodes())
            now = self.clock()
            points = self.series.sample(now, [stats for _, stats in pairs], self.shim.latency)
            self.shim.latency.keep_only(stats["deployment_id"] for _, stats in pairs)
            rows = [view.deployment_row(d, stats, points.get(stats["deployment_id"]),
                                        self.shim.latency.quantiles_ms(stats["deployment_id"], LATENCY_TABLE_SECONDS))
                    for d, stats in pairs]
            self._reading = {
                "time": now, "cluster_name": self.shim.settings.cluster_name, "version": self.shim.settings.version,
                "sample_seconds": SAMPLE_SECONDS, "deployments": rows, "grid": {**view.grid(rows, ml_nodes), "nodes_error": nodes_error},
                "models": view.models(models), "events": view.event_rows(events, [d for d, _ in pairs]),
                "events_error": events_error,
            }
            self._read_at = now
            return self._reading

    async def _events(self) -> tuple[list[dict[str, Any]], str]:
        try:
            return await asyncio.to_thread(self.shim.kube.list_events), ""
        except Exception as err:  # e.g. a Role without `events list`: the rest of the page still works
            log.warning("cannot list events: %s", err)
            return [], f"events could not be read: {type(err).__name__}"

    async def _ml_nodes(self) -> tuple[list[MLNode] | None, str]:
        """The ML nodes with their capacity, as `_ml/info` reads them (one nodes and one pods list)."""
        try:
            return await cluster_ml_nodes(self.shim), ""
        except Exception as err:  # e.g. no ClusterRole to list nodes: the grid shows routed nodes only
            log.warning("cannot list ML nodes: %s", err)
            return None, f"nodes could not be read: {type(err).__name__}"

    async def state(self, since: float) -> dict[str, Any]:
        """The reading plus the chart samples newer than `since` (epoch seconds; 0 for all)."""
        reading = await self.read()
        return {**reading, "series": self.series.since(since, reading["time"])}
