"""One active operator among replicas: leader election on a coordination.k8s.io Lease.

Every replica watches and keeps its cache warm (handlers.py); only the holder of the Lease runs
passes and the adaptive scaler, so a standby takes over with a current view. The rules are
client-go's leaderelection: the holder renews every `retry_seconds` (one PUT, conditional on the
resourceVersion its last write returned; a standby reads once per round); a candidate takes the
Lease only once its record has not changed for `lease_seconds` by the candidate's own clock
(no clock comparison between machines); every write carries the resourceVersion it read, so
two candidates never both win. A holder that cannot renew within `renew_deadline_seconds`
(< `lease_seconds`) stops acting before anyone else may start: never two writers.

Hand-written (about a hundred lines) because the kubernetes client's `leaderelection` module
only locks ConfigMaps and blocks a thread, and kopf's peering pauses the standby's watches
(a cold cache on takeover) and cannot pause the reconciler's own loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from kubernetes.client.exceptions import ApiException

from tmd.operator.kube import Kube

log = logging.getLogger("tmd.operator.leader")
LEASE_NAME = "tmd-operator"


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def default_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def _micro_time(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Timing:
    lease_seconds: float = 10.0
    renew_deadline_seconds: float = 7.0
    retry_seconds: float = 1.0


def lease_body(name: str, namespace: str, identity: str, timing: Timing, now: dt.datetime,
               previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Lease this replica writes to hold (or take) leadership; pure."""
    spec_before = (previous or {}).get("spec") or {}
    ours = spec_before.get("holderIdentity") == identity
    transitions = int(spec_before.get("leaseTransitions") or 0) + (0 if ours or previous is None else 1)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if previous is not None:
        metadata["resourceVersion"] = previous["metadata"]["resourceVersion"]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": {"holderIdentity": identity, "leaseDurationSeconds": int(round(timing.lease_seconds)),
                     "acquireTime": spec_before.get("acquireTime") if ours else _micro_time(now),
                     "renewTime": _micro_time(now), "leaseTransitions": transitions}}


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, identity: str, timing: Timing = Timing(),
                 name: str = LEASE_NAME, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.namespace, self.identity, self.timing, self.name = kube, namespace, identity, timing, name
        self.clock = clock
        self.leading = asyncio.Event()
        self._renewed_at = -1e18  # when we last wrote the Lease as holder (our clock)
        self._observed: tuple[Any, float] | None = None  # (the other holder's record, when it last changed)
        self._held: dict[str, Any] | None = None  # the Lease as our last write left it: a renewal needs no read

    @property
    def is_leader(self) -> bool:
        """Leading, and renewed recently enough that no other replica can have taken over."""
        return self.leading.is_set() and self.clock() - self._renewed_at < self.timing.renew_deadline_seconds

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            try:
                await self.try_acquire_or_renew()
            except Exception as err:  # the API server unreachable, a conflict: try again next round
                log.debug("lease %s/%s: %s", self.namespace, self.name, err)
            if self.leading.is_set() and not self.is_leader:
                log.warning("lost the lease %s/%s: could not renew within %.0f s; standing by",
                            self.namespace, self.name, self.timing.renew_deadline_seconds)
                self.leading.clear()
            await asyncio.sleep(self.timing.retry_seconds)

    async def try_acquire_or_renew(self) -> bool:
        attempt = self.clock()  # a renewal counts from before its request: the conservative side
        held, self._held = self._held, None
        lease = held if held is not None and self.leading.is_set() else \
            await asyncio.to_thread(self.kube.get_lease, self.namespace, self.name)
        now = dt.datetime.now(dt.timezone.utc)
        if lease is None:
            body = lease_body(self.name, self.namespace, self.identity, self.timing, now, None)
            try:
                self._held = await asyncio.to_thread(self.kube.create_lease, self.namespace, body)
            except ApiException as err:
                if err.status == 409:
                    return False
                raise
            return self._won(attempt)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        if holder and holder != self.identity:
            record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
            if self._observed is None or self._observed[0] != record:
                self._observed = (record, self.clock())
            duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_seconds)
            if self.clock() - self._observed[1] < duration:
                self.leading.clear()
                return False  # held by a live replica
            log.info("lease %s/%s of %s expired; taking over", self.namespace, self.name, holder)
        body = lease_body(self.name, self.namespace, self.identity, self.timing, now, lease)
        try:
            self._held = await asyncio.to_thread(self.kube.replace_lease, self.namespace, self.name, body)
        except ApiException as err:
            if err.status == 409:  # another replica wrote it first (or took it over): read it next round
                return False
            raise
        return self._won(attempt)

    def _won(self, attempt: float) -> bool:
        self._renewed_at = attempt
        if not self.leading.is_set():
            log.info("leading as %s (lease %s/%s)", self.identity, self.namespace, self.name)
            self.leading.set()
        return True
