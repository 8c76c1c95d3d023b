"""Pure builders of the status a kubelet writes: container statuses, pod phase and conditions.

Every dict built here is schema-complete (the python client 37's strict models require
`name`/`image`/`imageID`/`ready`/`restartCount` on container statuses and `type`/`status` on
conditions), and uses the reasons a real kubelet uses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Mapping, Sequence

Obj = Mapping[str, Any]


def now_rfc3339(moment: datetime | None = None) -> str:
    return (moment or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_id(image: str) -> str:
    """A stable content-address-looking id; localkube runs commands, so the image is only a name."""
    digest = hashlib.sha256(image.encode()).hexdigest()
    repository = image.split("@", 1)[0].rsplit(":", 1)[0] if "/" in image or ":" in image else image
    return f"{repository}@sha256:{digest}"


@dataclass
class Terminated:
    exit_code: int
    reason: str
    started_at: str
    finished_at: str
    container_id: str
    message: str | None = None
    signal: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": self.container_id,
        }
        if self.message:
            out["message"] = self.message
        if self.signal:
            out["signal"] = self.signal
        return out

    @classmethod
    def from_dict(cls, data: Obj) -> "Terminated":
        return cls(
            exit_code=int(data["exitCode"]),
            reason=data.get("reason", "Error"),
            started_at=data.get("startedAt", ""),
            finished_at=data.get("finishedAt", ""),
            container_id=data.get("containerID", ""),
            message=data.get("message"),
            signal=data.get("signal"),
        )


def exit_reason(exit_code: int, oom: bool = False) -> str:
    if oom:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


@dataclass
class ContainerRecord:
    """What the kubelet knows about one container; the source of its `containerStatuses` entry."""

    name: str
    image: str
    state: Literal["waiting", "running", "terminated"] = "waiting"
    waiting_reason: str = "ContainerCreating"
    waiting_message: str | None = None
    started_at: str | None = None
    container_id: str = ""
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    resources: dict[str, Any] | None = None  # the allocated resources (in-place resize aware)

    def status(self) -> dict[str, Any]:
        if self.state == "running":
            state: dict[str, Any] = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated" and self.terminated is not None:
            state = {"terminated": self.terminated.to_dict()}
        else:
            waiting: dict[str, Any] = {"reason": self.waiting_reason}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            state = {"waiting": waiting}
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": image_id(self.image) if self.container_id else "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last_terminated.to_dict()} if self.last_terminated else {},
        }
        if self.container_id:
            out["containerID"] = self.container_id
        if self.resources is not None:
            out["resources"] = self.resources
            if self.resources.get("requests"):
                out["allocatedResources"] = dict(self.resources["requests"])
        return out


def pod_phase(restart_policy: str, init_failed: bool, containers: Sequence[ContainerRecord], will_restart: Mapping[str, bool]) -> str:
    """Pending / Running / Succeeded / Failed from container states (kubelet getPhase, simplified to
    what local processes can be in)."""
    if init_failed:
        return "Failed"
    if not containers or any(c.state == "waiting" and c.restart_count == 0 and c.terminated is None and c.last_terminated is None for c in containers):
        return "Pending"
    if any(c.state == "running" for c in containers):
        return "Running"
    if any(c.state == "waiting" for c in containers) or any(will_restart.get(c.name, False) for c in containers):
        return "Running"  # restarting (CrashLoopBackOff) keeps the pod Running
    finished = [c.terminated or c.last_terminated for c in containers]
    if all(t is not None and t.exit_code == 0 for t in finished):
        return "Succeeded"
    return "Failed"


@dataclass
class Condition:
    type: str
    status: bool
    reason: str | None = None
    message: str | None = None


def merge_conditions(previous: Sequence[Obj], desired: Sequence[Condition], now: str, generation: int | None = None) -> list[dict[str, Any]]:
    """Conditions in `desired` order, keeping `lastTransitionTime` where the status did not change."""
    before = {c.get("type"): c for c in previous or []}
    out = []
    for cond in desired:
        status = "True" if cond.status else "False"
        old = before.get(cond.type)
        item: dict[str, Any] = {"type": cond.type, "status": status}
        item["lastTransitionTime"] = old.get("lastTransitionTime", now) if old and old.get("status") == status else now
        if cond.reason:
            item["reason"] = cond.reason
        if cond.message:
            item["message"] = cond.message
        if generation is not None:
            item["observedGeneration"] = generation
        out.append(item)
    return out


@dataclass
class PodView:
    """Everything the pod status is computed from."""

    pod: Obj
    host_ip: str
    pod_ip: str | None
    start_time: str | None
    init_containers: Sequence[ContainerRecord] = field(default_factory=list)
    containers: Sequence[ContainerRecord] = field(default_factory=list)
    initialized: bool = True
    init_failed: bool = False
    will_restart: Mapping[str, bool] = field(default_factory=dict)
    qos_class: str = "BestEffort"
    resize: Condition | None = None  # PodResizePending / PodResizeInProgress, when one applies
    phase_override: str | None = None  # a terminal phase decided by deletion


def pod_status(view: PodView, now: str) -> dict[str, Any]:
    """The full `status` of a pod as the kubelet reports it."""
    pod = view.pod
    generation = (pod.get("metadata") or {}).get("generation")
    sandbox = view.pod_ip is not None
    phase = view.phase_override or pod_phase(
        (pod.get("spec") or {}).get("restartPolicy", "Always"), view.init_failed, view.containers, view.will_restart
    )
    terminal = phase in ("Succeeded", "Failed")
    not_ready = [c.name for c in view.containers if not c.ready]
    containers_ready = bool(view.containers) and not not_ready and not terminal
    reason_not_ready = "PodCompleted" if terminal else "ContainersNotReady"
    message = None if containers_ready or terminal else f"containers with unready status: [{' '.join(not_ready)}]"
    pending_init = [c.name for c in view.init_containers if not (c.terminated and c.terminated.exit_code == 0)]
    desired = [
        Condition("PodReadyToStartContainers", sandbox and not terminal),
        Condition(
            "Initialized",
            view.initialized,
            None if view.initialized else "ContainersNotInitialized",
            None if view.initialized else f"containers with incomplete status: [{' '.join(pending_init)}]",
        ),
        Condition("Ready", containers_ready, None if containers_ready else reason_not_ready, message),
        Condition("ContainersReady", containers_ready, None if containers_ready else reason_not_ready, message),
        Condition("PodScheduled", True),
    ]
    if view.resize is not None:
        desired.append(view.resize)
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": merge_conditions((pod.get("status") or {}).get("conditions") or [], desired, now, generation),
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}],
        "qosClass": view.qos_class,
        "containerStatuses": [c.status() for c in view.containers],
    }
    if view.init_containers:
        status["initContainerStatuses"] = [c.status() for c in view.init_containers]
    if view.pod_ip:
        status["podIP"] = view.pod_ip
        status["podIPs"] = [{"ip": view.pod_ip}]
    if view.start_time:
        status["startTime"] = view.start_time
    if generation is not None:
        status["observedGeneration"] = generation
    return status
