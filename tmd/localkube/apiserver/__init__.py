"""A Kubernetes-API-compatible HTTP server for single-machine runs and tests.

kopf, the `kubernetes` python client and kubectl talk to it unchanged (see specs/localkube.md).
State lives in SQLite under `data_dir`, so a restart keeps objects and resourceVersions.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import platform
import re
from typing import Any

from aiohttp import web

from .controllers import Controllers
from .registry import Registry
from .logs import log_path
from .routes import Handlers
from .store import Store

__all__ = ["APIServer", "log_path"]

log = logging.getLogger("tmd.localkube.apiserver")

SEED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def version_info(version: str) -> dict[str, str]:
    m = re.match(r"^v(\d+)\.(\d+)", version)
    major, minor = (m.group(1), m.group(2)) if m else ("1", "33")
    return {"major": major, "minor": minor, "emulationMajor": major, "emulationMinor": minor,
            "minCompatibilityMajor": major, "minCompatibilityMinor": str(max(int(minor) - 1, 0)),
            "gitVersion": version, "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0",
            "compiler": "gc", "platform": f"linux/{'arm64' if platform.machine() in ('aarch64', 'arm64') else 'amd64'}"}


class APIServer:
    """The embedded control plane's API server; runs inside the caller's asyncio loop.

    `bookmark_interval` (seconds) bounds the silence on watches with `allowWatchBookmarks`;
    `history_size` is how many events are kept for watch replay (older RVs get 410 Expired);
    `synchronous` is SQLite's PRAGMA (FULL: acknowledged writes survive power loss; NORMAL: process
    crashes only, ~3x faster commits); `event_ttl` is how long core/v1 Events live (seconds).
    """

    def __init__(self, data_dir: pathlib.Path, host: str = "127.0.0.1", port: int = 0, version: str = "v1.33.2",
                 *, bookmark_interval: float = 30.0, history_size: int = 10000,
                 synchronous: str = "FULL", event_ttl: float = 3600.0) -> None:
        self.data_dir = pathlib.Path(data_dir)
        self.host = host
        self.port = port
        self.version = version
        self.bookmark_interval = bookmark_interval
        self.history_size = history_size
        self.synchronous = synchronous
        self.event_ttl = event_ttl
        self._runner: web.AppRunner | None = None
        self._store: Store | None = None
        self._controllers: Controllers | None = None
        self._handlers: Handlers | None = None
        self.registry: Registry | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._store = Store(self.data_dir, self.history_size, self.synchronous)
        self.registry = Registry(self._store)
        self._seed()
        self._controllers = Controllers(self.registry, event_ttl=self.event_ttl)
        self._controllers.start()
        self._handlers = Handlers(self.registry, version_info(self.version), self.data_dir, self.bookmark_interval)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handlers.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:  # e.g. port in use: release the database and tasks before reporting it
            await self.stop()
            raise
        server = site._server  # aiohttp exposes the bound sockets only here
        if self.port == 0 and server is not None and getattr(server, "sockets", None):
            self.port = server.sockets[0].getsockname()[1]
        log.info("apiserver listening url=%s data_dir=%s revision=%d", self.url, self.data_dir,
                 self._store.revision)

    def _seed(self) -> None:
        assert self.registry is not None
        ns_rt = self.registry.resolve("", "v1", "namespaces")
        sa_rt = self.registry.resolve("", "v1", "serviceaccounts")
        for name in SEED_NAMESPACES:
            if self._store.get(ns_rt.key, "", name) is None:  # type: ignore[union-attr]
                self.registry.create(ns_rt, "", {"metadata": {"name": name}})
            if self._store.get(sa_rt.key, name, "default") is None:  # type: ignore[union-attr]
                self.registry.create(sa_rt, name, {"metadata": {"name": "default"}})

    async def stop(self) -> None:
        log.info("apiserver stopping")
        if self._controllers:
            await self._controllers.stop()
            self._controllers = None
        if self._store:
            for ws in self._store.watchers.values():
                for w in list(ws):
                    w.close()
        if self._handlers:
            streams = list(self._handlers.streams)
            if streams:
                await asyncio.wait(streams, timeout=2.0)
            self._handlers = None
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
        if self._store:
            await self._store.drain()
            self._store.close()
            log.info("apiserver stopped revision=%d", self._store.revision)
            self._store = None

    def request_counts(self) -> dict[tuple[str, str, str], int]:
        """Resource requests so far by (verb, resource, client); also served at /metrics."""
        return dict(self._handlers.requests) if self._handlers else {}

    # convenience for in-process callers (tests, the cluster runner)
    def objects(self, group: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        assert self._store is not None
        return self._store.list(f"{group}/{plural}", namespace)
