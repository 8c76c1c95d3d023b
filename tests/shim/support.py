"""The shim as a subprocess (so tests can kill and restart it), and model uploads through ES clients."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.operator.e2e import REPO, ChildProcess, OperatorProcess, free_port


class ShimProcess(ChildProcess):
    """`python -m tmd shim` against a cluster; `restart()` kills it (SIGKILL) and starts it again."""

    def __init__(self, kubeconfig: Path, store: Path, log_path: Path, *extra: str) -> None:
        self.kubeconfig, self.store, self.log_path, self.extra = kubeconfig, store, log_path, extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "ShimProcess":
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONPATH": str(REPO)}
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tmd", "shim", "--port", str(self.port), "--store",
                                      str(self.store), *self.extra], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()[-3000:]
            try:
                if httpx.get(self.url + "/", timeout=2).status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("shim did not come up:\n" + self.output()[-3000:])

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def upload_model(es: Any, model_id: str, config: dict[str, Any], definition: bytes, vocabulary: list[str],
                 parts: int = 3, order: list[int] | None = None) -> None:
    """put model, definition parts (in `order`), vocabulary: what eland does."""
    body = {k: v for k, v in config.items() if k != "model_id"}
    es.ml.put_trained_model(model_id=model_id, **body)
    for part, chunk in ordered_parts(definition, parts, order):
        es.ml.put_trained_model_definition_part(model_id=model_id, part=part,
                                                definition=base64.b64encode(chunk).decode(),
                                                total_definition_length=len(definition), total_parts=parts)
    es.ml.put_trained_model_vocabulary(model_id=model_id, vocabulary=vocabulary)


def ordered_parts(definition: bytes, parts: int, order: list[int] | None = None) -> list[tuple[int, bytes]]:
    size = -(-len(definition) // parts)
    chunks = [definition[i * size:(i + 1) * size] for i in range(parts)]
    return [(i, chunks[i]) for i in (order or list(range(parts)))]


def start_operator(kubeconfig: Path, log_path: Path, worker_port: int) -> OperatorProcess:
    """The operator with workers on `worker_port`: pod IPs of concurrently running localkube
    clusters on one machine can coincide (each cluster numbers 127.0.0.N from 2), so tests use a
    port of their own rather than 8080."""
    saved = os.environ.get("TMD_WORKER_PORT")
    os.environ["TMD_WORKER_PORT"] = str(worker_port)
    try:
        return OperatorProcess(kubeconfig, log_path).start()
    finally:
        if saved is None:
            os.environ.pop("TMD_WORKER_PORT", None)
        else:
            os.environ["TMD_WORKER_PORT"] = saved
