"""Benchmark of the embedded control plane (localkube).

1. kopf latency: a real `kopf run --standalone -A` operator with one create handler; 200 custom
   resources are created at once (16 client threads); latency per resource = the handler's
   "Handler 'create_fn' succeeded" log time − the moment its POST returned. Baseline (same run):
   the latency of a single resource created alone on the idle operator.
2. Watch delivery delay: a python-client watcher on ConfigMaps; 100 ConfigMaps created one by one;
   delay = time the watcher received ADDED − time the POST was sent. Baseline (same run): the
   round-trip of a GET of one ConfigMap.

Prints the figures and ratios and writes benchmarks/results/localkube.json. Goal: kopf median < 1 s.
Usage: python benchmarks/localkube.py [--count 200]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client, config, watch  # noqa: E402

from tmd.localkube.cluster import LocalCluster  # noqa: E402
from tmd.localkube.testing import KopfProcess, isolated_env, run_kubectl, wait_for  # noqa: E402

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "benches.bench.localkube.dev"},
    "spec": {
        "group": "bench.localkube.dev",
        "scope": "Namespaced",
        "names": {"plural": "benches", "singular": "bench", "kind": "Bench"},
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"n": {"type": "integer"}}},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}},
        }],
    },
}

OPERATOR = '''
import kopf

@kopf.on.startup()
def configure(settings, **_):
    settings.posting.enabled = False

@kopf.on.create("bench.localkube.dev", "v1", "benches")
def create_fn(spec, **_):
    return {"n": spec.get("n")}
'''

LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] .*?\[default/(bench-[\w-]+)\] Handler 'create_fn' succeeded")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def handled_times(log: str) -> dict[str, float]:
    out = {}
    for line in log.splitlines():
        match = LOG_LINE.match(line)
        if match:
            out[match.group(2)] = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()  # kopf logs local time
    return out


def bench(n: int) -> dict:
    return {"apiVersion": "bench.localkube.dev/v1", "kind": "Bench", "metadata": {"name": f"bench-{n}"}, "spec": {"n": n}}


def kopf_latency(cluster: LocalCluster, custom: client.CustomObjectsApi, work: Path, count: int) -> dict:
    run_kubectl(cluster, "apply", "-f", "-", input=json.dumps(CRD))
    run_kubectl(cluster, "wait", "--for=condition=established", "crd/benches.bench.localkube.dev", "--timeout=20s")
    operator = work / "operator.py"
    operator.write_text(OPERATOR)
    created: dict[str, float] = {}
    with KopfProcess(cluster, operator, work / "kopf.log") as kopf:
        kopf.wait_log("Starting the watch-stream for benches", timeout=60)
        time.sleep(1.0)
        # baseline: one resource alone
        custom.create_namespaced_custom_object("bench.localkube.dev", "v1", "default", "benches", bench(0))
        created["bench-0"] = time.time()
        kopf.wait_log("[default/bench-0] Handler 'create_fn' succeeded", timeout=60)

        def create(n: int) -> None:
            custom.create_namespaced_custom_object("bench.localkube.dev", "v1", "default", "benches", bench(n))
            created[f"bench-{n}"] = time.time()

        started = time.time()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, range(1, count + 1)))
        create_seconds = time.time() - started
        kopf.wait_log("Handler 'create_fn' succeeded", count=count + 1, timeout=300)
        handled = handled_times(kopf.log)
        warnings = [line for line in kopf.log.splitlines() if "WARNING" in line or "ERROR" in line]
    latencies = [handled[name] - created[name] for name in created if name != "bench-0"]
    return {
        "count": count,
        "create_seconds": round(create_seconds, 3),
        "single_latency_s": round(handled["bench-0"] - created["bench-0"], 4),
        "median_s": round(statistics.median(latencies), 4),
        "p95_s": round(percentile(latencies, 0.95), 4),
        "max_s": round(max(latencies), 4),
        "kopf_warnings": len(warnings),
    }


def watch_delay(core: client.CoreV1Api, count: int) -> dict:
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    ready = threading.Event()
    done = threading.Event()

    def watcher() -> None:
        stream = watch.Watch()
        ready.set()
        for event in stream.stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=120):
            name = event["object"].metadata.name
            if event["type"] == "ADDED" and name.startswith("wd-"):
                received[name] = time.time()
                if len(received) >= count:
                    stream.stop()
        done.set()

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    ready.wait()
    time.sleep(0.5)
    for i in range(count):
        name = f"wd-{i}"
        sent[name] = time.time()
        core.create_namespaced_config_map("default", {"metadata": {"name": name}, "data": {"i": str(i)}})
        time.sleep(0.01)
    done.wait(60)
    delays = [received[n] - sent[n] for n in sent if n in received]
    rtts = []
    for i in range(count):
        began = time.time()
        core.read_namespaced_config_map(f"wd-{i}", "default")
        rtts.append(time.time() - began)
    return {
        "count": count,
        "received": len(delays),
        "median_ms": round(statistics.median(delays) * 1000, 2),
        "p95_ms": round(percentile(delays, 0.95) * 1000, 2),
        "get_rtt_median_ms": round(statistics.median(rtts) * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--watch-count", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "localkube.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="localkube-bench-") as tmp:
        work = Path(tmp)
        cluster = LocalCluster(work / "data", nodes=1)
        with cluster, isolated_env(cluster):
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            watch_result = watch_delay(client.CoreV1Api(api), args.watch_count)
            kopf_result = kopf_latency(cluster, client.CustomObjectsApi(api), work, args.count)
            api.close()
    result = {
        "kopf": {**kopf_result, "ratio_median_to_single": round(kopf_result["median_s"] / max(kopf_result["single_latency_s"], 1e-6), 2),
                 "goal_median_below_1s": kopf_result["median_s"] < 1.0},
        "watch": {**watch_result, "ratio_median_to_get_rtt": round(watch_result["median_ms"] / max(watch_result["get_rtt_median_ms"], 1e-6), 2)},
    }
    k, w = result["kopf"], result["watch"]
    print(f"kopf: {k['count']} resources created in {k['create_seconds']} s; create → handler succeeded: median {k['median_s']} s, "
          f"p95 {k['p95_s']} s, max {k['max_s']} s; single resource alone {k['single_latency_s']} s "
          f"(ratio {k['ratio_median_to_single']}); goal median < 1 s: {'met' if k['goal_median_below_1s'] else 'NOT met'}; "
          f"kopf warnings: {k['kopf_warnings']}")
    print(f"watch: write → watcher delay median {w['median_ms']} ms, p95 {w['p95_ms']} ms over {w['received']}/{w['count']} events; "
          f"GET round-trip median {w['get_rtt_median_ms']} ms (ratio {w['ratio_median_to_get_rtt']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
