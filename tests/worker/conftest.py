"""Real worker processes for the worker tests: `python -m tmd worker` on loopback addresses."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import torch
from torch import Tensor, nn

from tmd.tinymodels import super_simple, write_model_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0


def free_address() -> tuple[str, int]:
    """A loopback address 127.0.0.x and a port free on it (other tests and agents use 127.0.0.1)."""
    host = f"127.0.0.{random.randint(2, 254)}"
    with socket.socket() as s:
        s.bind((host, 0))
        return host, s.getsockname()[1]


@dataclass
class Worker:
    proc: subprocess.Popen
    url: str
    log_path: Path
    args: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30.0), **kw)

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/stats", timeout=10).json()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM and wait; kill only if it does not exit (then the test fails on the code)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def spawn_worker(model_dir: Path | str | None, *args: str, env: dict[str, str] | None = None) -> Worker:
    """Start `tmd worker`; with no model_dir it finds its model the pod way, from the environment."""
    host, port = free_address()
    log_path = Path(tempfile.mkstemp(prefix="tmd-worker-", suffix=".log")[1])
    dir_args = ["--model-dir", str(model_dir)] if model_dir is not None else []
    argv = [sys.executable, "-m", "tmd", "worker", *dir_args, "--host", host, "--port", str(port), *args]
    child_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=child_env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    return Worker(proc, f"http://{host}:{port}", log_path, argv)


@pytest.fixture(scope="module")
def workers() -> Iterator[list[Worker]]:
    """Collects the workers a module starts and stops every one at the end."""
    started: list[Worker] = []
    yield started
    for w in started:  # signal all first so they shut down in parallel
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    for w in started:
        w.stop()
        w.log_path.unlink(missing_ok=True)


def start_all(registry: list[Worker], specs: list[tuple[Path | str, tuple[str, ...], dict[str, str] | None]]) -> list[Worker]:
    """Start several workers at once (their torch imports overlap), then wait for all."""
    new = [spawn_worker(d, *a, env=e) for d, a, e in specs]
    registry.extend(new)
    for w in new:
        w.wait_ready()
    return new


# --- a deliberately slow model ----------------------------------------------------------

class SlowPassThrough(nn.Module):
    """SuperSimple's output after `rounds` 128×128 matmuls: a model that takes a while.

    TorchScript has no sleep, so the delay is computation; lanes run it on one thread.
    """

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.rounds = rounds
        self.register_buffer("w", torch.full((128, 128), 1.0 / 128))

    def forward(self, input_ids: Tensor, argument_2: Tensor, argument_3: Tensor, argument_4: Tensor) -> Tensor:
        x = self.w
        for _ in range(self.rounds):
            x = torch.mm(x, self.w)
        return torch.ones((input_ids.size(0), 2), dtype=torch.float64) * x.sum() / x.sum()


def rounds_for(seconds: float) -> int:
    """How many 128×128 matmuls take `seconds` on one thread here (measured, machines vary)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        w = torch.full((128, 128), 1.0 / 128)
        x = w
        start = time.perf_counter()
        for _ in range(200):
            x = torch.mm(x, w)
        per_round = (time.perf_counter() - start) / 200
    finally:
        torch.set_num_threads(previous)
    return max(1, int(seconds / per_round))


def write_slow_model(path: Path, seconds: float = 0.2) -> Path:
    base = super_simple("slow_model")
    return write_model_dir(path, model=torch.jit.script(SlowPassThrough(rounds_for(seconds))),
                           config=base.config, vocabulary=base.vocabulary)
