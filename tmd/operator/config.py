"""Operator settings: how worker pods are built and which nodes are ML nodes.

Read from the environment (TMD_*), so the same image runs under `tmd up` and in a cluster.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field

from tmd.api.resources import LABEL_ML_NODE


@dataclass(frozen=True)
class OperatorConfig:
    # Nodes whose labels match are ML nodes (matchLabels semantics).
    ml_node_selector: dict[str, str] = field(default_factory=lambda: {LABEL_ML_NODE: "true"})
    # The worker container: image for real clusters; command runs `tmd worker` in it.
    worker_image: str = "ghcr.io/tmd-dev/tmd-worker:0.1.0"
    worker_command: tuple[str, ...] = ("tmd", "worker")
    worker_port: int = 8080
    # Extra environment for worker containers (e.g. PYTHONPATH under localkube).
    worker_env: dict[str, str] = field(default_factory=dict)
    low_priority_class: str = "tmd-low-priority"
    normal_priority_class: str | None = None
    # Seconds between forced full reconciles, on top of the event-driven ones.
    resync_seconds: float = 30.0
    # Seconds between full lists that refresh the operator's cache (a pass otherwise reads the cache).
    relist_seconds: float = 300.0
    # adaptive allocations: how often workers are sampled, and how long after a scale-up no
    # scale-down happens (Elasticsearch: 10 s and 5 minutes)
    adaptive_interval_seconds: float = 10.0
    adaptive_cooldown_seconds: float = 300.0
    # Leader election among operator replicas (leader.py): off for a single replica (it costs a
    # request per second); the Lease's namespace, None: the service account's, else "default".
    leader_election: bool = False
    leader_namespace: str | None = None
    lease_seconds: float = 10.0
    # In-place pod resize for allocation changes: None = use it when the API server offers it.
    inplace_resize: bool | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "OperatorConfig":
        env = os.environ if environ is None else environ
        kwargs: dict = {}
        if "TMD_ML_NODE_SELECTOR" in env:
            kwargs["ml_node_selector"] = dict(
                item.split("=", 1) for item in env["TMD_ML_NODE_SELECTOR"].split(",") if item
            )
        if "TMD_WORKER_IMAGE" in env:
            kwargs["worker_image"] = env["TMD_WORKER_IMAGE"]
        if "TMD_WORKER_COMMAND" in env:
            kwargs["worker_command"] = tuple(shlex.split(env["TMD_WORKER_COMMAND"]))
        if "TMD_WORKER_PORT" in env:
            kwargs["worker_port"] = int(env["TMD_WORKER_PORT"])
        if "TMD_WORKER_ENV" in env:
            kwargs["worker_env"] = json.loads(env["TMD_WORKER_ENV"])
        if "TMD_LOW_PRIORITY_CLASS" in env:
            kwargs["low_priority_class"] = env["TMD_LOW_PRIORITY_CLASS"]
        if env.get("TMD_INPLACE_RESIZE", "auto").lower() in ("true", "false"):
            kwargs["inplace_resize"] = env["TMD_INPLACE_RESIZE"].lower() == "true"
        if "TMD_RESYNC_SECONDS" in env:
            kwargs["resync_seconds"] = float(env["TMD_RESYNC_SECONDS"])
        if "TMD_LEADER_ELECTION" in env:
            kwargs["leader_election"] = env["TMD_LEADER_ELECTION"].lower() in ("1", "true")
        if "TMD_LEADER_NAMESPACE" in env:
            kwargs["leader_namespace"] = env["TMD_LEADER_NAMESPACE"] or None
        if "TMD_LEASE_SECONDS" in env:
            kwargs["lease_seconds"] = float(env["TMD_LEASE_SECONDS"])
        if "TMD_RELIST_SECONDS" in env:
            kwargs["relist_seconds"] = float(env["TMD_RELIST_SECONDS"])
        if "TMD_ADAPTIVE_INTERVAL_SECONDS" in env:
            kwargs["adaptive_interval_seconds"] = float(env["TMD_ADAPTIVE_INTERVAL_SECONDS"])
        if "TMD_ADAPTIVE_COOLDOWN_SECONDS" in env:
            kwargs["adaptive_cooldown_seconds"] = float(env["TMD_ADAPTIVE_COOLDOWN_SECONDS"])
        return cls(**kwargs)
