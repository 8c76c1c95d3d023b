"""Carry out a reconciliation: the side-effect half of the operator.

Reads the cluster from the operator's cache (kept from the watch streams; see cache.py), calls the
pure `reconcile`, then applies pod changes and writes statuses that changed, feeding what the
server answers back into the cache. A pass makes no API request when nothing needs changing, and
asks no worker anything: what a worker runs is read from its pod (worker_allocations.py,
worker_batching.py). Workers are called only to change their allocations or batching knobs.
One pass at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any, Callable, Mapping

import httpx
from kubernetes.client.exceptions import ApiException

from tmd.operator.cache import KINDS, ClusterCache
from tmd.operator.config import OperatorConfig
from tmd.operator.kube import Kube
from tmd.operator.metrics import PLAN_SECONDS
from tmd.operator.pods import ANNOTATION_ALLOCATIONS, CONTAINER, LOW_PRIORITY_CPU, memory_quantity
from tmd.operator.reconcile import ClusterState, PodChange, Reconciliation, is_worker, pod_key, reconcile
from tmd.operator.routes import route_of_pod
from tmd.operator.worker_allocations import ANNOTATION_WORKER_ALLOCATIONS, confirmation, running_allocations
from tmd.operator.worker_batching import ANNOTATION_WORKER_BATCHING, confirmation as batching_confirmation
from tmd.api.status import RoutingState

log = logging.getLogger("tmd.operator")


def _clean(value: Any) -> Any:
    """Drop None members: Elasticsearch omits unset fields (e.g. `reason`), and so does the status."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def worker_allocations(pods: list[dict[str, Any]]) -> dict[str, int]:
    """What each started worker runs, by "namespace/pod", as its pod records it."""
    out: dict[str, int] = {}
    for pod in pods:
        if is_worker(pod) and route_of_pod(pod).state is RoutingState.started:
            running = running_allocations(pod)
            if running is not None:
                out[pod_key(pod)] = running
    return out


class Actuator:
    def __init__(self, kube: Kube, config: OperatorConfig, cache: ClusterCache | None = None,
                 http: httpx.AsyncClient | None = None, active: Callable[[], bool] = lambda: True) -> None:
        self.kube = kube
        self.config = config
        # Checked before every write: a replica that lost its Lease in the middle of a long pass
        # stops writing before a standby may start (leader.py).
        self.active = active
        self.cache = cache if cache is not None else ClusterCache()
        self.http = http or httpx.AsyncClient(timeout=5.0)
        self.inplace_resize: bool | None = None

    def _worker_url(self, pod: Mapping[str, Any], path: str) -> str:
        return f"http://{pod['status']['podIP']}:{self.config.worker_port}{path}"

    async def relist(self) -> bool:
        """List every kind into the cache (at start, then on the slow relist clock); whether it changed."""
        lists = await asyncio.gather(*(asyncio.to_thread(self.kube.list_versioned, kind) for kind in KINDS))
        changed = False
        for kind, (items, version) in zip(KINDS, lists):
            changed |= self.cache.replace(kind, items, version)
        return changed

    async def read(self) -> ClusterState:
        if not self.cache.ready:
            await self.relist()
        if self.inplace_resize is None:
            self.inplace_resize = (self.config.inplace_resize if self.config.inplace_resize is not None
                                   else await asyncio.to_thread(self.kube.supports_pod_resize))
            log.info("in-place pod resize %s", "available" if self.inplace_resize else
                     "unavailable: allocation changes use surge replacements")
        pods = self.cache.items("pods")
        return ClusterState(self.cache.items("deployments"), self.cache.items("models"), self.cache.items("nodes"),
                            pods, worker_allocations(pods), self.inplace_resize)

    async def run_once(self) -> Reconciliation:
        state = await self.read()
        planning = time.perf_counter()
        result = reconcile(state, self.config, dt.datetime.now(dt.timezone.utc))
        PLAN_SECONDS.observe(time.perf_counter() - planning)
        await asyncio.gather(*(self.apply_pod_change(c) for c in result.pod_changes))
        current = {(d["metadata"]["namespace"], d["metadata"]["name"]): d.get("status") or {}
                   for d in state.deployments}
        models = {(m["metadata"]["namespace"], m["metadata"]["name"]): m.get("status") or {} for m in state.models}
        writes = [self._write("deployments", self.kube.replace_deployment_status, namespace, name, status)
                  for (namespace, name), status in ((k, _clean(v)) for k, v in result.statuses.items())
                  if status != current.get((namespace, name))]
        writes += [self._write("models", self.kube.replace_model_status, namespace, name, status)
                   for (namespace, name), status in ((k, _clean(v)) for k, v in result.model_statuses.items())
                   if status != models.get((namespace, name))]
        await asyncio.gather(*writes)  # each status is its own object: no order among them
        return result

    async def _write(self, kind: Any, write: Any, namespace: str, name: str, status: dict[str, Any]) -> None:
        if not self.active():
            return
        try:
            self.cache.apply(kind, "MODIFIED", await asyncio.to_thread(write, namespace, name, status))
        except ApiException as err:
            if err.status != 404:  # deleted meanwhile
                raise

    async def apply_pod_change(self, change: PodChange) -> None:
        meta = change.pod["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if not self.active():
            log.warning("no longer the active replica: %s of %s/%s left to the next one", change.action, namespace, name)
            return
        try:
            if change.action in ("create", "replace"):
                log.info("creating worker pod %s/%s on %s with %d allocations", namespace, name,
                         change.pod["spec"]["nodeName"], change.allocations)
                created = await asyncio.to_thread(self.kube.create_pod, dict(change.pod))
                if created is not None:
                    self.cache.apply("pods", "ADDED", created)
            elif change.action in ("delete", "force_delete"):
                log.info("deleting worker pod %s/%s", namespace, name)
                force = change.action == "force_delete"
                gone = await asyncio.to_thread(self.kube.delete_pod, namespace, name, force=force)
                if gone is not None and gone.get("kind") == "Pod":
                    if force or not (gone.get("metadata") or {}).get("deletionTimestamp"):
                        self.cache.remove("pods", gone)
                    else:
                        self.cache.apply("pods", "MODIFIED", gone)
            elif change.action == "set_allocations":
                await self.set_allocations(change)
            elif change.action == "set_batching":
                await self.set_batching(change)
        except ApiException as err:
            log.warning("pod change %s %s/%s failed: %s %s", change.action, namespace, name, err.status, err.reason)

    async def set_allocations(self, change: PodChange) -> None:
        """Change a running worker's allocations without dropping requests: grow the pod's CPU
        before adding lanes, remove lanes before shrinking it."""
        pod = change.pod
        meta = pod["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        container = next(c for c in pod["spec"]["containers"] if c["name"] == CONTAINER)
        threads = int(next((e["value"] for e in container.get("env", []) if e["name"] == "TMD_THREADS"), "1"))
        low = container["resources"]["requests"].get("cpu") == LOW_PRIORITY_CPU
        cpu = LOW_PRIORITY_CPU if low else str(change.allocations * threads)
        resources = {"requests": {"cpu": cpu, "memory": memory_quantity(change.memory_bytes)},
                     "limits": {"cpu": "1" if low else cpu, "memory": memory_quantity(change.memory_bytes)}}
        old = int((meta.get("annotations") or {}).get(ANNOTATION_ALLOCATIONS, 0))
        growing = change.allocations > old
        resized = container.get("resources") == resources  # e.g. a retry after the worker did not answer
        if growing and not resized:
            await self._resize(namespace, name, resources)
        if old != change.allocations:
            self.cache.apply("pods", "MODIFIED", await asyncio.to_thread(
                self.kube.annotate_pod, namespace, name, {ANNOTATION_ALLOCATIONS: str(change.allocations)}))
        if route_of_pod(pod).state is RoutingState.started and pod.get("status", {}).get("podIP"):
            try:
                response = await self.http.post(self._worker_url(pod, "/allocations"),
                                                json={"number_of_allocations": change.allocations})
                response.raise_for_status()
                log.info("worker %s/%s now runs %d allocations", namespace, name, change.allocations)
            except httpx.HTTPError as err:
                log.warning("worker %s/%s did not take %d allocations: %s", namespace, name, change.allocations, err)
            else:  # recorded on the pod: what the worker runs is read from there (worker_allocations.py)
                self.cache.apply("pods", "MODIFIED", await asyncio.to_thread(
                    self.kube.annotate_pod, namespace, name,
                    {ANNOTATION_WORKER_ALLOCATIONS: confirmation(pod, change.allocations)}))
        if not growing and not resized:
            await self._resize(namespace, name, resources)

    async def set_batching(self, change: PodChange) -> None:
        """Set a started worker's batching knobs live; on its confirmation, record them on the pod
        (worker_batching.py), which is what later passes compare with the spec. A worker that does
        not answer is asked again on a later pass."""
        pod, batching = change.pod, change.batching
        assert batching is not None
        meta = pod["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if not (pod.get("status") or {}).get("podIP"):
            return
        try:
            response = await self.http.post(self._worker_url(pod, "/batching"), json=batching.to_es())
            response.raise_for_status()
        except httpx.HTTPError as err:
            log.warning("worker %s/%s did not take tmd_batching %s: %s", namespace, name, batching.to_es(), err)
            return
        log.info("worker %s/%s now batches with %s", namespace, name, batching.to_es())
        self.cache.apply("pods", "MODIFIED", await asyncio.to_thread(
            self.kube.annotate_pod, namespace, name, {ANNOTATION_WORKER_BATCHING: batching_confirmation(pod, batching)}))

    async def _resize(self, namespace: str, name: str, resources: dict[str, Any]) -> None:
        try:
            self.cache.apply("pods", "MODIFIED",
                             await asyncio.to_thread(self.kube.resize_pod, namespace, name, CONTAINER, resources))
        except ApiException as err:
            log.warning("in-place resize of %s/%s refused (%s %s); the worker keeps its CPU request",
                        namespace, name, err.status, err.reason)
