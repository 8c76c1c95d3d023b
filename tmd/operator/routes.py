"""What a worker pod's state means for its route (es-api.md §3.2, §2.8): a pure reading of a pod.

starting: scheduled, not yet ready; started: ready; stopping: being deleted;
failed: crashed, crash-looping or terminated, with the pod's own reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from tmd.api.status import RoutingState


@dataclass(frozen=True)
class PodRoute:
    state: RoutingState
    reason: str = ""


def route_of_pod(pod: Mapping[str, Any]) -> PodRoute:
    meta = pod.get("metadata", {})
    status = pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return PodRoute(RoutingState.stopping, "pod is being deleted")
    phase = status.get("phase", "Pending")
    if phase in ("Failed", "Succeeded"):
        return PodRoute(RoutingState.failed, _terminated_reason(status) or f"worker pod {phase.lower()}")
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerError",
                                     "CreateContainerConfigError", "RunContainerError"):
            last = (container.get("lastState") or {}).get("terminated") or {}
            detail = _describe_termination(last)
            return PodRoute(RoutingState.failed,
                            f"inference process crashed due to reason [{detail or waiting.get('message') or waiting['reason']}]")
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if phase == "Running" and conditions.get("Ready") == "True":
        return PodRoute(RoutingState.started)
    return PodRoute(RoutingState.starting)


def restart_count(pod: Mapping[str, Any]) -> int:
    return sum(int(c.get("restartCount", 0)) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def _terminated_reason(status: Mapping[str, Any]) -> str:
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return f"inference process crashed due to reason [{_describe_termination(terminated)}]"
    return status.get("message") or status.get("reason") or ""


def _describe_termination(terminated: Mapping[str, Any]) -> str:
    if not terminated:
        return ""
    parts = [terminated.get("reason") or "Error"]
    if "exitCode" in terminated:
        parts.append(f"exit code {terminated['exitCode']}")
    if terminated.get("message"):
        parts.append(str(terminated["message"]).strip()[-300:])
    return ", ".join(parts)
