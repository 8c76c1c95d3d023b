"""Carry out a reconciliation: the side-effect half of the operator.

Reads the cluster (through `Kube`) and the workers' control endpoints, calls the pure
`reconcile`, then applies pod changes and writes statuses that changed. One pass at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Mapping

import httpx
from kubernetes.client.exceptions import ApiException

from tmd.operator.config import OperatorConfig
from tmd.operator.kube import Kube
from tmd.operator.pods import ANNOTATION_ALLOCATIONS, CONTAINER, LOW_PRIORITY_CPU, memory_quantity
from tmd.operator.reconcile import ClusterState, PodChange, Reconciliation, is_worker, pod_key, reconcile
from tmd.operator.routes import route_of_pod
from tmd.api.status import RoutingState

log = logging.getLogger("tmd.operator")


def _clean(value: Any) -> Any:
    """Drop None members: Elasticsearch omits unset fields (e.g. `reason`), and so does the status."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


class Actuator:
    def __init__(self, kube: Kube, config: OperatorConfig, http: httpx.AsyncClient | None = None) -> None:
        self.kube = kube
        self.config = config
        self.http = http or httpx.AsyncClient(timeout=5.0)

    def _worker_url(self, pod: Mapping[str, Any], path: str) -> str:
        return f"http://{pod['status']['podIP']}:{self.config.worker_port}{path}"

    async def worker_allocations(self, pods: list[dict[str, Any]]) -> dict[str, int]:
        """What each ready worker says it runs: the routes' current_allocations."""
        ready = [p for p in pods if is_worker(p) and route_of_pod(p).state is RoutingState.started
                 and (p.get("status") or {}).get("podIP")]

        async def ask(pod: dict[str, Any]) -> tuple[str, int | None]:
            try:
                response = await self.http.get(self._worker_url(pod, "/allocations"))
                response.raise_for_status()
                return pod_key(pod), int(response.json()["number_of_allocations"])
            except (httpx.HTTPError, KeyError, ValueError) as err:
                log.warning("worker %s did not report its allocations: %s", pod_key(pod), err)
                return pod_key(pod), None

        answers = await asyncio.gather(*(ask(p) for p in ready))
        return {key: n for key, n in answers if n is not None}

    async def read(self) -> ClusterState:
        deployments, models, nodes, pods = await asyncio.gather(
            asyncio.to_thread(self.kube.list_deployments), asyncio.to_thread(self.kube.list_models),
            asyncio.to_thread(self.kube.list_nodes), asyncio.to_thread(self.kube.list_pods))
        return ClusterState(deployments, models, nodes, pods, await self.worker_allocations(pods))

    async def run_once(self) -> Reconciliation:
        state = await self.read()
        result = reconcile(state, self.config, dt.datetime.now(dt.timezone.utc))
        await asyncio.gather(*(self.apply_pod_change(c) for c in result.pod_changes))
        current = {(d["metadata"]["namespace"], d["metadata"]["name"]): d.get("status") or {}
                   for d in state.deployments}
        for (namespace, name), status in result.statuses.items():
            status = _clean(status)
            if status != current.get((namespace, name)):
                await self._write(self.kube.replace_deployment_status, namespace, name, status)
        models = {(m["metadata"]["namespace"], m["metadata"]["name"]): m.get("status") or {} for m in state.models}
        for (namespace, name), status in result.model_statuses.items():
            status = _clean(status)
            if status != models.get((namespace, name)):
                await self._write(self.kube.replace_model_status, namespace, name, status)
        return result

    async def _write(self, write: Any, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(write, namespace, name, status)
        except ApiException as err:
            if err.status != 404:  # deleted meanwhile
                raise

    async def apply_pod_change(self, change: PodChange) -> None:
        meta = change.pod["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        try:
            if change.action == "create":
                log.info("creating worker pod %s/%s on %s with %d allocations", namespace, name,
                         change.pod["spec"]["nodeName"], change.allocations)
                await asyncio.to_thread(self.kube.create_pod, dict(change.pod))
            elif change.action in ("delete", "force_delete"):
                log.info("deleting worker pod %s/%s", namespace, name)
                await asyncio.to_thread(self.kube.delete_pod, namespace, name, force=change.action == "force_delete")
            elif change.action == "set_allocations":
                await self.set_allocations(change)
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
        if growing:
            await self._resize(namespace, name, resources)
        await asyncio.to_thread(self.kube.annotate_pod, namespace, name, {ANNOTATION_ALLOCATIONS: str(change.allocations)})
        if route_of_pod(pod).state is RoutingState.started and pod.get("status", {}).get("podIP"):
            try:
                response = await self.http.post(self._worker_url(pod, "/allocations"),
                                                json={"number_of_allocations": change.allocations})
                response.raise_for_status()
                log.info("worker %s/%s now runs %d allocations", namespace, name, change.allocations)
            except httpx.HTTPError as err:
                log.warning("worker %s/%s did not take %d allocations: %s", namespace, name, change.allocations, err)
        if not growing:
            await self._resize(namespace, name, resources)

    async def _resize(self, namespace: str, name: str, resources: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(self.kube.resize_pod, namespace, name, CONTAINER, resources)
        except ApiException as err:
            log.warning("in-place resize of %s/%s refused (%s %s); the worker keeps its CPU request",
                        namespace, name, err.status, err.reason)
