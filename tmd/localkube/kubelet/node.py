"""Pure builders of the Node a kubelet registers and of its heartbeat Lease."""

from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

ML_LABELS = {"node-role.kubernetes.io/ml": "true", "ml.tmd.dev/ml-node": "true"}
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def arch() -> str:
    machine = platform.machine()
    return GOARCH.get(machine, machine.lower())


def micro_time(moment: datetime | None = None) -> str:
    return (moment or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class NodeSpec:
    """A virtual node: its size is configuration, not the machine's (a 2-core host can have 3×4 CPUs)."""

    name: str
    cpus: str = "4"
    memory: str = "8Gi"
    pods: int = 110
    zone: str = "zone-a"
    region: str = "local"
    host_ip: str = "127.0.0.1"
    labels: Mapping[str, str] = field(default_factory=dict)
    kubelet_version: str = "v1.33.2"


def node_labels(spec: NodeSpec) -> dict[str, str]:
    return {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch(),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch(),
        "topology.kubernetes.io/zone": spec.zone,
        "topology.kubernetes.io/region": spec.region,
        "node.kubernetes.io/instance-type": "localkube",
        **ML_LABELS,
        **spec.labels,
    }


def capacity(spec: NodeSpec) -> dict[str, str]:
    return {"cpu": str(spec.cpus), "memory": spec.memory, "pods": str(spec.pods), "ephemeral-storage": "100Gi"}


def node_info(spec: NodeSpec) -> dict[str, str]:
    uname = os.uname()
    ident = hashlib.sha256(spec.name.encode()).hexdigest()[:32]
    return {
        "machineID": ident,
        "systemUUID": f"{ident[:8]}-{ident[8:12]}-{ident[12:16]}-{ident[16:20]}-{ident[20:32]}",
        "bootID": hashlib.sha256(f"{spec.name}/{uname.release}/{uname.version}".encode()).hexdigest()[:32],
        "kernelVersion": uname.release,
        "osImage": f"localkube on {uname.sysname}",
        "containerRuntimeVersion": "localkube://0.1.0",
        "kubeletVersion": spec.kubelet_version,
        "kubeProxyVersion": spec.kubelet_version,
        "operatingSystem": "linux",
        "architecture": arch(),
    }


def node_conditions(heartbeat: str, transition: str) -> list[dict[str, Any]]:
    def cond(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
        return {"type": kind, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": heartbeat, "lastTransitionTime": transition}

    return [
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]


def node_status(spec: NodeSpec, heartbeat: str, transition: str) -> dict[str, Any]:
    return {
        "capacity": capacity(spec),
        "allocatable": capacity(spec),
        "conditions": node_conditions(heartbeat, transition),
        "addresses": [{"type": "InternalIP", "address": spec.host_ip}, {"type": "Hostname", "address": spec.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": node_info(spec),
    }


def node_object(spec: NodeSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": node_labels(spec), "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {},
    }


def lease_object(spec: NodeSpec, node_uid: str | None, renew: str, duration: int = 40) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": spec.name, "namespace": "kube-node-lease"}
    if node_uid:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": spec.name, "uid": node_uid}]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {"holderIdentity": spec.name, "leaseDurationSeconds": duration, "renewTime": renew},
    }
