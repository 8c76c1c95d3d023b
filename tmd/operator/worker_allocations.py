"""How many allocations a started worker runs, read from its pod alone (no call to the worker).

A worker starts with the allocations of its pod's `TMD_ALLOCATIONS`. When the operator changes
them in place and the worker confirms, the operator records the number on the pod together with
the identity of the container that confirmed it (`ml.tmd.dev/worker-allocations: "N@containerID"`).
A restarted container has a new identity and starts again from `TMD_ALLOCATIONS`, so the record
no longer applies to it. The pod is watched anyway, so the routing table's `current_allocations`
costs no request per pass, and a pod on a simulated node (which runs no process) reads the same.
"""

from __future__ import annotations

from typing import Any, Mapping

from tmd.operator.pods import CONTAINER

ANNOTATION_WORKER_ALLOCATIONS = "ml.tmd.dev/worker-allocations"


def container_identity(pod: Mapping[str, Any]) -> str:
    """The worker container's current instance: its containerID, else its restart count."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return status.get("containerID") or f"restart-{int(status.get('restartCount') or 0)}"
    return ""


def started_allocations(pod: Mapping[str, Any]) -> int | None:
    """The allocations a fresh worker process of this pod starts with."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == CONTAINER:
            for env in container.get("env") or []:
                if env.get("name") == "TMD_ALLOCATIONS":
                    try:
                        return int(env.get("value"))
                    except (TypeError, ValueError):
                        return None
    return None


def confirmation(pod: Mapping[str, Any], allocations: int) -> str:
    """The annotation value recording that this pod's current container runs `allocations`."""
    return f"{allocations}@{container_identity(pod)}"


def running_allocations(pod: Mapping[str, Any]) -> int | None:
    """What a started worker of this pod runs now; None when its pod does not say."""
    recorded = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_WORKER_ALLOCATIONS, "")
    count, _, identity = recorded.partition("@")
    if count.isdigit() and identity and identity == container_identity(pod):
        return int(count)
    return started_allocations(pod)
