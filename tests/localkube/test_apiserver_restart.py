"""Persistence: a restart on the same data dir keeps objects, revisions and watch history."""

from __future__ import annotations

import http.client
import json
import pathlib
from typing import Any, Iterator

import kubernetes
import pytest
import yaml

from .conftest import CRD_MANIFEST, ServerThread, write_kubeconfig


def client(server: ServerThread | str, tmp: pathlib.Path) -> Any:
    write_kubeconfig(tmp / "kubeconfig", server if isinstance(server, str) else server.url)
    return kubernetes.config.new_client_from_config(config_file=str(tmp / "kubeconfig"))


def watch_lines(server: ServerThread, path: str) -> list[dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    assert resp.status == 200
    lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    conn.close()
    return lines


@pytest.fixture
def server(tmp_path: pathlib.Path) -> Iterator[ServerThread]:
    s = ServerThread(tmp_path / "data", history_size=20, bookmark_interval=1.0)
    s.start()
    yield s
    if s.thread is not None and s.thread.is_alive():
        s.stop()


def test_restart_keeps_objects_revisions_and_history(server: ServerThread, tmp_path: pathlib.Path) -> None:
    api = client(server, tmp_path)
    ext = kubernetes.client.ApiextensionsV1Api(api)
    core = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    ext.create_custom_resource_definition(yaml.safe_load(CRD_MANIFEST))
    cr = custom.create_namespaced_custom_object("kopf.dev", "v1", "default", "kopfexamples", {
        "apiVersion": "kopf.dev/v1", "kind": "KopfExample", "metadata": {"name": "durable"}, "spec": {"field": "a"}})
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "durable"}, "data": {"a": "1"}})
    early_rv = cm.metadata.resource_version
    for i in range(30):  # push `early_rv` out of the 20-event history
        core.patch_namespaced_config_map("durable", "default", {"data": {"a": str(i)}})
    recent = core.patch_namespaced_config_map("durable", "default", {"data": {"a": "recent"}})
    last = core.patch_namespaced_config_map("durable", "default", {"data": {"a": "last"}})
    port = server.port

    server.stop()
    server.start()  # same data dir, same port
    assert server.port == port
    api = client(server, tmp_path)
    core = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)

    back = custom.get_namespaced_custom_object("kopf.dev", "v1", "default", "kopfexamples", "durable")
    assert back["metadata"]["uid"] == cr["metadata"]["uid"] and back["spec"] == {"field": "a", "replicas": 1}
    cm2 = core.read_namespaced_config_map("durable", "default")
    assert cm2.data == {"a": "last"} and cm2.metadata.resource_version == last.metadata.resource_version
    assert [n.metadata.name for n in core.list_namespace().items] == [
        "default", "kube-node-lease", "kube-public", "kube-system"]
    newer = core.patch_namespaced_config_map("durable", "default", {"data": {"a": "after"}})
    assert int(newer.metadata.resource_version) > int(last.metadata.resource_version)

    replay = watch_lines(server, "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1"
                                 f"&resourceVersion={recent.metadata.resource_version}")
    assert [e["object"]["data"]["a"] for e in replay if e["type"] == "MODIFIED"] == ["last", "after"]
    expired = watch_lines(server, f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={early_rv}")
    assert len(expired) == 1 and expired[0]["type"] == "ERROR" and expired[0]["object"]["code"] == 410


def test_data_is_committed_before_the_response(server: ServerThread, tmp_path: pathlib.Path) -> None:
    """What a client saw acknowledged is in the database file even if the process dies right after."""
    import sqlite3
    core = kubernetes.client.CoreV1Api(client(server, tmp_path))
    core.create_namespaced_config_map("default", {"metadata": {"name": "acked"}, "data": {"k": "v"}})
    db = sqlite3.connect(str(tmp_path / "data" / "localkube.sqlite3"))
    rows = db.execute("SELECT body FROM objects WHERE res='/configmaps' AND name='acked'").fetchall()
    db.close()
    assert json.loads(rows[0][0])["data"] == {"k": "v"}


SERVE = """
import asyncio, pathlib, sys
from tmd.localkube.apiserver import APIServer
async def main():
    server = APIServer(pathlib.Path(sys.argv[1]))
    await server.start()
    print(server.port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def test_sigkill_loses_nothing_acknowledged(tmp_path: pathlib.Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(data)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        core = kubernetes.client.CoreV1Api(client(f"http://127.0.0.1:{port}", tmp_path))
        acked: list[str] = []

        def create(i: int) -> None:
            core.create_namespaced_config_map("default", {"metadata": {"name": f"acked-{i}"}})
            acked.append(f"acked-{i}")
        with ThreadPoolExecutor(8) as pool:  # concurrent writers share group commits
            list(pool.map(create, range(40)))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    server = ServerThread(data)
    server.start()
    try:
        core = kubernetes.client.CoreV1Api(client(server, tmp_path))
        names = {c.metadata.name for c in core.list_namespaced_config_map("default").items}
        assert set(acked) <= names and len(acked) == 40
    finally:
        server.stop()


def test_events_expire_after_ttl(tmp_path: pathlib.Path) -> None:
    import time
    server = ServerThread(tmp_path / "data", event_ttl=1.0)
    server.start()
    try:
        core = kubernetes.client.CoreV1Api(client(server, tmp_path))
        core.create_namespaced_event("default", {"metadata": {"name": "short-lived"}, "reason": "R",
                                                 "involvedObject": {"kind": "Pod", "name": "p"}})
        core.create_namespaced_config_map("default", {"metadata": {"name": "long-lived"}})
        deadline = time.monotonic() + 15
        while core.list_namespaced_event("default").items and time.monotonic() < deadline:
            time.sleep(0.2)
        assert core.list_namespaced_event("default").items == []
        assert core.read_namespaced_config_map("long-lived", "default").metadata.name == "long-lived"
    finally:
        server.stop()


def test_start_on_a_busy_port_fails_cleanly(server: ServerThread, tmp_path: pathlib.Path) -> None:
    import asyncio
    from tmd.localkube.apiserver import APIServer
    async def attempt() -> None:
        other = APIServer(tmp_path / "other", port=server.port)
        with pytest.raises(OSError):
            await other.start()
        await other.stop()  # idempotent after a failed start
    asyncio.run(attempt())
