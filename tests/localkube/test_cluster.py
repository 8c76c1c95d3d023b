"""LocalCluster and `tmd localkube`: kubeconfig, restarts on the same data directory (clean stop:
pods restarted; crash: pods adopted), the CLI under kubectl, SIGTERM → exit 0, no process left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from tmd.localkube.cluster import LocalCluster
from tmd.localkube.kubelet.process import start_ticks
from tmd.localkube.testing import kubectl_binaries, pod_pids, run_kubectl, wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    return start_ticks(pid) is not None  # not a zombie


def sleeper(name: str, node: str = "node-1") -> dict:
    script = "import time\nwhile True: time.sleep(1)"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2, "containers": [
                {"name": "main", "image": "python:3.11", "command": [sys.executable, "-c", script], "env": [{"name": "MARK", "value": name}]}]}}


def core_api(kubeconfig: Path) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def running(core: client.CoreV1Api, name: str) -> client.V1Pod | None:
    pod = core.read_namespaced_pod(name, "default")
    return pod if pod.status.phase == "Running" and pod.status.container_statuses and pod.status.container_statuses[0].state.running else None


def test_local_cluster_restart_semantics(tmp_path: Path):
    data = tmp_path / "lk"
    cluster = LocalCluster(data, nodes=2, node_cpus=4, backoff_base=1.0, shutdown_grace=3.0)
    with cluster:
        kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
        assert kubeconfig["clusters"][0]["cluster"]["server"] == cluster.url == f"http://127.0.0.1:{cluster.port}"
        core = core_api(cluster.kubeconfig)
        assert sorted(n.metadata.name for n in core.list_node().items) == ["node-1", "node-2"]
        core.create_namespaced_pod("default", sleeper("survivor"))
        first = wait_for(lambda: running(core, "survivor"), message="running")
        [pid] = wait_for(lambda: pod_pids("MARK=survivor"), message="process")

        # crash-like stop: the process keeps running and is adopted by the next start
        port = cluster.port
        cluster.restart(leave_pods_running=True)
        assert cluster.port == port and alive(pid)
        adopted = wait_for(lambda: running(core, "survivor"), message="adopted")
        assert adopted.status.pod_ip == first.status.pod_ip
        assert adopted.status.container_statuses[0].restart_count == 0
        assert adopted.status.container_statuses[0].container_id == first.status.container_statuses[0].container_id
        assert pod_pids("MARK=survivor") == [pid]

        # clean stop: the process is stopped, and started again (restartCount + 1) by the next start
        cluster.stop()
        assert not alive(pid) and pod_pids("MARK=survivor") == []
        cluster.start()
        restarted = wait_for(lambda: (p := running(core, "survivor")) and p.status.container_statuses[0].restart_count == 1 and p,
                             message="restarted after a clean stop")
        assert restarted.status.pod_ip == first.status.pod_ip
        assert restarted.status.container_statuses[0].last_state.terminated is not None
        [new_pid] = pod_pids("MARK=survivor")
        assert new_pid != pid
    assert pod_pids("MARK=survivor") == []


def start_cli(data: Path, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "tmd", "localkube", "--nodes", "2", "--node-cpus", "4", "--data-dir", str(data), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("kubeconfig: "):
            return proc, Path(line.split(": ", 1)[1].strip())
    proc.kill()
    raise AssertionError("tmd localkube did not start:\n" + "".join(lines) + (proc.stdout.read() or ""))


def stop_cli(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_with_kubectl_sigterm_and_crash_recovery(tmp_path: Path):
    data = tmp_path / "cli"
    proc, kubeconfig = start_cli(data)
    try:
        assert kubeconfig == (data / "kubeconfig").resolve()
        cluster = LocalCluster(data)  # only for run_kubectl's paths; not started
        for binary in kubectl_binaries().values():
            out = run_kubectl(cluster, "get", "nodes", binary=binary).stdout
            assert out.count(" Ready ") == 2 and "v1.33.2" in out, out
        run_kubectl(cluster, "apply", "-f", "-", input=json.dumps(sleeper("cli-pod")))
        run_kubectl(cluster, "wait", "--for=jsonpath={.status.phase}=Running", "pod/cli-pod", "--timeout=60s")
        [pid] = wait_for(lambda: pod_pids("MARK=cli-pod"), message="pod process")

        proc.kill()  # crash: pod processes live on in their own sessions
        proc.wait(10)
        assert alive(pid)
        proc, _ = start_cli(data)  # same data dir → same port (kubeconfig unchanged) → adopted
        out = run_kubectl(cluster, "get", "pod", "cli-pod", "-o", "jsonpath={.status.containerStatuses[0].restartCount} {.status.phase}").stdout
        assert out == "0 Running" and pod_pids("MARK=cli-pod") == [pid]
        assert stop_cli(proc) == 0
        assert not alive(pid) and pod_pids("MARK=cli-pod") == []
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True).stdout.split()
    assert leftovers == []


def test_cli_rejects_bad_flags(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "tmd", "localkube", "--node-cpus", "four", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert done.returncode == 2 and "not a Kubernetes quantity" in done.stderr and "Traceback" not in done.stderr
