"""A whole local cluster in one asyncio loop: the API server plus one process kubelet per virtual
node. `Cluster` is the async core (used by `tmd localkube`); `LocalCluster` runs it in a
background thread for synchronous callers (tests, `tmd up`)."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Coroutine, Mapping, TypeVar

import yaml

from .apiserver import APIServer
from .kubelet import BackoffPolicy, Kubelet, KubeletConfig, NodeSpec
from .kubelet.ipam import DEFAULT_SUBNET, IPAM
from .kubelet.simulated import SimulatedNodes

log = logging.getLogger("tmd.localkube")
T = TypeVar("T")

DEFAULT_VERSION = "v1.33.2"
ZONES = ("zone-a", "zone-b", "zone-c", "zone-d", "zone-e", "zone-f")


@dataclass
class ClusterConfig:
    data_dir: Path
    nodes: int = 3
    node_cpus: str = "4"
    node_memory: str = "8Gi"
    node_pods: int = 110
    zones: int = 3
    port: int | None = None  # None: the port this data dir used last time, else any free port
    host: str = "127.0.0.1"
    version: str = DEFAULT_VERSION
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    node_labels: Mapping[str, str] = field(default_factory=dict)
    lease_period: float = 10.0
    shutdown_grace: float = 10.0
    server_options: Mapping[str, Any] = field(default_factory=dict)  # extra APIServer keywords (bookmark_interval, ...)
    pod_subnet: str = DEFAULT_SUBNET
    simulated_nodes: int = 0  # sim-1..sim-N: nodes whose pods run no process (kwok-like)

    def node_specs(self) -> list[NodeSpec]:
        return self._specs("node", self.nodes)

    def simulated_node_specs(self) -> list[NodeSpec]:
        return self._specs("sim", self.simulated_nodes)

    def _specs(self, prefix: str, count: int) -> list[NodeSpec]:
        zones = ZONES[: max(1, min(self.zones, len(ZONES)))]
        return [
            NodeSpec(
                name=f"{prefix}-{i}",
                cpus=str(self.node_cpus),
                memory=self.node_memory,
                pods=self.node_pods,
                zone=zones[(i - 1) % len(zones)],
                labels=dict(self.node_labels),
                kubelet_version=self.version,
            )
            for i in range(1, count + 1)
        ]


def kubeconfig_text(url: str, name: str = "localkube") -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": url}}],
        "users": [{"name": name, "user": {"token": "localkube"}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
        "current-context": name,
    }
    return yaml.safe_dump(config, sort_keys=False)


class ClusterError(Exception):
    """The cluster cannot start (a user-facing message, no traceback)."""


class Cluster:
    """API server + kubelets in the running loop."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.server: APIServer | None = None
        self.kubelets: list[Kubelet] = []
        self.simulated: SimulatedNodes | None = None
        self._lock: int | None = None

    def _take_data_dir(self) -> None:
        """One localkube per data directory: two would run every pod twice and fight over state."""
        fd = os.open(self.data_dir / "localkube.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ClusterError(f"data directory {self.data_dir} is in use by localkube pid {holder}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock = fd

    def _release_data_dir(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def url(self) -> str:
        assert self.server is not None, "cluster not started"
        return self.server.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    def _saved_port(self) -> int:
        try:
            return int(json.loads((self.data_dir / "localkube.json").read_text())["port"])
        except (OSError, ValueError, KeyError):
            return 0

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_data_dir()
        port = self.config.port if self.config.port is not None else self._saved_port()
        options = dict(self.config.server_options)
        self.server = APIServer(self.data_dir, host=self.config.host, port=port, version=self.config.version, **options)
        try:
            await self.server.start()
        except OSError:
            if self.config.port is not None or port == 0:
                raise
            log.warning("port %s of the previous run is taken; using another one", port)
            self.server = APIServer(self.data_dir, host=self.config.host, port=0, version=self.config.version, **options)
            await self.server.start()
        (self.data_dir / "localkube.json").write_text(json.dumps({"port": self.port, "url": self.url}))
        self.kubeconfig.write_text(kubeconfig_text(self.url))
        self.kubelets = [
            Kubelet(KubeletConfig(node=spec, server=self.url, data_dir=self.data_dir, backoff=self.config.backoff,
                                  lease_period=self.config.lease_period, shutdown_grace=self.config.shutdown_grace,
                                  pod_subnet=self.config.pod_subnet))
            for spec in self.config.node_specs()
        ]
        await asyncio.gather(*(k.start() for k in self.kubelets))
        await asyncio.gather(*(k.synced.wait() for k in self.kubelets))
        if self.config.simulated_nodes:
            assert self.server.registry is not None
            self.simulated = SimulatedNodes(self.server.registry, self.config.simulated_node_specs(),
                                            IPAM(self.data_dir / "kubelet" / "ipam.json", self.config.pod_subnet))
            await self.simulated.start()
        log.info("localkube up at %s with %d nodes and %d simulated nodes; kubeconfig %s", self.url, len(self.kubelets),
                 self.config.simulated_nodes, self.kubeconfig)

    @property
    def node_names(self) -> list[str]:
        return [k.node.name for k in self.kubelets] + (self.simulated.names if self.simulated else [])

    async def stop(self, leave_pods_running: bool = False) -> None:
        """Stop kubelets (and, unless `leave_pods_running`, every pod process), then the API server."""
        if leave_pods_running:
            await asyncio.gather(*(k.detach() for k in self.kubelets))
        else:
            await asyncio.gather(*(k.stop() for k in self.kubelets))
        self.kubelets = []
        if self.simulated is not None:
            await self.simulated.stop()
            self.simulated = None
        if self.server is not None:
            await self.server.stop()
        self._release_data_dir()
        log.info("localkube stopped")


class LocalCluster:
    """A local cluster for synchronous code: the loop runs in a daemon thread.

    >>> with LocalCluster(tmp_path, nodes=2) as cluster:
    ...     subprocess.run(["kubectl", "--kubeconfig", cluster.kubeconfig, "get", "nodes"])
    """

    def __init__(
        self,
        data_dir: Path | str,
        nodes: int = 3,
        node_cpus: str | int = "4",
        node_memory: str = "8Gi",
        port: int | None = None,
        *,
        zones: int = 3,
        host: str = "127.0.0.1",
        version: str = DEFAULT_VERSION,
        backoff_base: float = 10.0,
        backoff_cap: float = 300.0,
        node_labels: Mapping[str, str] | None = None,
        lease_period: float = 10.0,
        shutdown_grace: float = 10.0,
        server_options: Mapping[str, Any] | None = None,
        pod_subnet: str = DEFAULT_SUBNET,
        simulated_nodes: int = 0,
    ) -> None:
        self.config = ClusterConfig(
            data_dir=Path(data_dir), nodes=nodes, node_cpus=str(node_cpus), node_memory=node_memory, zones=zones, port=port,
            host=host, version=version, backoff=BackoffPolicy(backoff_base, backoff_cap), node_labels=dict(node_labels or {}),
            lease_period=lease_period, shutdown_grace=shutdown_grace, server_options=dict(server_options or {}),
            pod_subnet=pod_subnet, simulated_nodes=simulated_nodes,
        )
        self._cluster: Cluster | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---- properties ---------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def url(self) -> str:
        assert self._cluster is not None, "cluster not started"
        return self._cluster.url

    @property
    def port(self) -> int:
        assert self._cluster is not None, "cluster not started"
        return self._cluster.port

    @property
    def api_server(self) -> APIServer:
        """The running APIServer object (for in-process inspection in tests)."""
        assert self._cluster is not None and self._cluster.server is not None, "cluster not started"
        return self._cluster.server

    @property
    def node_names(self) -> list[str]:
        return [spec.name for spec in self.config.node_specs()]

    @property
    def simulated_node_names(self) -> list[str]:
        return [spec.name for spec in self.config.simulated_node_specs()]

    @property
    def thread(self) -> threading.Thread | None:
        """The thread running the cluster's event loop (None when stopped)."""
        return self._thread

    @property
    def running(self) -> bool:
        return self._cluster is not None

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> "LocalCluster":
        if self._cluster is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="localkube", daemon=True)
        self._thread.start()
        ready.wait()
        cluster = Cluster(self.config)
        try:
            self.call(cluster.start(), timeout)
        except BaseException:
            self.call(cluster.stop(), timeout)
            self._shutdown_loop()
            raise
        self._cluster = cluster
        self.config.port = cluster.port  # restarts keep the address clients were given
        return self

    def stop(self, leave_pods_running: bool = False, timeout: float = 60.0) -> None:
        """Stop the cluster. `leave_pods_running=True` mimics a crash: pod processes keep running and
        are adopted by the next start on the same data directory."""
        if self._cluster is None:
            return
        try:
            self.call(self._cluster.stop(leave_pods_running), timeout)
        finally:
            self._cluster = None
            self._shutdown_loop()

    def restart(self, leave_pods_running: bool = False) -> "LocalCluster":
        self.stop(leave_pods_running)
        return self.start()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.shutdown_asyncgens()

        asyncio.run_coroutine_threadsafe(drain(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
        """Run a coroutine in the cluster's loop and wait for its result."""
        assert self._loop is not None, "cluster not started"
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
