"""Which batching knobs a started worker runs, read from its pod alone (no call to the worker).

A worker starts with the knobs of its pod's `TMD_MAX_BATCH_SIZE` / `TMD_MAX_BATCH_DELAY` (absent:
the defaults). A pod's environment cannot change, so when the deployment's `tmd_batching` changes
the operator sets the knobs live (`POST /batching`) and, once the worker confirms, records them on
the pod with the identity of the container that took them
(`ml.tmd.dev/worker-batching: "16/2ms@containerID"`), as it records allocations
(worker_allocations.py). A restarted container starts again from the environment: the record no
longer applies to it, the pod reads as differing from the spec, and the operator sets it again.
"""

from __future__ import annotations

from typing import Any, Mapping

from tmd.api.deployment import DEFAULT_MAX_BATCH_DELAY, DEFAULT_MAX_BATCH_SIZE, TmdBatching
from tmd.operator.pods import CONTAINER
from tmd.operator.worker_allocations import container_identity

ANNOTATION_WORKER_BATCHING = "ml.tmd.dev/worker-batching"


def _env(pod: Mapping[str, Any]) -> dict[str, str]:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == CONTAINER:
            return {e.get("name", ""): str(e.get("value", "")) for e in container.get("env") or [] if "value" in e}
    return {}


def started_batching(pod: Mapping[str, Any]) -> TmdBatching:
    """The knobs a fresh worker process of this pod starts with."""
    env = _env(pod)
    size = env.get("TMD_MAX_BATCH_SIZE", "")
    return TmdBatching.model_construct(max_batch_size=int(size) if size.isdigit() else DEFAULT_MAX_BATCH_SIZE,
                                       max_batch_delay=env.get("TMD_MAX_BATCH_DELAY") or DEFAULT_MAX_BATCH_DELAY)


def confirmation(pod: Mapping[str, Any], batching: TmdBatching) -> str:
    """The annotation value recording that this pod's current container runs `batching`."""
    return f"{batching.max_batch_size}/{batching.max_batch_delay}@{container_identity(pod)}"


def running_batching(pod: Mapping[str, Any]) -> TmdBatching:
    """What a started worker of this pod runs now: the confirmed change, else what it started with."""
    recorded = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_WORKER_BATCHING, "")
    knobs, _, identity = recorded.partition("@")
    size, _, delay = knobs.partition("/")
    if size.isdigit() and delay and identity and identity == container_identity(pod):
        return TmdBatching.model_construct(max_batch_size=int(size), max_batch_delay=delay)
    return started_batching(pod)
