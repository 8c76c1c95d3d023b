"""Benchmark: inference through the shim against inference sent straight to the worker.

One localkube cluster (1 node), the real operator, one worker pod serving one deployment, and
`tmd shim` as a subprocess. The same model and the same client concurrency are used for both
paths; rounds alternate (direct, shim, direct, shim, ...) so background noise on a shared
machine hits both alike. Each request carries one document.

Prints p50/p99 latency and throughput of both paths and the ratios (shim / direct); goals:
p50 ratio ≤ 1.1, throughput ratio ≥ 0.9. Also the shim process's CPU time per request (goal
≤ 0.1 ms on the small model): what the shim itself costs, whatever else loads the machine.
Writes benchmarks/results/shim_overhead.json.
Usage: python benchmarks/shim_overhead.py [--requests 300] [--concurrency 4] [--rounds 2] [--model encoder]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from tests.operator.e2e import REPO  # noqa: E402
from tests.shim.support import ShimProcess, free_port, ordered_parts, start_operator  # noqa: E402
from tmd.localkube.testing import local_cluster, run_kubectl  # noqa: E402
from tmd.tinymodels import benchmark_encoder, super_simple  # noqa: E402
from tmd.tinymodels.builders import script_bytes  # noqa: E402

TEXTS = [" ".join(["these are my words", "the quick brown fox jumps over the lazy dog", "words are words",
                   "a model deployment serves inference", "my words"][i:] * 4) for i in range(5)]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_load(url: str, body_for, requests: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def lane() -> None:
            nonlocal errors
            for i in counter:
                t0 = time.perf_counter()
                response = await client.post(url, json=body_for(i))
                latencies.append(time.perf_counter() - t0)
                errors += response.status_code != 200
        start = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {"requests": requests, "errors": errors, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "throughput_per_s": requests / elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", choices=("encoder", "super_simple"), default="encoder")
    parser.add_argument("--allocations", type=int, default=1, help="number_of_allocations of the deployment (1 thread each)")
    parser.add_argument("--profile", metavar="PATH",
                        help="record the shim with py-spy (pip install py-spy) during the shim rounds, raw format")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "shim_overhead.json"))
    args = parser.parse_args()

    # The encoder stands for a real model: a few milliseconds of inference per document.
    tiny = benchmark_encoder("bench_model", layers=4, hidden=256, max_sequence_length=128) \
        if args.model == "encoder" \
        else super_simple("bench_model")
    definition = script_bytes(tiny.model)
    with tempfile.TemporaryDirectory() as tmp, local_cluster(Path(tmp) / "cluster", nodes=1, node_cpus="2",
                                                              node_memory="4Gi") as cluster:
        run_kubectl(cluster, "apply", "-f", str(REPO / "crds"))
        run_kubectl(cluster, "wait", "--for=condition=established", "--timeout=30s",
                    "crd/trainedmodeldeployments.ml.tmd.dev")
        port = free_port()  # pod IPs of other localkube clusters on this machine may coincide with ours
        operator = start_operator(cluster.kubeconfig, Path(tmp) / "operator.log", port)
        shim = ShimProcess(cluster.kubeconfig, Path(tmp) / "store", Path(tmp) / "shim.log", "--no-auth",
                           "--worker-port", str(port)).start()
        try:
            es = httpx.Client(base_url=shim.url, timeout=120)
            base = "/_ml/trained_models/bench_model"
            es.put(base, json={k: v for k, v in tiny.config.items() if k != "model_id"}).raise_for_status()
            for part, chunk in ordered_parts(definition, 2):
                es.put(f"{base}/definition/{part}", json={"definition": base64.b64encode(chunk).decode(),
                                                          "total_definition_length": len(definition),
                                                          "total_parts": 2}).raise_for_status()
            es.put(f"{base}/vocabulary", json=tiny.vocabulary).raise_for_status()
            started = es.post(f"{base}/deployment/_start", params={"wait_for": "started", "cache_size": "0",
                                                                   "timeout": "120s",
                                                                   "number_of_allocations": str(args.allocations)})
            started.raise_for_status()
            pods = json.loads(run_kubectl(cluster, "get", "pods", "-l", "ml.tmd.dev/role=worker", "-o",
                                          "json").stdout)["items"]
            worker = f"http://{pods[0]['status']['podIP']}:{port}/infer"
            field = tiny.config["input"]["field_names"][0]
            body = lambda i: {"docs": [{field: TEXTS[i % len(TEXTS)]}]}  # noqa: E731
            asyncio.run(run_load(worker, body, 50, args.concurrency))  # warm-up, both paths
            asyncio.run(run_load(shim.url + base + "/_infer", body, 50, args.concurrency))
            rounds = []
            spy = None
            if args.profile:
                import subprocess
                spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(shim.proc.pid),
                                        "-r", "250", "--format", "raw", "-o", args.profile, "--nonblocking"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(args.rounds):
                direct = asyncio.run(run_load(worker, body, args.requests, args.concurrency))
                cpu_before = process_cpu_seconds(shim.proc.pid)
                through = asyncio.run(run_load(shim.url + base + "/_infer", body, args.requests, args.concurrency))
                through["shim_cpu_ms_per_request"] = 1000.0 * (process_cpu_seconds(shim.proc.pid) - cpu_before) / args.requests
                rounds.append({"direct": direct, "shim": through})
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes what it recorded and exits
                spy.wait(30)
            es.post(f"{base}/deployment/_stop").raise_for_status()
        finally:
            shim.stop()
            operator.stop()

    def med(path: str, key: str) -> float:
        return statistics.median(r[path][key] for r in rounds)

    result = {
        "model": args.model, "model_bytes": len(definition), "allocations": args.allocations,
        "requests_per_round": args.requests,
        "concurrency": args.concurrency, "rounds": rounds,
        "direct": {k: med("direct", k) for k in ("p50_ms", "p99_ms", "throughput_per_s")},
        "shim": {k: med("shim", k) for k in ("p50_ms", "p99_ms", "throughput_per_s")},
    }
    result["shim_cpu_ms_per_request"] = med("shim", "shim_cpu_ms_per_request")
    result["p50_ratio"] = result["shim"]["p50_ms"] / result["direct"]["p50_ms"]
    result["p99_ratio"] = result["shim"]["p99_ms"] / result["direct"]["p99_ms"]
    result["throughput_ratio"] = result["shim"]["throughput_per_s"] / result["direct"]["throughput_per_s"]
    result["goals"] = {"p50_ratio<=1.1": result["p50_ratio"] <= 1.1, "throughput_ratio>=0.9":
                       result["throughput_ratio"] >= 0.9}
    print(f"model {args.model} ({len(definition)} bytes), {args.allocations} allocation(s), concurrency {args.concurrency}, "
          f"{args.requests} requests x {args.rounds} rounds per path")
    for path in ("direct", "shim"):
        r = result[path]
        print(f"  {path:6s}: p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  {r['throughput_per_s']:.1f} req/s")
    print(f"  ratios (shim/direct): p50 {result['p50_ratio']:.3f} (goal <= 1.1)  p99 {result['p99_ratio']:.3f}  "
          f"throughput {result['throughput_ratio']:.3f} (goal >= 0.9)")
    print(f"  shim CPU per request: {result['shim_cpu_ms_per_request']:.3f} ms (goal <= 0.1 on the small model)")
    print(f"  (load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus)")
    errors = sum(r[p]["errors"] for r in rounds for p in ("direct", "shim"))
    if errors:
        print(f"  {errors} requests failed")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
