"""The operator at cluster scale, on localkube's simulated nodes (pods Ready without a process).

For each size (nodes × deployments; default 100×50, 300×200, 1000×500):
1. start localkube with N simulated nodes (8 CPUs, 16Gi each) and a real `tmd operator`
   (subprocess, in-place resize off: simulated pods have no worker to take an allocation change);
2. apply one TrainedModel and D TrainedModelDeployments (1 or 2 allocations × 1 thread) at once
   with one `kubectl apply`; time until every deployment has condition Ready=True;
3. steady state: API requests of the operator over a quiet window (default 60 s);
4. one node event that changes nothing placed (a label on one node): requests and passes it costs;
5. delete 10 % of the nodes at once (16 client threads); time until every deployment is Ready
   again with no route or pod left on them, and requests per deleted node.
API requests are counted by localkube per client (`/metrics`, apiserver_request_total): "operator"
is the reconciler's python client plus kopf's watches. Operator CPU seconds and peak RSS come from
/proc; pass time (and its planning part alone) p50/p99 is estimated from the operator's pass histogram (bucket interpolation, as
Prometheus' histogram_quantile). Growth is reported as ratios against the smallest size of the
same run (the baseline). The machine is shared and noisy: the load average is printed with the figures.

Usage: python benchmarks/operator_scale.py [--sizes 100x50,300x200,1000x500] [--quiet 60]
Writes benchmarks/results/operator_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from kubernetes import client, config  # noqa: E402
import yaml  # noqa: E402

from tmd.api.resources import API_VERSION, DEPLOYMENT_PLURAL, GROUP  # noqa: E402
from tmd.localkube.cluster import LocalCluster  # noqa: E402
from tmd.localkube.testing import run_kubectl  # noqa: E402

OPERATOR_CLIENTS = ("OpenAPI-Generator", "kopf")  # the python client's User-Agent product, and kopf's
MODEL_ID = "scale_model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resources(deployments: int, prefix: str = "dep", model_id: str = MODEL_ID,
              allocations: int = 2, threads: int = 1) -> list[dict[str, Any]]:
    """One model (never loaded: simulated pods run no process) and `deployments` deployments of it,
    with 1..`allocations` allocations each (also what benchmarks/console.py applies)."""
    model = {"apiVersion": API_VERSION, "kind": "TrainedModel",
             "metadata": {"name": f"{prefix}-model", "namespace": "default"},
             "spec": {"model_id": model_id, "model_type": "pytorch",
                      "inference_config": {"pass_through": {"tokenization": {"bert": {}}}},
                      "input": {"field_names": ["input"]},
                      "definition": {"uri": "file:///nonexistent/model.pt", "total_definition_length": 1 << 20}}}
    return [model] + [
        {"apiVersion": API_VERSION, "kind": "TrainedModelDeployment",
         "metadata": {"name": f"{prefix}-{i}", "namespace": "default"},
         "spec": {"model_id": model_id, "deployment_id": f"{prefix}_{i:02d}", "number_of_allocations": 1 + i % allocations,
                  "threads_per_allocation": threads, "cache_size": "0b"}}
        for i in range(deployments)]


def operator_requests(counts: dict[tuple[str, str, str], int]) -> int:
    return sum(n for (_, _, client), n in counts.items() if client in OPERATOR_CLIENTS)


def by_kind(before: dict[tuple[str, str, str], int], after: dict[tuple[str, str, str], int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, n in after.items():
        if key[2] in OPERATOR_CLIENTS and n - before.get(key, 0):
            label = f"{key[0]} {key[1]}"
            out[label] = out.get(label, 0) + n - before.get(key, 0)
    return dict(sorted(out.items()))


def proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return cpu, int(hwm.group(1)) / 1024 if hwm else 0.0


def scrape(port: int) -> dict[str, Any]:
    """Passes and the pass-time histogram from the operator's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    buckets: list[tuple[float, float]] = []
    plan: list[tuple[float, float]] = []
    passes = 0.0
    for line in text.splitlines():
        m = re.match(r'tmd_operator_(reconcile|plan)_duration_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            (buckets if m.group(1) == "reconcile" else plan).append(
                (float("inf") if m.group(2) == "+Inf" else float(m.group(2)), float(m.group(3))))
        m = re.match(r'tmd_operator_reconcile_passes_total\{result="ok"\} (\S+)', line)
        if m:
            passes = float(m.group(1))
    return {"buckets": buckets, "plan": plan, "passes": passes}


def quantile(q: float, before: list[tuple[float, float]], after: list[tuple[float, float]]) -> float | None:
    """histogram_quantile over the passes between two scrapes."""
    old = dict(before)
    counts = [(le, n - old.get(le, 0.0)) for le, n in after]
    total = counts[-1][1] if counts else 0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le, n in counts:
        if n >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * ((rank - below) / max(n - below, 1e-9))
        lower, below = le, n
    return lower


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - start


class Operator:
    def __init__(self, cluster: LocalCluster, log: Path) -> None:
        self.metrics_port = free_port()
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PYTHONPATH": str(REPO),
               "TMD_INPLACE_RESIZE": "false", "TMD_OPERATOR_METRICS": f"127.0.0.1:{self.metrics_port}"}
        self.log = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tmd", "operator"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait(lambda: "Initial authentication has finished" in log.read_text(errors="replace") or
             self.proc.poll() is not None, 60, "the operator to start")

    def stop(self) -> None:
        stop_process(self.proc, self.log)


def stop_process(proc: subprocess.Popen, log: Any) -> None:
    """SIGTERM, 30 s to exit, then SIGKILL; closes the process's log (also benchmarks/console.py's shim)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def run_size(nodes: int, deployments: int, quiet: float, work: Path) -> dict[str, Any]:
    data = work / f"lk-{nodes}"
    cluster = LocalCluster(data, nodes=0, simulated_nodes=nodes, node_cpus="8", node_memory="16Gi", zones=3,
                           pod_subnet=f"127.{random.randint(100, 254)}.0.0/16", server_options={"synchronous": "NORMAL"})
    cluster.start(timeout=300)
    server = cluster.api_server
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    api.user_agent = "operator-scale-benchmark/1"  # not counted as the operator's (OPERATOR_CLIENTS)
    core = client.CoreV1Api(api)
    operator: Operator | None = None
    try:
        run_kubectl(cluster, "apply", "-f", str(REPO / "crds"))
        operator = Operator(cluster, work / f"operator-{nodes}.log")
        time.sleep(2.0)  # let the operator's start-up lists and kopf's watches settle

        def all_ready() -> bool:
            items = server.objects(GROUP, DEPLOYMENT_PLURAL, "default")
            return len(items) == deployments and all(
                any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (d.get("status") or {}).get("conditions") or []) for d in items)

        def worker_pods() -> int:
            return sum(1 for p in server.objects("", "pods", "default") if not p["metadata"].get("deletionTimestamp"))

        # 1. everything applied at once
        counts0, usage0, metrics0 = server.request_counts(), proc_usage(operator.proc.pid), scrape(operator.metrics_port)
        started = time.monotonic()
        run_kubectl(cluster, "apply", "-f", "-", input=yaml.safe_dump_all(resources(deployments)), timeout=600)
        applied_s = time.monotonic() - started
        wait(all_ready, 600, "every deployment Ready")
        ready_s = time.monotonic() - started
        counts1, usage1, metrics1 = server.request_counts(), proc_usage(operator.proc.pid), scrape(operator.metrics_port)
        passes = metrics1["passes"] - metrics0["passes"]
        apply_phase = {
            "seconds_to_all_ready": round(ready_s, 2), "kubectl_apply_seconds": round(applied_s, 2),
            "worker_pods": worker_pods(), "passes": passes,
            "operator_requests": operator_requests(counts1) - operator_requests(counts0),
            "requests_by_kind": by_kind(counts0, counts1),
            "operator_cpu_seconds": round(usage1[0] - usage0[0], 2),
            "pass_p50_seconds": quantile(0.5, metrics0["buckets"], metrics1["buckets"]),
            "pass_p99_seconds": quantile(0.99, metrics0["buckets"], metrics1["buckets"]),
            "plan_p50_seconds": quantile(0.5, metrics0["plan"], metrics1["plan"]),
            "plan_p99_seconds": quantile(0.99, metrics0["plan"], metrics1["plan"]),
        }
        apply_phase["requests_per_pass"] = round(apply_phase["operator_requests"] / max(passes, 1), 2)

        # 2. steady state
        time.sleep(3.0)
        counts2, usage2, metrics2 = server.request_counts(), proc_usage(operator.proc.pid), scrape(operator.metrics_port)
        time.sleep(quiet)
        counts3, usage3, metrics3 = server.request_counts(), proc_usage(operator.proc.pid), scrape(operator.metrics_port)
        requests = operator_requests(counts3) - operator_requests(counts2)
        steady = {"seconds": quiet, "operator_requests": requests, "requests_by_kind": by_kind(counts2, counts3),
                  "requests_per_minute_per_deployment": round(requests / (quiet / 60) / deployments, 4),
                  "passes": metrics3["passes"] - metrics2["passes"],
                  "operator_cpu_seconds": round(usage3[0] - usage2[0], 2)}

        # 3. one node event that changes no placement
        run_kubectl(cluster, "label", "node", "sim-1", "bench.tmd.dev/touched=yes")
        time.sleep(3.0)
        counts4, metrics4 = server.request_counts(), scrape(operator.metrics_port)
        node_event = {"operator_requests": operator_requests(counts4) - operator_requests(counts3),
                      "requests_by_kind": by_kind(counts3, counts4), "passes": metrics4["passes"] - metrics3["passes"]}

        # 4. lose 10 % of the nodes at once
        lost = [f"sim-{i}" for i in range(1, nodes + 1, 10)]
        on_lost = sum(1 for p in server.objects("", "pods", "default") if p["spec"].get("nodeName") in set(lost))
        usage5, metrics5 = proc_usage(operator.proc.pid), scrape(operator.metrics_port)
        started = time.monotonic()
        # With the python client from 16 threads: kubectl deletes one node at a time behind its
        # client-side rate limit (about 6 a second), which would be what this measured.
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda name: core.delete_node(name, _preload_content=False), lost))
        deleted_s = time.monotonic() - started
        gone = set(lost)

        def moved() -> bool:
            """Ready, with no pod and no route left on a deleted node."""
            return all_ready() and not any(p["spec"].get("nodeName") in gone for p in server.objects("", "pods", "default")) \
                and not any(gone & set((d.get("status") or {}).get("routing_table") or {})
                            for d in server.objects(GROUP, DEPLOYMENT_PLURAL, "default"))

        wait(moved, 600, "every deployment Ready again")
        recover_s = time.monotonic() - started
        counts6, usage6, metrics6 = server.request_counts(), proc_usage(operator.proc.pid), scrape(operator.metrics_port)
        passes = metrics6["passes"] - metrics5["passes"]
        lost_requests = operator_requests(counts6) - operator_requests(counts4)
        node_loss = {"nodes_deleted": len(lost), "worker_pods_on_them": on_lost,
                     "seconds_to_all_ready": round(recover_s, 2), "delete_seconds": round(deleted_s, 2),
                     "passes": passes,
                     "operator_requests": lost_requests, "requests_by_kind": by_kind(counts4, counts6),
                     "requests_per_deleted_node": round(lost_requests / len(lost), 2),
                     "requests_per_pass": round(lost_requests / max(passes, 1), 2),
                     "operator_cpu_seconds": round(usage6[0] - usage5[0], 2),
                     "pass_p50_seconds": quantile(0.5, metrics5["buckets"], metrics6["buckets"]),
                     "pass_p99_seconds": quantile(0.99, metrics5["buckets"], metrics6["buckets"]),
                     "plan_p50_seconds": quantile(0.5, metrics5["plan"], metrics6["plan"]),
                     "plan_p99_seconds": quantile(0.99, metrics5["plan"], metrics6["plan"])}
        return {"nodes": nodes, "deployments": deployments, "apply": apply_phase, "steady": steady,
                "node_event": node_event, "node_loss": node_loss,
                "operator_peak_rss_mib": round(proc_usage(operator.proc.pid)[1], 1),
                "load_average": os.getloadavg()}
    except BaseException:
        log = work / f"operator-{nodes}.log"
        if log.exists():
            print("operator log (end):\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]), file=sys.stderr)
        raise
    finally:
        if operator is not None:
            operator.stop()
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100x50,300x200,1000x500", help="NODESxDEPLOYMENTS,... (default %(default)s)")
    parser.add_argument("--quiet", type=float, default=60.0, help="steady-state window in seconds (default 60)")
    args = parser.parse_args()
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C: the operator and the cluster are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [tuple(int(x) for x in size.split("x")) for size in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="tmd-scale-") as tmp:
        for nodes, deployments in sizes:
            print(f"--- {nodes} nodes × {deployments} deployments (load {os.getloadavg()[0]:.2f})", flush=True)
            result = run_size(nodes, deployments, args.quiet, Path(tmp))
            results.append(result)
            print(json.dumps(result, indent=1), flush=True)
    base = results[0]
    print("\ngrowth against the first size (baseline):")
    for r in results:
        def ratio(path: tuple[str, str]) -> str:
            a, b = base[path[0]][path[1]], r[path[0]][path[1]]
            return f"{b}/{a} = {b / a:.2f}x" if a else f"{b}/{a}"
        print(f"{r['nodes']:>5} nodes × {r['deployments']:>3} deployments: "
              f"ready {r['apply']['seconds_to_all_ready']} s; pass p50 {ratio(('apply', 'pass_p50_seconds'))}; "
              f"plan p50 {ratio(('apply', 'plan_p50_seconds'))}; "
              f"requests per deleted node {ratio(('node_loss', 'requests_per_deleted_node'))}; "
              f"steady {r['steady']['requests_per_minute_per_deployment']} req/min/deployment; "
              f"node event {r['node_event']['operator_requests']} requests; "
              f"peak RSS {r['operator_peak_rss_mib']} MiB; load {r['load_average'][0]:.2f}")
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "operator_scale.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
