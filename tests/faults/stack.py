"""The full local stack for fault tests: localkube (the test's `localkube` fixture), the real kopf
operator and `tmd shim` as subprocesses, plus the probes fault tests need (routes, worker pods,
worker processes) — all read from the outside, as a client or an operator would."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx

from tests.operator.e2e import OperatorProcess, install_crds
from tests.shim.support import ShimProcess, start_operator

Kube = Callable[..., Any]


@dataclass
class Stack:
    """Operator + shim on one cluster. Workers get `work_dir` as TMD_WORK_DIR (OperatorProcess
    passes its log directory), which is what tells this stack's worker processes from others'."""

    kube: Kube
    operator: OperatorProcess
    shim: ShimProcess
    work_dir: Path
    worker_port: int

    def stop(self) -> None:
        """Shim and operator both stop cleanly on SIGTERM (exit code 0)."""
        codes = {}
        if self.shim.proc and self.shim.proc.poll() is None:
            codes["shim"] = self.shim.stop()
        codes["operator"] = self.operator.stop()
        assert set(codes.values()) == {0}, (codes, self.operator.output()[-3000:], self.shim.output()[-3000:])


def start_stack(localkube: Any, kube: Kube, work_dir: Path, worker_port: int) -> Stack:
    install_crds(kube)
    operator = start_operator(localkube.kubeconfig, work_dir / "operator.log", worker_port)
    shim = ShimProcess(localkube.kubeconfig, work_dir / "store", work_dir / "shim.log", "--no-auth",
                       "--worker-port", str(worker_port)).start()
    return Stack(kube, operator, shim, work_dir, worker_port)


def get_json(kube: Kube, *args: str) -> Any:
    return json.loads(kube("get", *args, "-o", "json").stdout)


def status_of(kube: Kube, name: str) -> dict[str, Any]:
    return get_json(kube, "tmd", name).get("status") or {}


def worker_pods(kube: Kube, name: str) -> list[dict[str, Any]]:
    """The deployment's worker pods that are not being deleted."""
    return [p for p in get_json(kube, "pods", "-l", f"ml.tmd.dev/deployment={name}")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def worker_url(pod: dict[str, Any], port: int) -> str:
    return f"http://{pod['status']['podIP']}:{port}"


def worker_stats(url: str) -> dict[str, Any]:
    """The worker's node-level stats (`{}` while it loads or cannot be reached)."""
    try:
        response = httpx.get(url + "/stats", timeout=5)
    except httpx.HTTPError:
        return {}
    return response.json().get("node", {}) if response.status_code == 200 else {}


def start_deployment(shim_url: str, model_id: str, body: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    """Start through the Elasticsearch API, waiting until every allocation is placed."""
    query = {"wait_for": "fully_allocated", "timeout": "120s", **{k: str(v) for k, v in params.items()}}
    response = httpx.post(f"{shim_url}/_ml/trained_models/{model_id}/deployment/_start", params=query, json=body,
                          timeout=150)
    assert response.status_code == 200, response.text
    return response.json()["assignment"]


def stop_deployment(shim_url: str, deployment_id: str) -> None:
    response = httpx.post(f"{shim_url}/_ml/trained_models/{deployment_id}/deployment/_stop", params={"force": "true"},
                          timeout=60)
    assert response.status_code == 200, response.text


def worker_processes(work_dir: Path) -> list[int]:
    """Pids of `tmd worker` processes started for this stack (TMD_WORK_DIR=work_dir in their environment)."""
    marker = f"TMD_WORK_DIR={work_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"tmd\x00worker" not in (entry / "cmdline").read_bytes():
                continue
            if marker in (entry / "environ").read_bytes().split(b"\x00"):
                pids.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return pids
