"""The process kubelet of one virtual node: registers the Node, heartbeats through its Lease,
watches the pods bound to it and runs one `PodWorker` per pod."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

import aiohttp

from .backoff import BackoffPolicy
from .client import APIError, KubeClient
from .env import configmap_data, referenced_sources, secret_data
from .ipam import IPAM
from .node import NodeSpec, capacity, lease_object, micro_time, node_object, node_status
from .pod_worker import PodWorker
from .process import ContainerProcess, ProcessIdentity
from .status import now_rfc3339

log = logging.getLogger("tmd.localkube.kubelet")

# host variables a container inherits, as an image's ENV would provide them (PATH to find
# interpreters, PYTHONPATH/VIRTUAL_ENV so `python -m tmd ...` commands import the same tree)
IMAGE_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")


def image_env(names: tuple[str, ...] = IMAGE_ENV) -> dict[str, str]:
    return {name: os.environ[name] for name in names if name in os.environ}


@dataclass
class KubeletConfig:
    node: NodeSpec
    server: str
    data_dir: Path
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    lease_period: float = 10.0
    status_period: float = 60.0
    shutdown_grace: float = 10.0  # cap on each pod's grace period when localkube itself stops
    base_env: Mapping[str, str] = field(default_factory=image_env)


class Kubelet:
    def __init__(self, config: KubeletConfig) -> None:
        self.config = config
        self.node = config.node
        self.data_dir = Path(config.data_dir)
        self.state_dir = self.data_dir / "kubelet" / self.node.name
        self.ipam = IPAM(self.data_dir / "kubelet" / "ipam.json")
        self.backoff = config.backoff
        self.base_env = dict(config.base_env)
        self.allocatable = capacity(self.node)
        self.client = KubeClient(config.server, f"localkube-kubelet/{self.node.kubelet_version} ({self.node.name})")
        self.workers: dict[str, PodWorker] = {}  # by pod uid
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[Any]] = set()  # events, orphan cleanup
        self._probe_session: aiohttp.ClientSession | None = None
        self._node_uid: str | None = None
        self._ready_since = now_rfc3339()
        self.synced = asyncio.Event()  # set once the first pod list has been handled

    @property
    def probe_session(self) -> aiohttp.ClientSession:
        if self._probe_session is None:
            # probes close their connections, as the kubelet's do; never share the API connection pool
            self._probe_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self._probe_session

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await self.register()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._heartbeat(), name=f"heartbeat {self.node.name}"),
            loop.create_task(self._watch_pods(), name=f"pod watch {self.node.name}"),
        ]

    async def stop(self) -> None:
        """Clean stop: every pod process is stopped (SIGTERM, then SIGKILL) and will run again next start."""
        await self._cancel_tasks()
        await asyncio.gather(*(w.shutdown(self.config.shutdown_grace) for w in list(self.workers.values())))
        self.workers.clear()
        await self._close()

    async def detach(self) -> None:
        """Stop without touching pod processes, as a crash would (they are adopted on the next start)."""
        await self._cancel_tasks()
        for worker in self.workers.values():
            worker.detach()
        self.workers.clear()
        await self._close()

    async def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _close(self) -> None:
        if self._side_tasks:
            await asyncio.wait(list(self._side_tasks), timeout=5.0)
        self.client.closed = True
        await self.client.close()
        if self._probe_session is not None:
            await self._probe_session.close()
            self._probe_session = None

    def forget(self, worker: PodWorker) -> None:
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]

    # ---- node and lease ------------------------------------------------------------------------
    async def register(self) -> None:
        path = f"/api/v1/nodes/{self.node.name}"
        wanted = node_object(self.node)
        try:
            node = await self.client.create("/api/v1/nodes", wanted)
        except APIError as error:
            if error.status != 409:
                raise
            node = await self.client.merge_patch(path, {"metadata": {"labels": wanted["metadata"]["labels"]}})
        self._node_uid = node["metadata"].get("uid")
        await self.post_status()
        await self.renew_lease()

    async def post_status(self) -> None:
        status = node_status(self.node, heartbeat=now_rfc3339(), transition=self._ready_since)
        await self.client.merge_patch(f"/api/v1/nodes/{self.node.name}/status", {"status": status})

    async def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node.name}"
        renew = micro_time()
        try:
            await self.client.merge_patch(path, {"spec": {"holderIdentity": self.node.name, "renewTime": renew}})
        except APIError as error:
            if error.status != 404:
                raise
            lease = lease_object(self.node, self._node_uid, renew)
            lease["spec"]["acquireTime"] = renew
            await self.client.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        next_status = loop.time() + self.config.status_period
        while True:
            await asyncio.sleep(self.config.lease_period)
            try:
                await self.renew_lease()
                if loop.time() >= next_status:
                    await self.post_status()
                    next_status = loop.time() + self.config.status_period
            except (APIError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
                log.warning("node %s heartbeat failed: %s", self.node.name, error)

    # ---- pods ----------------------------------------------------------------------------------
    async def _watch_pods(self) -> None:
        """LIST then WATCH the pods bound to this node (the real kubelet's query), re-listing on 410."""
        path = "/api/v1/pods"
        selector = {"fieldSelector": f"spec.nodeName={self.node.name}"}
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    listed = await self.client.get(path, **selector)
                    rv = listed["metadata"]["resourceVersion"]
                    self._reconcile_list(listed.get("items") or [])
                    self.synced.set()
                async for event in self.client.watch(path, {**selector, "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "300"}):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            rv = None
                            break
                        raise APIError(int(obj.get("code") or 500), obj, "WATCH", path)
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if kind in ("ADDED", "MODIFIED"):
                        self._upsert(obj)
                    elif kind == "DELETED":
                        worker = self.workers.get((obj.get("metadata") or {}).get("uid", ""))
                        if worker is not None:
                            worker.gone()
            except asyncio.CancelledError:
                raise
            except (APIError, aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as error:
                log.warning("node %s pod watch: %s; retrying", self.node.name, error)
                if isinstance(error, APIError) and error.status == 410:
                    rv = None
                await asyncio.sleep(0.5)

    def _reconcile_list(self, pods: list[dict[str, Any]]) -> None:
        seen = {p["metadata"]["uid"] for p in pods}
        for uid, worker in list(self.workers.items()):
            if uid not in seen:
                worker.gone()
        for pod in pods:
            self._upsert(pod)
        self._clean_orphans(seen)

    def _upsert(self, pod: dict[str, Any]) -> None:
        if (pod.get("spec") or {}).get("nodeName") != self.node.name:
            return
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is None:
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
            worker.start()
        else:
            worker.update(pod)

    def _clean_orphans(self, bound: set[str]) -> None:
        """Pods deleted while localkube was down: stop their leftover processes, free their IPs."""
        pods_dir = self.state_dir / "pods"
        if not pods_dir.is_dir():
            return
        for state_file in pods_dir.glob("*.json"):
            uid = state_file.stem
            if uid in bound or uid in self.workers:
                continue
            try:
                state = json.loads(state_file.read_text())
            except ValueError:
                state = {}
            for container in list((state.get("containers") or {}).values()) + list((state.get("init") or {}).values()):
                if container.get("pid"):
                    process = ContainerProcess.adopt(ProcessIdentity(container["pid"], container["ticks"]))
                    if process is not None:
                        self._background(process.stop(self.config.shutdown_grace, asyncio.get_running_loop()))
            self.ipam.release(uid)
            if state.get("namespace") and state.get("name"):
                shutil.rmtree(self.data_dir / "pods" / state["namespace"] / state["name"], ignore_errors=True)
            state_file.unlink(missing_ok=True)

    def requests_of_others(self, uid: str) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = {}
        for other in self.workers.values():
            if other.uid == uid or other.terminal_phase is not None:
                continue
            for name, amount in other.requests().items():
                totals[name] = totals.get(name, Decimal(0)) + amount
        return totals

    async def env_sources(self, pod: dict[str, Any]) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
        """The ConfigMaps and Secrets the pod refers to (missing ones left out; env resolution decides)."""
        namespace = pod["metadata"].get("namespace", "default")
        configmap_names, secret_names = referenced_sources(pod)
        configmaps: dict[str, dict[str, str]] = {}
        secrets: dict[str, dict[str, str]] = {}
        for names, plural, target, decode in ((configmap_names, "configmaps", configmaps, configmap_data), (secret_names, "secrets", secrets, secret_data)):
            for name in names:
                try:
                    target[name] = decode(await self.client.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}"))
                except APIError as error:
                    if error.status != 404:
                        raise
        return configmaps, secrets

    def event(self, pod: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about the pod (fire and forget, like the kubelet's event recorder)."""
        meta = pod.get("metadata") or {}
        namespace = meta.get("namespace", "default")
        now = now_rfc3339()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta.get("name"), "namespace": namespace, "uid": meta.get("uid")},
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": "kubelet", "host": self.node.name},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node.name,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

        async def post() -> None:
            try:
                await self.client.create(f"/api/v1/namespaces/{namespace}/events", body)
            except (APIError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
                log.debug("event not recorded: %s", error)

        if self.client.closed:
            return
        self._background(post())

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
