"""Simulated nodes (like kwok): Nodes whose pods become Running and Ready without a process.

One controller serves every simulated node, in the API server's own loop: it follows pod
changes through the store's watch fan-out (no HTTP watch per node, so 1000 nodes cost one
subscription), and writes pod status through the registry as a kubelet would over HTTP. A pod
bound to a simulated node gets a loopback IP from the cluster's IPAM, its containers are
reported running, started and ready, in-place resizes are applied at once, and a deleted pod is
removed at once (there is nothing to stop). Real process nodes and simulated ones coexist: the
controller only touches pods whose `spec.nodeName` is one of its nodes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..apiserver.errors import StatusError
from ..apiserver.registry import Registry
from ..apiserver.storage import Event
from .ipam import IPAM
from .node import NodeSpec, lease_object, micro_time, node_object, node_status
from .resources import qos_class
from .status import ContainerRecord, PodView, now_rfc3339, pod_status

log = logging.getLogger("tmd.localkube.simulated")

POD_KEY = "/pods"
NODE_KEY = "/nodes"
SIMULATED_LABEL = "localkube.tmd.dev/simulated"  # on simulated nodes, so users and tools can tell them apart


@dataclass(frozen=True)
class SimulatedPodState:
    """What the stand-in kubelet decided for one pod: its IP and when it started."""

    ip: str
    started_at: str


def simulated_status(pod: Mapping[str, Any], host_ip: str, state: SimulatedPodState, now: str) -> dict[str, Any]:
    """The status a kubelet would report for `pod` once every container runs and is ready, with the
    spec's resources as the allocated ones (an in-place resize is done as soon as it is asked)."""
    spec = pod.get("spec") or {}
    containers = [ContainerRecord(name=c["name"], image=c.get("image", ""), state="running", started_at=state.started_at,
                                  container_id=f"simulated://{pod['metadata'].get('uid', '')}/{c['name']}",
                                  ready=True, started=True, resources=dict(c.get("resources") or {}))
                  for c in spec.get("containers") or []]
    view = PodView(pod=pod, host_ip=host_ip, pod_ip=state.ip, start_time=state.started_at, containers=containers,
                   qos_class=qos_class(pod))
    return pod_status(view, now)


class SimulatedNodes:
    """The stand-in kubelet of all simulated nodes of one API server (same event loop)."""

    def __init__(self, registry: Registry, specs: Iterable[NodeSpec], ipam: IPAM) -> None:
        self.registry = registry
        self.specs = {spec.name: spec for spec in specs}
        self.ipam = ipam
        self.pods: dict[str, SimulatedPodState] = {}  # by pod uid
        self._task: asyncio.Task[None] | None = None
        self._watcher: Any = None

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    async def start(self) -> None:
        self._register_nodes()
        store = self.registry.store
        # Subscribe and take the snapshot in one synchronous step, as a watch does: no event falls between.
        self._watcher = store.subscribe(POD_KEY, None)
        self._handle([p for p in store.list(POD_KEY, None) if self._mine(p)])
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="simulated kubelet")
        log.info("simulated nodes up: %d", len(self.specs))

    async def stop(self) -> None:
        if self._watcher is not None:
            self.registry.store.unsubscribe(self._watcher)
            self._watcher.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _register_nodes(self) -> None:
        nodes = self.registry.resolve("", "v1", "nodes")
        leases = self.registry.resolve("coordination.k8s.io", "v1", "leases")
        now = now_rfc3339()
        for spec in self.specs.values():
            wanted = node_object(spec)
            wanted["metadata"]["labels"][SIMULATED_LABEL] = "true"
            existing = self.registry.store.get(NODE_KEY, "", spec.name)
            if existing is None:
                existing = self.registry.create(nodes, "", wanted).obj
            elif existing["metadata"].get("labels") != wanted["metadata"]["labels"]:
                self.registry.patch(nodes, "", spec.name, "application/merge-patch+json",
                                    {"metadata": {"labels": wanted["metadata"]["labels"]}})
            self.registry.patch(nodes, "", spec.name, "application/merge-patch+json",
                                {"status": node_status(spec, heartbeat=now, transition=now)}, subresource="status")
            # One lease, never renewed: nothing in localkube expires nodes, and 1000 heartbeats would be pure cost.
            if self.registry.store.get(leases.key, "kube-node-lease", spec.name) is None:
                self.registry.create(leases, "kube-node-lease",
                                     lease_object(spec, existing["metadata"].get("uid"), micro_time()))

    def _mine(self, pod: Mapping[str, Any]) -> bool:
        return (pod.get("spec") or {}).get("nodeName") in self.specs

    async def _follow(self) -> None:
        queue = self._watcher.queue
        while True:
            event: Event | None = await queue.get()
            if event is None:
                return
            batch = [event]
            while not queue.empty():  # a burst of pod changes is handled in one go
                nxt = queue.get_nowait()
                if nxt is None:
                    queue.put_nowait(None)
                    break
                batch.append(nxt)
            changed: dict[tuple[str, str], None] = {}  # pods to look at again, in order
            deleted = []
            for ev in batch:
                if not self._mine(ev.obj):
                    continue
                key = (ev.ns, ev.obj["metadata"]["name"])
                if ev.type == "DELETED":
                    deleted.append(ev.obj)
                    changed.pop(key, None)
                else:
                    changed[key] = None
            self._forget(deleted)
            try:
                self._handle([self.registry.store.get(POD_KEY, ns, name) for ns, name in changed])
            except Exception:  # a bug here must not stop every simulated node
                log.exception("simulated kubelet pass failed")
            await asyncio.sleep(0)

    def _forget(self, pods: list[dict[str, Any]]) -> None:
        uids = [p["metadata"].get("uid", "") for p in pods if p["metadata"].get("uid") in self.pods]
        for uid in uids:
            self.pods.pop(uid, None)
        if uids:
            self.ipam.release_many(uids)

    def _handle(self, pods: list[dict[str, Any] | None]) -> None:
        current = [p for p in pods if p is not None and self._mine(p)]
        rt = self.registry.resolve("", "v1", "pods")
        new = [p["metadata"]["uid"] for p in current if p["metadata"]["uid"] not in self.pods
               and not p["metadata"].get("deletionTimestamp")]
        if new:
            ips = self.ipam.assign_many(new)
            started = now_rfc3339()
            for uid in new:
                if uid in ips:
                    self.pods[uid] = SimulatedPodState(ips[uid], started)
            if len(ips) < len(new):
                log.warning("pod subnet %s is full: %d pods on simulated nodes stay Pending until addresses "
                            "are freed", self.ipam.subnet, len(new) - len(ips))
        for pod in current:
            meta = pod["metadata"]
            try:
                if meta.get("deletionTimestamp"):  # no process to stop: the pod is gone at once
                    self.registry.delete(rt, meta["namespace"], meta["name"],
                                         {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})
                    continue
                state = self.pods.get(meta["uid"])
                if state is None:  # no address for it (yet)
                    continue
                spec = self.specs[pod["spec"]["nodeName"]]
                status = simulated_status(pod, spec.host_ip, state, now_rfc3339())
                if _differs(pod.get("status") or {}, status):
                    self.registry.patch(rt, meta["namespace"], meta["name"], "application/merge-patch+json",
                                        {"status": status}, subresource="status")
            except StatusError as err:  # deleted or replaced meanwhile: its own event follows
                log.debug("simulated pod %s/%s: %s", meta.get("namespace"), meta.get("name"), err)


def _differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether writing `new` changes anything but timestamps (a kubelet does not rewrite an equal status)."""
    def strip(status: Mapping[str, Any]) -> Any:
        return {k: ([{ck: cv for ck, cv in c.items() if ck != "lastTransitionTime"} for c in v] if k == "conditions"
                    else v) for k, v in status.items()}
    return strip(old) != strip(new)
