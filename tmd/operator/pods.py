"""Build the worker pod of one (deployment, node): a pure function of the resources and the plan.

CPU request = limit = allocations × threads in whole CPUs, so the pod gets Guaranteed QoS
and a static CPU manager can pin its cores (DESIGN.md "Placement"). Low-priority workers ask
for a sliver of CPU instead: Elasticsearch places them ignoring CPU, and they renice themselves.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from tmd.api.deployment import DeploymentSpec, Priority
from tmd.api.resources import (API_VERSION, DEPLOYMENT, LABEL_DEPLOYMENT, LABEL_MODEL, LABEL_NODE, LABEL_ROLE,
                               resource_name)
from tmd.operator.config import OperatorConfig

WORKER_ROLE = "worker"
CONTAINER = "worker"
ANNOTATION_DEPLOYMENT_ID = "ml.tmd.dev/deployment-id"
ANNOTATION_ALLOCATIONS = "ml.tmd.dev/allocations"
ANNOTATION_REPLACES = "ml.tmd.dev/replaces"  # on a surge replacement: the worker pod it replaces
LOW_PRIORITY_CPU = "100m"
_MAX_NAME = 63  # pod names end up in hostnames and labels: keep them DNS labels


def pod_name(deployment_name: str, node: str) -> str:
    name = f"{deployment_name}-{node}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:_MAX_NAME - 9].rstrip('-.')}-{digest}"


def memory_quantity(n_bytes: int) -> str:
    """Whole MiB, rounded up: readable in `kubectl describe` and never below the estimate."""
    return f"{-(-n_bytes // (1 << 20))}Mi"


def worker_pod(deployment: Mapping[str, Any], spec: DeploymentSpec, model: Mapping[str, Any], node: str,
               allocations: int, memory_bytes: int, config: OperatorConfig, *, name: str | None = None) -> dict[str, Any]:
    """The pod that serves `allocations` allocations of `deployment` on `node`."""
    meta = deployment["metadata"]
    model_spec = model.get("spec", {})
    low = spec.priority is Priority.low
    cpu = LOW_PRIORITY_CPU if low else str(allocations * spec.threads_per_allocation)
    cpu_limit = "1" if low else cpu
    memory = memory_quantity(memory_bytes)
    port = config.worker_port
    env = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "TMD_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "TMD_PORT", "value": str(port)},
        {"name": "TMD_DEPLOYMENT_ID", "value": spec.deployment_id},
        {"name": "TMD_MODEL_ID", "value": spec.model_id},
        {"name": "TMD_ALLOCATIONS", "value": str(allocations)},
        {"name": "TMD_THREADS", "value": str(spec.threads_per_allocation)},
        {"name": "TMD_QUEUE_CAPACITY", "value": str(spec.queue_capacity)},
        {"name": "TMD_LOW_PRIORITY", "value": "true" if low else "false"},
    ]
    if spec.cache_size is not None:
        env.append({"name": "TMD_CACHE_SIZE", "value": spec.cache_size})
    if spec.tmd_batching is not None:  # tmd extension; absent, the worker's defaults apply
        env.append({"name": "TMD_MAX_BATCH_SIZE", "value": str(spec.tmd_batching.max_batch_size)})
        env.append({"name": "TMD_MAX_BATCH_DELAY", "value": spec.tmd_batching.max_batch_delay})
    for key, location in (("DEFINITION", model_spec.get("definition")), ("VOCABULARY", model_spec.get("vocabulary"))):
        if location:
            env.append({"name": f"TMD_{key}_URI", "value": location["uri"]})
            if location.get("sha256"):
                env.append({"name": f"TMD_{key}_SHA256", "value": location["sha256"]})
    env.append({"name": "TMD_MODEL_CONFIG", "value": _model_config_json(model_spec)})
    env.extend({"name": k, "value": v} for k, v in sorted(config.worker_env.items()))
    probe_http = {"path": "/readyz", "port": port}
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name or pod_name(meta["name"], node),
            "namespace": meta["namespace"],
            "labels": {
                LABEL_ROLE: WORKER_ROLE,
                LABEL_DEPLOYMENT: meta["name"],
                LABEL_MODEL: resource_name(spec.model_id),
                LABEL_NODE: node,
            },
            "annotations": {ANNOTATION_DEPLOYMENT_ID: spec.deployment_id, ANNOTATION_ALLOCATIONS: str(allocations)},
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": DEPLOYMENT, "name": meta["name"], "uid": meta["uid"],
                "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": CONTAINER,
                "image": config.worker_image,
                "command": list(config.worker_command),
                "env": env,
                "ports": [{"name": "http", "containerPort": port}],
                "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory}},
                "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"},
                                 {"resourceName": "memory", "restartPolicy": "NotRequired"}],
                "readinessProbe": {"httpGet": probe_http, "periodSeconds": 2, "failureThreshold": 3},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 10,
                                  "failureThreshold": 6, "initialDelaySeconds": 30},
                "startupProbe": {"httpGet": probe_http, "periodSeconds": 1, "failureThreshold": 600},
                # Pod Security `restricted`; the fetched model goes to the /tmp scratch volume.
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True},
                "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            # Workers never call the Kubernetes API.
            "automountServiceAccountToken": False,
        },
    }
    priority_class = config.low_priority_class if low else config.normal_priority_class
    if priority_class:
        pod["spec"]["priorityClassName"] = priority_class
    return pod


def _model_config_json(model_spec: Mapping[str, Any]) -> str:
    """The Elasticsearch model configuration the worker needs to tokenize and post-process."""
    keys = ("model_id", "model_type", "inference_config", "input", "prefix_strings", "description", "tags", "metadata")
    return json.dumps({k: model_spec[k] for k in keys if model_spec.get(k) is not None}, sort_keys=True)
