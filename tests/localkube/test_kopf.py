"""kopf end to end against localkube (localkube.md §8 checks 16–17): a real `kopf run --standalone -A`
with an operator that adopts child pods, writes status, keeps a finalizer and runs a timer — with no
warnings and no retries in its log — and a control-plane restart on the same data directory that
kopf and the running pods both survive."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from kubernetes import client

from tmd.localkube.kubelet.process import start_ticks
from tmd.localkube.testing import KopfProcess, pod_pids, run_kubectl, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.localkube(nodes=2)]

HERE = Path(__file__).parent / "kopf_operator"
GROUP, VERSION, PLURAL = "localkube.tmd.dev", "v1", "echoes"
BAD_LOG = re.compile(r"WARNING|ERROR|CRITICAL|Traceback|retry|retries|Retrying|inconsistencies|consistency timeout", re.IGNORECASE)


# kopf's retries of requests cut by the server going down and coming back
RECONNECT = re.compile(r"Request attempt #\d+/\d+ failed; will retry: .*(ConnectionRefusedError|ClientOSError|ServerDisconnectedError|ClientConnectorError)")


def echo(name: str, message: str, node: str = "node-1") -> str:
    return json.dumps({"apiVersion": f"{GROUP}/{VERSION}", "kind": "Echo", "metadata": {"name": name}, "spec": {"message": message, "node": node}})


@pytest.fixture(scope="module")
def crd(localkube):
    run_kubectl(localkube, "apply", "-f", str(HERE / "crd.yaml"))
    run_kubectl(localkube, "wait", "--for=condition=established", "crd/echoes.localkube.tmd.dev", "--timeout=10s")


@pytest.fixture(scope="module")
def apis(k8s_client):
    return client.CoreV1Api(k8s_client), client.CustomObjectsApi(k8s_client)


def get_echo(custom: client.CustomObjectsApi, name: str) -> dict | None:
    try:
        return custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def test_kopf_operator_lifecycle_without_warnings(localkube, crd, apis, kubectl, tmp_path):
    core, custom = apis
    name = "echo-" + kubectl.id.replace(".", "-")
    kopf = KopfProcess(localkube, HERE / "operator.py", tmp_path / "kopf.log")
    with kopf:
        kopf.wait_log("Starting the watch-stream", timeout=30)
        kubectl("apply", "-f", "-", input=echo(name, "hello"))
        kopf.wait_log("Handler 'create_fn' succeeded")
        obj = wait_for(lambda: (o := get_echo(custom, name)) and "create_fn" in o.get("status", {}) and o, message="handler result in status")
        assert obj["status"]["create_fn"] == {"child": f"{name}-child"}
        assert "kopf.zalando.org/KopfFinalizerMarker" in obj["metadata"]["finalizers"]

        child = wait_for(lambda: (p := core.read_namespaced_pod(f"{name}-child", "default")).status.phase == "Running" and p, message="child running")
        owner = child.metadata.owner_references[0]
        assert (owner.kind, owner.name, owner.uid, owner.controller, owner.block_owner_deletion) == ("Echo", name, obj["metadata"]["uid"], True, True)
        assert f"child of {name} on {child.status.pod_ip}" in wait_for(lambda: kubectl("logs", f"{name}-child").stdout, message="child log")

        kubectl("patch", "echo", name, "--type=merge", "-p", json.dumps({"spec": {"message": "bye"}}))
        kopf.wait_log("Handler 'update_fn/spec.message' succeeded")
        wait_for(lambda: get_echo(custom, name)["status"].get("message") == "bye", message="status.message")
        wait_for(lambda: int(get_echo(custom, name)["status"].get("ticks") or 0) >= 3, message="timer ticks")
        table = kubectl("get", "ec", name).stdout
        assert "bye" in table and "MESSAGE" in table and "TICKS" in table, table

        kubectl("delete", "echo", name, "--timeout=30s")
        assert get_echo(custom, name) is None
        assert "Handler 'delete_fn' succeeded" in kopf.log
        wait_for(lambda: not core.list_namespaced_pod("default", label_selector=f"echo={name}").items, timeout=30, message="child garbage-collected")
    log = kopf.log
    for handler in ("create_fn", "update_fn/spec.message", "delete_fn"):
        assert log.count(f"Handler '{handler}' succeeded") == 1, log
    bad = [line for line in log.splitlines() if BAD_LOG.search(line)]
    assert bad == [], "\n".join(bad)


def test_kopf_with_initial_streaming_and_chunked_lists(localkube, crd, apis, tmp_path, monkeypatch):
    """kopf 1.45's opt-in modes: WatchList (`sendInitialEvents`) instead of LIST, and `limit`/`continue`
    paging with chunk_size=1; an object created before kopf starts must arrive through them."""
    core, custom = apis
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, json.loads(echo("echo-early", "early")))
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, json.loads(echo("echo-early-2", "early")))
    monkeypatch.setenv("KOPF_INITIAL_STREAMING", "1")
    monkeypatch.setenv("KOPF_CHUNK_SIZE", "1")
    kopf = KopfProcess(localkube, HERE / "operator.py", tmp_path / "kopf.log")
    with kopf:
        kopf.wait_log("Handler 'create_fn' succeeded", count=2)
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, json.loads(echo("echo-late", "late")))
        kopf.wait_log("[default/echo-late] Handler 'create_fn' succeeded")
        for name in ("echo-early", "echo-early-2", "echo-late"):
            custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
        kopf.wait_log("Handler 'delete_fn' succeeded", count=3)
        mine = ("echo-early", "echo-early-2", "echo-late")
        wait_for(lambda: all(get_echo(custom, n) is None for n in mine), message="echoes gone")
        wait_for(lambda: not core.list_namespaced_pod("default", label_selector="echo in (echo-early,echo-early-2,echo-late)").items,
                 timeout=30, message="children gone")
    bad = [line for line in kopf.log.splitlines() if BAD_LOG.search(line)]
    assert bad == [], "\n".join(bad)


def test_control_plane_restart_is_survived_by_kopf_and_pods(localkube, crd, apis, tmp_path):
    core, custom = apis
    name = "echo-restart"
    kopf = KopfProcess(localkube, HERE / "operator.py", tmp_path / "kopf.log")
    with kopf:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, json.loads(echo(name, "before")))
        kopf.wait_log("Handler 'create_fn' succeeded")
        child = wait_for(lambda: (p := core.read_namespaced_pod(f"{name}-child", "default")).status.phase == "Running" and p, message="child running")
        rv_before = int(get_echo(custom, name)["metadata"]["resourceVersion"])
        pids = pod_pids(f"OWNER={name}")
        assert pids, "child process not found"

        localkube.restart(leave_pods_running=True)  # as after a crash: the pod processes keep running

        for pid in pids:
            assert start_ticks(pid) is not None, "pod process did not survive"
        after = core.read_namespaced_pod(f"{name}-child", "default")
        assert after.metadata.uid == child.metadata.uid and after.status.pod_ip == child.status.pod_ip
        wait_for(lambda: int(get_echo(custom, name)["metadata"]["resourceVersion"]) > rv_before, message="timer writes resume")
        custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name, {"spec": {"message": "after"}})
        kopf.wait_log("Handler 'update_fn/spec.message' succeeded")
        wait_for(lambda: get_echo(custom, name)["status"].get("message") == "after", message="status after restart")
        status = core.read_namespaced_pod(f"{name}-child", "default").status.container_statuses[0]
        assert status.restart_count == 0 and status.state.running is not None  # adopted, not restarted

        custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
        kopf.wait_log("Handler 'delete_fn' succeeded")
        wait_for(lambda: get_echo(custom, name) is None, message="echo gone")
        wait_for(lambda: not core.list_namespaced_pod("default", label_selector=f"echo={name}").items, timeout=30, message="child gone")
        for pid in pids:
            wait_for(lambda: start_ticks(pid) is None, timeout=10, message="child process stopped")
    log = kopf.log
    assert "Traceback" not in log
    # the only complaints allowed are kopf's reconnect attempts while the server was down
    bad = [line for line in log.splitlines() if BAD_LOG.search(line) and not RECONNECT.search(line)]
    assert bad == [], "\n".join(bad)


