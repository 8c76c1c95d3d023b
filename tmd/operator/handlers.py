"""The kopf side of the operator: thin handlers that keep the cache and ask for a reconciliation.

Every event of a deployment, a model, a node or a pod goes into the operator's cache (cache.py);
one that changes what planning depends on sets one trigger. A single loop (started with the
operator) waits on it and runs a full, idempotent pass of the Actuator over the cache. Passes
never overlap, bursts of events collapse into one pass, a periodic resync re-plans from the
cache (no request unless something must change), and a slow relist refreshes the cache itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from tmd.api.resources import DEPLOYMENT_PLURAL, GROUP, TRAINED_MODEL_PLURAL, VERSION
from tmd.operator.actuator import Actuator
from tmd.operator.autoscaler import Autoscaler
from tmd.operator.cache import ClusterCache, Kind
from tmd.operator.config import OperatorConfig
from tmd.operator import metrics
from tmd.operator.kube import Kube
from tmd.operator.leader import LeaderElector, Timing, default_identity, default_namespace

log = logging.getLogger("tmd.operator")
DEBOUNCE_SECONDS = 0.05
LOW_PRIORITY_VALUE = -100  # below the default 0 of ordinary pods: low-priority workers are preempted first


class Reconciler:
    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.trigger = asyncio.Event()
        self.passes = 0
        self.cache = ClusterCache()
        self.elector: LeaderElector | None = None  # None: the only replica, always active

    @property
    def active(self) -> bool:
        return self.elector is None or self.elector.is_leader

    def poke(self) -> None:
        self.trigger.set()

    async def run(self, kube: Kube) -> None:
        """Until cancelled (on operator cleanup)."""
        actuator = Actuator(kube, self.config, self.cache, active=lambda: self.active)
        if self.config.low_priority_class and not await asyncio.to_thread(
                kube.ensure_priority_class, self.config.low_priority_class, LOW_PRIORITY_VALUE,
                "tmd low-priority trained model deployments: yield to everything else"):
            log.warning("PriorityClass %s is missing and could not be created: low priority workers will be refused",
                        self.config.low_priority_class)
        try:
            await actuator.relist()  # a standby too: it takes over with a warm cache
        except Exception as err:  # the first pass lists again
            log.warning("listing the cluster failed: %s", err)
        relisted = time.monotonic()
        while True:
            if self.elector is not None and not self.elector.leading.is_set():
                await self.elector.leading.wait()
                log.info("active: reconciling")
                relisted = -1e18  # events were applied all along; a list also repairs any missed deletion
                self.trigger.set()
            try:
                await asyncio.wait_for(self.trigger.wait(), timeout=self.config.resync_seconds)
            except asyncio.TimeoutError:
                pass
            await asyncio.sleep(DEBOUNCE_SECONDS)
            self.trigger.clear()
            if not self.active:
                continue
            started = time.perf_counter()
            try:
                if time.monotonic() - relisted >= self.config.relist_seconds:
                    relisted = time.monotonic()
                    await actuator.relist()
                result = await actuator.run_once()
                self.passes += 1
                metrics.observe(result, time.perf_counter() - started)
            except Exception as err:  # one failed pass must not stop the operator; the next one retries
                metrics.observe_failure(time.perf_counter() - started)
                log.exception("reconciliation failed: %s", err)
                await asyncio.sleep(1.0)
                self.trigger.set()


_reconciler: Reconciler | None = None


def _observer(kind: Kind) -> Any:
    def observe(event: dict[str, Any], **_: Any) -> None:
        if _reconciler is not None and isinstance(event.get("object"), dict) and \
                _reconciler.cache.apply(kind, event.get("type"), event["object"]):
            _reconciler.poke()
    observe.__name__ = observe.__qualname__ = f"observe_{kind}"  # kopf's handler id
    return observe


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _reconciler
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="ml.tmd.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="ml.tmd.dev")
    _reconciler = Reconciler(OperatorConfig.from_env())


kopf.on.event(GROUP, VERSION, DEPLOYMENT_PLURAL)(_observer("deployments"))
kopf.on.event(GROUP, VERSION, TRAINED_MODEL_PLURAL)(_observer("models"))
kopf.on.event("", "v1", "nodes")(_observer("nodes"))
# All pods, not only workers: other pods on ML nodes take capacity (cache.planning_view says when).
kopf.on.event("", "v1", "pods")(_observer("pods"))


_tasks: list[asyncio.Task] = []


@kopf.on.startup()
async def start_reconciler(**_: Any) -> None:
    assert _reconciler is not None
    loop = asyncio.get_running_loop()
    kube = Kube()  # one API client for both loops
    config = _reconciler.config
    if config.leader_election:
        _reconciler.elector = LeaderElector(kube, config.leader_namespace or default_namespace(), default_identity(),
                                            Timing(config.lease_seconds, config.lease_seconds * 0.7,
                                                   max(config.lease_seconds / 10, 0.5)))
        _tasks.append(loop.create_task(_reconciler.elector.run(), name="tmd-leader-election"))
    _tasks.append(loop.create_task(_reconciler.run(kube), name="tmd-reconciler"))
    # Adaptive allocations sample the workers on a clock of their own: their decisions are spec
    # changes, which come back as events and so as reconciliations.
    reconciler = _reconciler
    _tasks.append(loop.create_task(Autoscaler(kube, config, cache=reconciler.cache,
                                              active=lambda: reconciler.active).run(), name="tmd-autoscaler"))
    _reconciler.poke()


@kopf.on.cleanup()
async def stop_reconciler(**_: Any) -> None:
    for task in _tasks:
        task.cancel()
    await asyncio.gather(*_tasks, return_exceptions=True)
    _tasks.clear()
