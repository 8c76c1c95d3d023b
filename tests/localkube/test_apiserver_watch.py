"""Selectors, list/watch, bookmarks, 410, selector transitions, kubectl get -w / wait (§8 checks 9–12)."""

from __future__ import annotations

import http.client
import json
import queue
import subprocess
import threading
import time
from typing import Any, Iterator
from urllib.parse import urlencode

import kubernetes
import pytest
from kubernetes.client import ApiException

from .conftest import Cluster, kubectl_binaries


@pytest.fixture(scope="module")
def core(cluster: Cluster) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(cluster.api_client())


def pod(name: str, node: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "img:1"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def stream(cluster: Cluster, path: str, params: dict[str, str], timeout: float = 10) -> Iterator[dict[str, Any]]:
    """Raw watch: yields decoded lines; asserts the transport contract (200, JSON content type)."""
    conn = http.client.HTTPConnection("127.0.0.1", cluster.server.port, timeout=timeout)
    conn.request("GET", f"{path}?{urlencode(params)}")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/json"
    try:
        while True:
            line = resp.readline()
            if not line:
                return
            yield json.loads(line)
    finally:
        conn.close()


def set_phase(core: Any, name: str, phase: str) -> Any:
    return core.patch_namespaced_pod_status(name, "default", {"status": {"phase": phase}})


# --- check 9: selectors ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def labelled(core: Any) -> Iterator[None]:
    for name, labels in (("sel-x", {"a": "x"}), ("sel-y", {"a": "y", "b": "1"}), ("sel-z", {"a": "z"}),
                         ("sel-none", {})):
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})
    yield
    for name in ("sel-x", "sel-y", "sel-z", "sel-none"):
        core.delete_namespaced_config_map(name, "default")


@pytest.mark.parametrize("selector,expected", [
    ("a in (x,y),!b", ["sel-x"]),
    ("a", ["sel-x", "sel-y", "sel-z"]),
    ("a notin (x)", ["sel-none", "sel-y", "sel-z"]),
    ("a!=x,b", ["sel-y"]),
    ("a==z", ["sel-z"]),
    ("!a", ["sel-none"]),
])
def test_label_selector_grammar(core: Any, labelled: None, selector: str, expected: list[str]) -> None:
    items = core.list_namespaced_config_map("default", label_selector=selector).items
    assert sorted(i.metadata.name for i in items if i.metadata.name.startswith("sel-")) == expected


@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_kubectl_selectors(cluster: Cluster, core: Any, labelled: None, kubectl: str) -> None:
    out = cluster.kubectl(kubectl, "get", "cm", "-l", "a in (x,y),!b", "-o", "name").stdout.split()
    assert out == ["configmap/sel-x"]
    bad = cluster.kubectl(kubectl, "get", "cm", "-l", "a in (x", check=False)
    assert bad.returncode != 0
    core.create_namespaced_pod("default", pod("fs-1", "n1"))
    core.create_namespaced_pod("default", pod("fs-2", "n1"))
    core.create_namespaced_pod("default", pod("fs-3", "n2"))
    set_phase(core, "fs-2", "Failed")
    try:
        names = cluster.kubectl(kubectl, "get", "pods", "--field-selector", "spec.nodeName=n1,status.phase!=Failed",
                                "-o", "name").stdout.split()
        assert names == ["pod/fs-1"]
        bad = cluster.kubectl(kubectl, "get", "pods", "--field-selector", "spec.bogus=1", check=False)
        assert bad.returncode == 1 and "field label not supported: spec.bogus" in bad.stderr
    finally:
        for n in ("fs-1", "fs-2", "fs-3"):
            core.delete_namespaced_pod(n, "default", grace_period_seconds=0)


def test_malformed_selectors_are_400(core: Any) -> None:
    for kwargs in ({"label_selector": "a in (x"}, {"label_selector": "a=b=c"}, {"field_selector": "nonsense"},
                   {"field_selector": "status.bogus=1"}):
        with pytest.raises(ApiException) as e:
            core.list_namespaced_pod("default", **kwargs)
        assert e.value.status == 400 and json.loads(e.value.body)["reason"] == "BadRequest"


def test_pagination_with_limit_and_continue(core: Any, labelled: None) -> None:
    first = core.list_namespaced_config_map("default", limit=2)
    assert len(first.items) == 2 and first.metadata._continue
    second = core.list_namespaced_config_map("default", limit=100, _continue=first.metadata._continue)
    names = [i.metadata.name for i in first.items + second.items]
    assert names == sorted(names) and len(set(names)) == len(names) and "sel-z" in names
    assert second.metadata.resource_version == first.metadata.resource_version


# --- check 10: 410 Expired ---------------------------------------------------------------------------

def test_watch_from_compacted_resource_version(cluster: Cluster, core: Any) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "churn"}, "data": {"i": "0"}})
    old = core.read_namespaced_config_map("churn", "default").metadata.resource_version
    for i in range(210):  # history_size=200 in the fixture
        core.patch_namespaced_config_map("churn", "default", {"data": {"i": str(i + 1)}})
    events = list(stream(cluster, "/api/v1/namespaces/default/configmaps",
                         {"watch": "true", "resourceVersion": old, "allowWatchBookmarks": "true"}))
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
    assert status["message"].startswith(f"too old resource version: {old} (")
    with pytest.raises(ApiException) as e:
        for _ in kubernetes.watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=old):
            pass
    assert e.value.status == 410
    core.delete_namespaced_config_map("churn", "default")


def test_watch_replays_from_resource_version(cluster: Cluster, core: Any) -> None:
    a = core.create_namespaced_config_map("default", {"metadata": {"name": "replay"}, "data": {"i": "0"}})
    b = core.patch_namespaced_config_map("replay", "default", {"data": {"i": "1"}})
    core.delete_namespaced_config_map("replay", "default")
    events = list(stream(cluster, "/api/v1/namespaces/default/configmaps",
                         {"watch": "true", "resourceVersion": a.metadata.resource_version, "timeoutSeconds": "1",
                          "fieldSelector": "metadata.name=replay"}))
    assert [(e["type"], e["object"]["data"]["i"]) for e in events] == [("MODIFIED", "1"), ("DELETED", "1")]
    assert events[0]["object"]["metadata"]["resourceVersion"] == b.metadata.resource_version
    assert events[0]["object"]["kind"] == "ConfigMap" and events[0]["object"]["apiVersion"] == "v1"
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(b.metadata.resource_version)


# --- check 11: selector transitions, bookmarks, timeoutSeconds, initial events -----------------------

def test_node_name_watch_sees_binding_and_deletion(cluster: Cluster, core: Any) -> None:
    core.create_namespaced_pod("default", pod("bind-me"))
    rv = core.list_namespaced_pod("default").metadata.resource_version
    seen: list[tuple[str, str, bool]] = []

    def watch() -> None:
        for ev in stream(cluster, "/api/v1/pods", {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "3",
                                                   "fieldSelector": "spec.nodeName=n1"}):
            seen.append((ev["type"], ev["object"]["metadata"]["name"],
                         bool(ev["object"]["metadata"].get("deletionTimestamp"))))
    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.3)
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bind-me"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}
    core.create_namespaced_binding("default", binding, _preload_content=False)
    bound = core.read_namespaced_pod("bind-me", "default")
    assert bound.spec.node_name == "n1"
    assert any(c.type == "PodScheduled" and c.status == "True" for c in bound.status.conditions)
    core.delete_namespaced_pod("bind-me", "default")  # graceful: the kubelet would finish it
    graceful = core.read_namespaced_pod("bind-me", "default")
    assert graceful.metadata.deletion_timestamp and graceful.metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod("bind-me", "default", grace_period_seconds=0,
                               body=kubernetes.client.V1DeleteOptions(
                                   grace_period_seconds=0,
                                   preconditions=kubernetes.client.V1Preconditions(uid=graceful.metadata.uid)))
    t.join(10)
    assert seen == [("ADDED", "bind-me", False), ("MODIFIED", "bind-me", True), ("DELETED", "bind-me", True)]


def test_status_selector_transitions(cluster: Cluster, core: Any) -> None:
    core.create_namespaced_pod("default", pod("phase-me", "n9"))
    rv = core.read_namespaced_pod("phase-me", "default").metadata.resource_version
    set_phase(core, "phase-me", "Running")
    set_phase(core, "phase-me", "Succeeded")
    events = list(stream(cluster, "/api/v1/namespaces/default/pods", {
        "watch": "true", "resourceVersion": rv, "timeoutSeconds": "1", "fieldSelector": "status.phase=Running"}))
    assert [(e["type"], e["object"]["status"]["phase"]) for e in events] == [("ADDED", "Running"),
                                                                            ("DELETED", "Running")]
    core.delete_namespaced_pod("phase-me", "default")  # terminal: deleted at once
    with pytest.raises(ApiException):
        core.read_namespaced_pod("phase-me", "default")


def test_bookmarks_and_timeout(cluster: Cluster, core: Any) -> None:
    started = time.monotonic()
    events = list(stream(cluster, "/api/v1/namespaces/default/pods", {
        "watch": "true", "resourceVersion": core.list_namespaced_pod("default").metadata.resource_version,
        "allowWatchBookmarks": "true", "timeoutSeconds": "2"}))
    elapsed = time.monotonic() - started
    assert 1.9 <= elapsed < 8  # closed by the server, cleanly, at the timeout
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks, "bookmark_interval=1s in the fixture"
    assert bookmarks[0]["object"]["kind"] == "Pod" and bookmarks[0]["object"]["apiVersion"] == "v1"
    assert int(bookmarks[0]["object"]["metadata"]["resourceVersion"]) > 0


def test_send_initial_events_ends_with_annotated_bookmark(cluster: Cluster, core: Any) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "initial-1"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "initial-2"}})
    events = []
    for ev in stream(cluster, "/api/v1/namespaces/default/configmaps", {
            "watch": "true", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
            "allowWatchBookmarks": "true", "timeoutSeconds": "5"}):
        events.append(ev)
        if ev["type"] == "BOOKMARK":
            break
    names = [e["object"]["metadata"]["name"] for e in events[:-1]]
    assert {"initial-1", "initial-2"} <= set(names) and all(e["type"] == "ADDED" for e in events[:-1])
    assert events[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    for n in ("initial-1", "initial-2"):
        core.delete_namespaced_config_map(n, "default")


def test_patch_response_rv_appears_on_watch(cluster: Cluster, core: Any) -> None:
    """kopf waits for its own PATCH's resourceVersion on the watch (consistency)."""
    core.create_namespaced_config_map("default", {"metadata": {"name": "consistent"}})
    rv = core.read_namespaced_config_map("consistent", "default").metadata.resource_version
    patched = core.patch_namespaced_config_map("consistent", "default", {"metadata": {"annotations": {"a": "b"}}})
    events = list(stream(cluster, "/api/v1/namespaces/default/configmaps", {
        "watch": "true", "resourceVersion": rv, "timeoutSeconds": "1"}))
    assert patched.metadata.resource_version in [e["object"]["metadata"]["resourceVersion"] for e in events]
    core.delete_namespaced_config_map("consistent", "default")


def test_python_client_watch_deserialises(core: Any) -> None:
    core.create_namespaced_pod("default", pod("typed-watch", "n1", {"w": "1"}))
    w = kubernetes.watch.Watch()
    got = []
    for ev in w.stream(core.list_namespaced_pod, "default", label_selector="w=1", timeout_seconds=1):
        got.append((ev["type"], type(ev["object"]).__name__))
    assert got == [("ADDED", "V1Pod")]
    core.delete_namespaced_pod("typed-watch", "default", grace_period_seconds=0)


# --- check 12: kubectl get -w and wait -------------------------------------------------------------

@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_kubectl_get_watch_prints_table_rows(cluster: Cluster, core: Any, kubectl: str) -> None:
    name = f"getw-{abs(hash(kubectl)) % 1000}"
    core.create_namespaced_pod("default", pod(name, "n1"))
    proc = subprocess.Popen([kubectl, "get", "pods", name, "-w", "--request-timeout=60s"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=cluster.env())
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []], daemon=True).start()
    try:
        assert lines.get(timeout=30).split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert lines.get(timeout=30).split()[:3] == [name, "0/1", "Pending"]
        # kubectl watches a single object from resourceVersion=0 and skips the initial ADDED, so a change
        # racing with the start of its watch is not shown (same on a real server): change until one shows
        for attempt in range(10):
            set_phase(core, name, "Running" if attempt % 2 == 0 else "Pending")
            try:
                row = lines.get(timeout=2).split()
                break
            except queue.Empty:
                continue
        else:
            raise AssertionError("kubectl get -w printed no change")
        assert row[:2] == [name, "0/1"] and row[2] in ("Running", "Pending")
    finally:
        proc.kill()
        proc.wait()
    wide = cluster.kubectl(kubectl, "get", "pod", name, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                               "READINESS", "GATES"]
    assert wide[1].split()[5:7] == ["<none>", "n1"]
    core.delete_namespaced_pod(name, "default", grace_period_seconds=0)


@pytest.mark.parametrize("kubectl", kubectl_binaries())
def test_kubectl_wait_jsonpath_condition_delete(cluster: Cluster, core: Any, kubectl: str) -> None:
    name = f"waitme-{abs(hash(kubectl)) % 1000}"
    core.create_namespaced_pod("default", pod(name, "n1"))

    def later(fn: Any) -> threading.Timer:
        t = threading.Timer(0.7, fn)
        t.start()
        return t
    later(lambda: set_phase(core, name, "Running"))
    cluster.kubectl(kubectl, "wait", f"pod/{name}", "--for=jsonpath={.status.phase}=Running", "--timeout=15s")
    later(lambda: core.patch_namespaced_pod_status(name, "default", {"status": {"conditions": [
        {"type": "Ready", "status": "True"}]}}))
    cluster.kubectl(kubectl, "wait", f"pod/{name}", "--for=condition=Ready", "--timeout=15s")
    # already true: must return at once (kubectl 1.37 uses WatchList with sendInitialEvents)
    cluster.kubectl(kubectl, "wait", f"pod/{name}", "--for=condition=Ready", "--timeout=5s")
    core.delete_namespaced_pod(name, "default")  # bound: graceful, waits for the "kubelet"
    uid = core.read_namespaced_pod(name, "default").metadata.uid
    later(lambda: core.delete_namespaced_pod(name, "default", body=kubernetes.client.V1DeleteOptions(
        grace_period_seconds=0, preconditions=kubernetes.client.V1Preconditions(uid=uid))))
    cluster.kubectl(kubectl, "wait", f"pod/{name}", "--for=delete", "--timeout=15s")
