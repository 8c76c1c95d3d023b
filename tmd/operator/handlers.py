"""The kopf side of the operator: thin handlers that only ask for a reconciliation.

Any change to a deployment, a model, a node or a worker pod sets one trigger; a single loop
(started with the operator) waits on it and runs a full, idempotent pass of the Actuator. Passes
never overlap, bursts of events collapse into one pass, and a periodic resync catches anything
missed while the operator was down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from tmd.api.resources import DEPLOYMENT_PLURAL, GROUP, LABEL_ROLE, TRAINED_MODEL_PLURAL, VERSION
from tmd.operator.actuator import Actuator
from tmd.operator.autoscaler import Autoscaler
from tmd.operator.config import OperatorConfig
from tmd.operator import metrics
from tmd.operator.kube import Kube
from tmd.operator.pods import WORKER_ROLE

log = logging.getLogger("tmd.operator")
DEBOUNCE_SECONDS = 0.05
LOW_PRIORITY_VALUE = -100  # below the default 0 of ordinary pods: low-priority workers are preempted first


class Reconciler:
    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.trigger = asyncio.Event()
        self.passes = 0

    def poke(self) -> None:
        self.trigger.set()

    async def run(self, kube: Kube) -> None:
        """Until cancelled (on operator cleanup)."""
        actuator = Actuator(kube, self.config)
        if self.config.low_priority_class and not await asyncio.to_thread(
                kube.ensure_priority_class, self.config.low_priority_class, LOW_PRIORITY_VALUE,
                "tmd low-priority trained model deployments: yield to everything else"):
            log.warning("PriorityClass %s is missing and could not be created: low priority workers will be refused",
                        self.config.low_priority_class)
        while True:
            try:
                await asyncio.wait_for(self.trigger.wait(), timeout=self.config.resync_seconds)
            except asyncio.TimeoutError:
                pass
            await asyncio.sleep(DEBOUNCE_SECONDS)
            self.trigger.clear()
            started = time.perf_counter()
            try:
                result = await actuator.run_once()
                self.passes += 1
                metrics.observe(result, time.perf_counter() - started)
            except Exception as err:  # one failed pass must not stop the operator; the next one retries
                metrics.observe_failure(time.perf_counter() - started)
                log.exception("reconciliation failed: %s", err)
                await asyncio.sleep(1.0)
                self.trigger.set()


_reconciler: Reconciler | None = None


def _poke(**_: Any) -> None:
    if _reconciler is not None:
        _reconciler.poke()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _reconciler
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="ml.tmd.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="ml.tmd.dev")
    _reconciler = Reconciler(OperatorConfig.from_env())


kopf.on.event(GROUP, VERSION, DEPLOYMENT_PLURAL)(_poke)
kopf.on.event(GROUP, VERSION, TRAINED_MODEL_PLURAL)(_poke)
kopf.on.event("", "v1", "nodes")(_poke)
kopf.on.event("", "v1", "pods", labels={LABEL_ROLE: WORKER_ROLE})(_poke)


_tasks: list[asyncio.Task] = []


@kopf.on.startup()
async def start_reconciler(**_: Any) -> None:
    assert _reconciler is not None
    loop = asyncio.get_running_loop()
    kube = Kube()  # one API client for both loops
    _tasks.append(loop.create_task(_reconciler.run(kube), name="tmd-reconciler"))
    # Adaptive allocations sample the workers on a clock of their own: their decisions are spec
    # changes, which come back as events and so as reconciliations.
    _tasks.append(loop.create_task(Autoscaler(kube, _reconciler.config).run(), name="tmd-autoscaler"))
    _reconciler.poke()


@kopf.on.cleanup()
async def stop_reconciler(**_: Any) -> None:
    for task in _tasks:
        task.cancel()
    await asyncio.gather(*_tasks, return_exceptions=True)
    _tasks.clear()
