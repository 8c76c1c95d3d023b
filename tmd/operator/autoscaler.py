"""Adaptive allocations, the side-effect half: sample the workers, scale the deployments.

Every interval, for each deployment with `adaptive_allocations.enabled`, read `/stats` from its
started workers, turn the change of their counters into one sample, let its `Scaler` decide,
and write a new `spec.number_of_allocations` (as Elasticsearch's scaler calls the update API);
the reconciler then resizes the workers as for any other change. After a scale-up, scaling down
waits for a cooldown (5 minutes, as in Elasticsearch) so a burst does not make it flap. Scaler
state lives in memory: after an operator restart the estimates start again from the next samples.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
from kubernetes.client.exceptions import ApiException

from tmd.api.resources import LABEL_DEPLOYMENT, LABEL_NODE
from tmd.api.status import RoutingState
from tmd.operator.adaptive import Sample, Scaler, settings
from tmd.operator.cache import ClusterCache
from tmd.operator.config import OperatorConfig
from tmd.operator.kube import Kube
from tmd.operator.reconcile import is_worker
from tmd.operator.routes import route_of_pod

log = logging.getLogger("tmd.operator.adaptive")
Key = tuple[str, str]  # (namespace, name) of a deployment


class Autoscaler:
    def __init__(self, kube: Kube, config: OperatorConfig, http: httpx.AsyncClient | None = None,
                 clock: Any = time.monotonic, cache: ClusterCache | None = None,
                 active: Any = lambda: True) -> None:
        self.kube, self.config = kube, config
        self.active = active  # a standby replica samples and scales nothing
        self.cache = cache  # the reconciler's: deployments and pods without a list each round
        self.http = http or httpx.AsyncClient(timeout=5.0)
        self.clock = clock
        self.scalers: dict[Key, Scaler] = {}
        self.counters: dict[Key, dict[str, Sample]] = {}  # last cumulative counters per node
        self.sampled_at: dict[Key, float] = {}
        self.scaled_up_at: dict[Key, float] = {}

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            await asyncio.sleep(self.config.adaptive_interval_seconds)
            if not self.active():
                continue
            try:
                await self.run_once()
            except Exception as err:  # a failed round must not stop scaling; the next one retries
                log.warning("adaptive allocations round failed: %s", err)

    async def run_once(self) -> dict[Key, int]:
        """One round; returns the deployments scaled, with their new allocations."""
        cached = self.cache is not None and self.cache.ready
        deployments = self.cache.items("deployments") if cached else await asyncio.to_thread(self.kube.list_deployments)
        adaptive = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in deployments
                    if settings(d.get("spec") or {}) is not None and not d["metadata"].get("deletionTimestamp")}
        for gone in set(self.scalers) - set(adaptive):
            self._forget(gone)
        if not adaptive:
            return {}
        pods = [p for p in (self.cache.items("pods") if cached else await asyncio.to_thread(self.kube.list_pods))
                if is_worker(p)]
        counters = await asyncio.gather(*(self._counters(key, pods) for key in adaptive))
        scaled: dict[Key, int] = {}
        for (key, deployment), now_counters in zip(adaptive.items(), counters):
            allocations = await self._step(key, deployment, now_counters)
            if allocations is not None:
                scaled[key] = allocations
        return scaled

    def _forget(self, key: Key) -> None:
        for table in (self.scalers, self.counters, self.sampled_at, self.scaled_up_at):
            table.pop(key, None)

    async def _counters(self, key: Key, pods: list[dict[str, Any]]) -> dict[str, Sample]:
        """Each started worker's cumulative counters, by node."""
        mine = [p for p in pods if p["metadata"]["namespace"] == key[0]
                and (p["metadata"].get("labels") or {}).get(LABEL_DEPLOYMENT) == key[1]
                and route_of_pod(p).state is RoutingState.started and (p.get("status") or {}).get("podIP")]

        async def ask(pod: dict[str, Any]) -> tuple[str, Sample | None]:
            node = pod["metadata"]["labels"].get(LABEL_NODE) or pod["spec"].get("nodeName", "")
            try:
                response = await self.http.get(f"http://{pod['status']['podIP']}:{self.config.worker_port}/stats")
                response.raise_for_status()
                return node, Sample.from_node_stats(response.json()["node"])
            except (httpx.HTTPError, KeyError, ValueError, TypeError) as err:
                log.debug("no stats from worker %s: %s", pod["metadata"]["name"], err)
                return node, None

        return {node: sample for node, sample in await asyncio.gather(*(ask(p) for p in mine)) if sample}

    async def _step(self, key: Key, deployment: dict[str, Any], counters: dict[str, Sample]) -> int | None:
        spec = deployment["spec"]
        minimum, maximum = settings(spec) or (None, None)
        current = int(spec.get("number_of_allocations") or 1)
        scaler = self.scalers.setdefault(key, Scaler(current))
        scaler.minimum, scaler.maximum = minimum, maximum
        now = self.clock()
        last, last_at = self.counters.get(key), self.sampled_at.get(key)
        self.counters[key], self.sampled_at[key] = counters, now
        if last is None or last_at is None:
            return None  # the first round only takes the counters to subtract from
        recent = Sample()
        for node, sample in counters.items():
            if node in last:  # a worker new since the last round contributes from the next one
                recent = recent.plus(sample.minus(last[node]))
        scaler.process(recent, max(now - last_at, 1e-3), current)
        wanted = scaler.scale()
        if wanted is None or wanted == current:
            return None
        if wanted < current and now < self.scaled_up_at.get(key, -1e18) + self.config.adaptive_cooldown_seconds:
            log.debug("adaptive allocations: not scaling %s/%s down yet, it scaled up recently", *key)
            scaler.allocations = current
            return None
        try:
            await asyncio.to_thread(self.kube.scale_deployment, key[0], key[1], current, wanted)
        except ApiException as err:
            log.warning("adaptive allocations: scaling %s/%s to %d allocations failed: %s %s", *key, wanted,
                        err.status, err.reason)
            scaler.allocations = current
            return None
        if wanted > current:
            self.scaled_up_at[key] = now
        low, high = scaler.load_bounds()
        log.info("adaptive allocations scaler: scaled [%s] to [%d] allocations (load %.2f-%.2f)",
                 spec.get("deployment_id") or key[1], wanted, low, high)
        return wanted
