"""Kubernetes objects as the API server returns them, for the operator's pure tests."""

from __future__ import annotations

from typing import Any

from tmd.api.resources import API_VERSION, LABEL_ML_NODE


def node(name: str, cpu: str = "2", memory: str = "8Gi", zone: str = "zone-a", ready: bool = True,
         ml: bool = True) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}
    if ml:
        labels[LABEL_ML_NODE] = "true"
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "uid": f"uid-{name}"},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def model(model_id: str = "test_model", *, size: int = 1630, defined: bool = True,
          namespace: str = "default") -> dict[str, Any]:
    spec: dict[str, Any] = {"model_id": model_id, "model_type": "pytorch",
                            "inference_config": {"pass_through": {"tokenization": {"bert": {}}}},
                            "input": {"field_names": ["input"]}}
    if defined:
        spec["definition"] = {"uri": f"file:///store/{model_id}/model.pt", "sha256": "0" * 64,
                              "total_definition_length": size}
        spec["vocabulary"] = {"uri": f"file:///store/{model_id}/vocabulary.json"}
    return {"apiVersion": API_VERSION, "kind": "TrainedModel",
            "metadata": {"name": model_id.replace("_", "-"), "namespace": namespace, "uid": f"uid-m-{model_id}"},
            "spec": spec, "status": {"fully_defined": defined, "model_size_bytes": size if defined else 0}}


def deployment(deployment_id: str = "test_model", model_id: str = "test_model", *, allocations: int = 1,
               threads: int = 1, priority: str = "normal", created: str = "2026-11-22T00:00:00Z",
               status: dict[str, Any] | None = None, generation: int = 1, namespace: str = "default",
               **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "TrainedModelDeployment",
            "metadata": {"name": deployment_id.replace("_", "-"), "namespace": namespace,
                         "uid": f"uid-d-{deployment_id}", "creationTimestamp": created, "generation": generation},
            "spec": {"model_id": model_id, "deployment_id": deployment_id, "number_of_allocations": allocations,
                     "threads_per_allocation": threads, "priority": priority, **spec},
            "status": status or {}}


def running(pod: dict[str, Any], *, ready: bool = True, ip: str = "127.0.0.9") -> dict[str, Any]:
    pod = {**pod, "metadata": {**pod["metadata"], "creationTimestamp": "2026-11-22T00:00:01Z"}}
    pod["status"] = {
        "phase": "Running", "podIP": ip,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"name": "worker", "ready": ready, "restartCount": 0, "image": "x", "imageID": "",
                               "state": {"running": {"startedAt": "2026-11-22T00:00:02Z"}}}],
    }
    return pod


def crashlooping(pod: dict[str, Any]) -> dict[str, Any]:
    pod = running(pod, ready=False)
    pod["status"]["containerStatuses"][0].update(
        restartCount=3, state={"waiting": {"reason": "CrashLoopBackOff"}},
        lastState={"terminated": {"reason": "Error", "exitCode": 1, "message": "model.pt: corrupt"}})
    return pod
