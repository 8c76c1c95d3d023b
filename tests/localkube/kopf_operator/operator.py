"""A small kopf operator used by the localkube tests: each `Echo` gets one child pod (adopted, so it
is garbage-collected with its owner), status writes from handlers and a timer, and a delete handler
(which makes kopf manage a finalizer)."""

from __future__ import annotations

import sys

import kopf
import kubernetes

GROUP, VERSION, PLURAL = "localkube.tmd.dev", "v1", "echoes"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: object) -> None:
    kubernetes.config.load_kube_config()


def child_pod(name: str, node: str) -> dict:
    script = "import os, time\nprint('child of', os.environ['OWNER'], 'on', os.environ['POD_IP'], flush=True)\nwhile True: time.sleep(1)"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-child", "labels": {"app": "echo", "echo": name}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "echo",
                "image": "python:3.11",
                "command": [sys.executable, "-c", script],
                "env": [
                    {"name": "OWNER", "value": name},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                ],
            }],
        },
    }


@kopf.on.create(GROUP, VERSION, PLURAL)
def create_fn(spec: kopf.Spec, name: str, namespace: str, logger: kopf.Logger, **_: object) -> dict:
    pod = child_pod(name, spec.get("node", "node-1"))
    kopf.adopt(pod)
    kubernetes.client.CoreV1Api().create_namespaced_pod(namespace, pod)
    logger.info("created child pod %s", pod["metadata"]["name"])
    return {"child": pod["metadata"]["name"]}


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec.message")
def update_fn(new: str, patch: kopf.Patch, **_: object) -> None:
    patch.status["message"] = new


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete_fn(name: str, logger: kopf.Logger, **_: object) -> None:
    logger.info("echo %s deleted", name)


@kopf.timer(GROUP, VERSION, PLURAL, interval=1.0)
def tick(status: kopf.Status, patch: kopf.Patch, **_: object) -> None:
    patch.status["ticks"] = int(status.get("ticks") or 0) + 1
