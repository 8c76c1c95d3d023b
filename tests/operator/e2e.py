"""Helpers for the operator's end-to-end tests: models on disk, resources, the operator process."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import yaml

from tmd.api.resources import API_VERSION, resource_name

REPO = Path(__file__).resolve().parents[2]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def trained_model_resource(model_dir: Path, namespace: str = "default") -> dict[str, Any]:
    """A TrainedModel whose definition and vocabulary are files of a model directory."""
    config = json.loads((model_dir / "config.json").read_text())
    model_pt, vocab = model_dir / "model.pt", model_dir / "vocabulary.json"
    spec = {k: config[k] for k in ("model_id", "model_type", "inference_config", "input") if k in config}
    spec["definition"] = {"uri": model_pt.as_uri(), "sha256": sha256(model_pt),
                          "total_definition_length": model_pt.stat().st_size}
    spec["vocabulary"] = {"uri": vocab.as_uri(), "sha256": sha256(vocab)}
    return {"apiVersion": API_VERSION, "kind": "TrainedModel",
            "metadata": {"name": resource_name(config["model_id"]), "namespace": namespace}, "spec": spec}


def deployment_resource(model_id: str, deployment_id: str | None = None, namespace: str = "default",
                        **spec: Any) -> dict[str, Any]:
    deployment_id = deployment_id or model_id
    return {"apiVersion": API_VERSION, "kind": "TrainedModelDeployment",
            "metadata": {"name": resource_name(deployment_id), "namespace": namespace},
            "spec": {"model_id": model_id, "deployment_id": deployment_id, **spec}}


def install_crds(kube: Callable[..., Any]) -> None:
    kube("apply", "-f", str(REPO / "crds"))
    kube("wait", "--for=condition=established", "--timeout=30s", "crd/trainedmodeldeployments.ml.tmd.dev",
         "crd/trainedmodels.ml.tmd.dev")


def apply(kubectl: Callable[..., Any], *objects: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ChildProcess:
    """A tmd role run as a subprocess with its output in a log file, stopped by signal."""

    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        return code

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class OperatorProcess(ChildProcess):
    """`tmd operator` as a subprocess, with workers started as `python -m tmd worker` by the kubelet."""

    def __init__(self, kubeconfig: Path, log_path: Path, extra_env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "OperatorProcess":
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONPATH": str(REPO),
            "TMD_WORKER_COMMAND": f"{sys.executable} -m tmd worker",
            "TMD_WORKER_ENV": json.dumps({"PYTHONPATH": str(REPO), "TMD_WORK_DIR": str(self.log_path.parent)}),
            "TMD_RESYNC_SECONDS": "3",
            **self.extra_env,
        }
        self.log = self.log_path.open("ab")
        offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen([sys.executable, "-m", "tmd", "operator", *self.args], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        # Until kopf has installed its signal handlers, a SIGTERM would kill the process outright.
        wait_for(lambda: "Initial authentication has finished" in self.log_path.read_text(errors="replace")[offset:]
                 or self.proc.poll() is not None, timeout=60, interval=0.1, what="operator started")
        return self


def wait_for(predicate: Callable[[], Any], timeout: float = 90.0, interval: float = 0.3, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as err:  # the thing we wait for may not exist yet
            last = err
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or predicate}: last value {last!r}")


def infer(pod: dict[str, Any], text: str, port: int = 8080) -> httpx.Response:
    return httpx.post(f"http://{pod['status']['podIP']}:{port}/infer", json={"docs": [{"input": text}]}, timeout=30)


def worker_pid(pod_ip: str, deployment_id: str) -> int | None:
    """The pid of `deployment_id`'s worker process serving on `pod_ip` (the kubelet gave it POD_IP;
    pod IPs are reused, so the deployment id tells a new pod's process from a finished one's)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"tmd\x00worker" not in cmdline:
                continue
            environ = (entry / "environ").read_bytes().split(b"\x00")
        except OSError:
            continue
        if f"POD_IP={pod_ip}".encode() in environ and f"TMD_DEPLOYMENT_ID={deployment_id}".encode() in environ:
            return int(entry.name)
    return None
