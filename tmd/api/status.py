"""The status of a TrainedModelDeployment: Elasticsearch's assignment (es-api.md §3) plus the
Kubernetes conventions (`observedGeneration`, `conditions`) that `kubectl wait` and Argo CD read.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class RoutingState(str, Enum):
    starting = "starting"
    started = "started"
    stopping = "stopping"
    failed = "failed"
    stopped = "stopped"


class AssignmentState(str, Enum):
    starting = "starting"
    started = "started"
    stopping = "stopping"
    failed = "failed"


class Route(BaseModel):
    """One node's entry in the routing table (Elasticsearch's RoutingInfo)."""

    model_config = ConfigDict(extra="forbid")

    current_allocations: int = Field(0, ge=0)
    target_allocations: int = Field(0, ge=0)
    routing_state: RoutingState = RoutingState.starting
    reason: str = ""


class AllocationStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allocation_count: int = 0
    target_allocation_count: int = 0
    state: str = "starting"


class Condition(BaseModel):
    """A Kubernetes condition (metav1.Condition)."""

    model_config = ConfigDict(extra="forbid")

    type: str
    status: str = Field(description="True, False or Unknown")
    reason: str = ""
    message: str = ""
    lastTransitionTime: str | None = None
    observedGeneration: int | None = None


class DeploymentStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignment_state: AssignmentState | None = None
    routing_table: dict[str, Route] = Field(default_factory=dict)
    reason: str | None = None
    start_time: str | None = None
    max_assigned_allocations: int = 0
    allocation_status: AllocationStatus | None = None
    model_bytes: int | None = None
    observedGeneration: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
