"""A minimal real kopf operator against the API server: adopted children, status, finalizers, no warnings."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

import kubernetes
import pytest

from .conftest import Cluster

OPERATOR = '''
import os, kopf, kubernetes

@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.watching.server_timeout = 30
    if os.environ.get("KOPF_STREAMING") == "1":  # kopf 1.45: WatchList-style start and chunked lists
        settings.watching.initial_streaming = True
        settings.watching.chunk_size = 1

@kopf.on.create("kopf.dev", "v1", "kopfexamples")
def create_fn(body, name, namespace, patch, **_):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-worker"},
           "spec": {"containers": [{"name": "main", "image": "img:1"}]}}
    kopf.adopt(pod, owner=body)
    kubernetes.config.load_kube_config()
    kubernetes.client.CoreV1Api().create_namespaced_pod(namespace, pod)
    patch.status["phase"] = "Ready"
    return {"message": "created"}

@kopf.on.update("kopf.dev", "v1", "kopfexamples")
def update_fn(spec, **_):
    return {"seen": spec.get("field")}

@kopf.on.delete("kopf.dev", "v1", "kopfexamples")
def delete_fn(name, **_):
    return None
'''


class Output:
    """Collects a process' output lines in a thread so tests can wait for log patterns."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.proc = proc
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen in kopf output:\n{''.join(self.lines[-40:])}")

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


@pytest.fixture(params=["list-watch", "initial-streaming"])
def kopf(cluster: Cluster, example_crd: str, request: pytest.FixtureRequest) -> Iterator[Output]:
    path = cluster.root / "operator.py"
    path.write_text(OPERATOR)
    env = {**cluster.env(), "KOPF_STREAMING": "1" if request.param == "initial-streaming" else "0"}
    proc = subprocess.Popen([sys.executable, "-m", "kopf", "run", "--standalone", "-A", "--verbose", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = Output(proc)
    try:
        out.wait_for("Starting the watch-stream for kopfexamples.v1.kopf.dev")
        yield out
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        custom = kubernetes.client.CustomObjectsApi(cluster.api_client())  # leftovers of a failed test
        for item in custom.list_namespaced_custom_object("kopf.dev", "v1", "default", "kopfexamples")["items"]:
            name = item["metadata"]["name"]
            custom.patch_namespaced_custom_object("kopf.dev", "v1", "default", "kopfexamples", name,
                                                  {"metadata": {"finalizers": None}})
            if not item["metadata"].get("deletionTimestamp"):
                custom.delete_namespaced_custom_object("kopf.dev", "v1", "default", "kopfexamples", name)


@pytest.mark.slow
def test_kopf_operator_lifecycle(cluster: Cluster, kopf: Output) -> None:
    api = cluster.api_client()
    custom = kubernetes.client.CustomObjectsApi(api)
    core = kubernetes.client.CoreV1Api(api)
    started = time.monotonic()
    custom.create_namespaced_custom_object("kopf.dev", "v1", "default", "kopfexamples", {
        "apiVersion": "kopf.dev/v1", "kind": "KopfExample", "metadata": {"name": "op1"}, "spec": {"field": "a"}})
    kopf.wait_for("Handler 'create_fn' succeeded")
    handled_in = time.monotonic() - started
    deadline = time.monotonic() + 10  # kopf writes the handler's status right after logging success
    while True:
        obj: dict[str, Any] = custom.get_namespaced_custom_object("kopf.dev", "v1", "default", "kopfexamples", "op1")
        if "create_fn" in obj.get("status", {}) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert obj["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
    assert obj["status"]["phase"] == "Ready" and obj["status"]["create_fn"] == {"message": "created"}
    worker = core.read_namespaced_pod("op1-worker", "default")
    ref = worker.metadata.owner_references[0]
    assert (ref.uid, ref.controller, ref.block_owner_deletion) == (obj["metadata"]["uid"], True, True)

    custom.patch_namespaced_custom_object("kopf.dev", "v1", "default", "kopfexamples", "op1", {"spec": {"field": "b"}})
    kopf.wait_for("Handler 'update_fn' succeeded")
    custom.delete_namespaced_custom_object("kopf.dev", "v1", "default", "kopfexamples", "op1")
    kopf.wait_for("Handler 'delete_fn' succeeded")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = [p.metadata.name for p in core.list_namespaced_pod("default").items]
        gone = not custom.list_namespaced_custom_object("kopf.dev", "v1", "default", "kopfexamples")["items"]
        if gone and "op1-worker" not in names:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("owner or adopted worker pod still present")
    time.sleep(0.5)
    text = "".join(kopf.lines)
    for bad in ("Traceback", "inconsistencies", "WARNING", "ERROR", "Restarting the watch-stream"):
        assert bad not in text, text
    assert kopf.count("Handler 'create_fn' succeeded") == 1 and kopf.count("Handler 'delete_fn' succeeded") == 1
    print(f"kopf handled the creation {handled_in:.2f}s after it was written")


PRUNING_OPERATOR = '''
import kopf

@kopf.on.create("pruned.example.com", "v1", "kopfexamples")
def create_fn(**_):
    return {"message": "dropped by the structural schema"}
'''


@pytest.mark.slow
def test_kopf_sees_status_pruning_as_inconsistency(cluster: Cluster) -> None:
    """§8 check 8: a status schema without x-kubernetes-preserve-unknown-fields prunes kopf's handler results,
    and kopf warns about the inconsistent patch, exactly as on a real cluster."""
    import yaml
    from .conftest import CRD_MANIFEST
    crd = yaml.safe_load(CRD_MANIFEST.replace("kopf.dev", "pruned.example.com").replace("[kex]", "[prn]"))
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"] = {
        "type": "object", "properties": {"phase": {"type": "string"}}}
    api = cluster.api_client()
    kubernetes.client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    path = cluster.root / "pruning_operator.py"
    path.write_text(PRUNING_OPERATOR)
    proc = subprocess.Popen([sys.executable, "-m", "kopf", "run", "--standalone", "-A", "--verbose", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cluster.env())
    out = Output(proc)
    custom = kubernetes.client.CustomObjectsApi(api)
    try:
        out.wait_for("Starting the watch-stream for kopfexamples.v1.pruned.example.com")
        custom.create_namespaced_custom_object("pruned.example.com", "v1", "default", "kopfexamples", {
            "apiVersion": "pruned.example.com/v1", "kind": "KopfExample", "metadata": {"name": "p1"}, "spec": {}})
        out.wait_for("Handler 'create_fn' succeeded")
        out.wait_for("inconsistencies")
        print(next(line for line in out.lines if "inconsistencies" in line).strip())
        obj = custom.get_namespaced_custom_object("pruned.example.com", "v1", "default", "kopfexamples", "p1")
        assert "create_fn" not in obj.get("status", {})
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    custom.patch_namespaced_custom_object("pruned.example.com", "v1", "default", "kopfexamples", "p1",
                                          {"metadata": {"finalizers": None}})
    kubernetes.client.ApiextensionsV1Api(api).delete_custom_resource_definition("kopfexamples.pruned.example.com")
