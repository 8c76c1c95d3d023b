"""Worker throughput: HTTP serving against the raw model, and 2 allocation lanes against 1.

Measured in one run, on one machine, so the ratios hold even where absolute figures are noisy:

* raw: in-process `model(*inputs)` on pre-tokenized inputs, 1 thread (the limit for 1×1), and
  2 threads each with 1 intra-op thread (the limit for 2×1),
* http: two `tmd worker`s (cache off), one unbatched (`--max-batch-size 1`) and one with dynamic
  batching (`--max-batch-size`/`--max-batch-delay`, the defaults unless given), each driven by an
  async load generator at concurrency 1, 8 and 64 with 1 allocation × 1 thread, then — changed
  live through POST /allocations — 2 allocations × 1 thread at concurrency 8 and 64.

Prints HTTP/raw efficiency of the unbatched worker (goal ≥ 0.90 at concurrency ≥ 8), its
2-lane/1-lane scaling (goal ≥ 1.8 on 2 free cores), batched/unbatched throughput and p50 per
phase (goals: ≥ 1.5 throughput at c=64, ≤ 1.05 p50 at c=1), the batched worker's average batch
size and padding waste (`--mixed-lengths` makes texts of varied lengths), p50/p99 latency, and
writes benchmarks/results/worker_throughput.json.

Every phase is bounded by --duration seconds and --max-requests requests. "worker cores" is
the worker process's CPU time over the phase's wall time: above 1 with 2 lanes means the lanes
computed at the same time (the GIL is released during forward), whatever else loads the machine.
"CPU eff." is docs per worker CPU-second against raw docs per CPU-second: the serving overhead
(HTTP, JSON, tokenization, queueing) independent of how much of a shared machine each phase got.

    python benchmarks/worker_throughput.py [--duration 5] [--layers 4 --hidden 256 --tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing tmd

import httpx  # noqa: E402
import torch  # noqa: E402

from tmd.api.deployment import DEFAULT_MAX_BATCH_DELAY, DEFAULT_MAX_BATCH_SIZE  # noqa: E402
from tmd.tinymodels import BASE_VOCABULARY, benchmark_encoder  # noqa: E402
from tmd.worker.nlp import load_pipeline  # noqa: E402


# --- the model: tmd.tinymodels' small BERT-like encoder ---------------------------------

def build_model_dir(path: Path, layers: int, hidden: int, tokens: int) -> Path:
    tiny = benchmark_encoder(layers=layers, hidden=hidden, heads=max(1, hidden // 64), max_sequence_length=tokens,
                             tokenization_options={"truncate": "first"})
    return tiny.write(path)


def make_texts(n: int, words: int, seed: int = 1) -> list[str]:
    """Distinct texts long enough to fill the sequence (truncated to --tokens)."""
    rng = random.Random(seed)
    pool = [w for w in BASE_VOCABULARY if w.isalpha() and len(w) > 2]
    return [" ".join(rng.choice(pool) for _ in range(words)) for _ in range(n)]


# --- raw forward ------------------------------------------------------------------------

class RawModel:
    """The model and pre-tokenized inputs in this process: the upper bound for the worker."""

    def __init__(self, model_dir: Path, texts: list[str]) -> None:
        config = json.loads((model_dir / "config.json").read_text())
        pipeline = load_pipeline(config, json.loads((model_dir / "vocabulary.json").read_text()))
        self.model = torch.jit.load(str(model_dir / "model.pt")).eval()
        self.inputs = [pipeline.prepare({"input": t}).inputs for t in texts[:64]]
        with torch.inference_mode():
            for i in range(3):
                self.model(*self.inputs[i])

    def throughput(self, lanes: int, duration: float) -> dict[str, float]:
        """Docs/s of `lanes` Python threads each looping model(*inputs) with 1 intra-op thread."""
        counts = [0] * lanes
        cpu = [0.0] * lanes
        start_line = threading.Barrier(lanes + 1)
        window = {"stop": 0.0}

        def lane(n: int) -> None:
            torch.set_num_threads(1)
            start_line.wait()
            cpu_start = time.thread_time()
            with torch.inference_mode():
                i = n
                while time.perf_counter() < window["stop"]:
                    self.model(*self.inputs[i % len(self.inputs)])
                    counts[n] += 1
                    i += lanes
            cpu[n] = time.thread_time() - cpu_start

        threads = [threading.Thread(target=lane, args=(n,)) for n in range(lanes)]
        for t in threads:
            t.start()
        begin = time.perf_counter()
        window["stop"] = begin + duration
        start_line.wait()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - begin
        # CPU seconds of the lane threads per wall second: above 1 only if they computed at the same time
        return {"docs_per_s": sum(counts) / elapsed, "docs": sum(counts), "seconds": elapsed, "cpu_cores": sum(cpu) / elapsed}


# --- the worker over HTTP ---------------------------------------------------------------

def free_address() -> tuple[str, int]:
    host = "127.0.0.%d" % random.randint(2, 254)
    with socket.socket() as s:
        s.bind((host, 0))
        return host, s.getsockname()[1]


def start_worker(model_dir: Path, allocations: int, batching: tuple[str, ...] = ("--max-batch-size", "1")
                 ) -> tuple[subprocess.Popen, str]:
    host, port = free_address()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tmd", "worker", "--model-dir", str(model_dir), "--host", host,
                             "--port", str(port), "--allocations", str(allocations), "--threads", "1",
                             "--queue-capacity", "10000", "--cache-size", "0", *batching],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"worker exited: {proc.stderr.read().decode(errors='replace') if proc.stderr else ''}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("worker did not become ready")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def http_load(url: str, bodies: list[bytes], concurrency: int, duration: float, max_requests: int,
                    client_kind: str = "aiohttp", worker_pid: int | None = None) -> dict[str, Any]:
    """`concurrency` clients on keep-alive connections, each sending its next request when the last is answered.

    The load generator shares the machine with the worker, so its own CPU cost is subtracted
    from what the worker can get: aiohttp costs a fraction of httpx per request (httpx's pool
    grows costly with many connections), hence the default; `--client httpx` is kept for comparison.
    """
    latencies: list[float] = []
    errors = 0
    issued = 0
    headers = {"content-type": "application/json"}
    if client_kind == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        session: Any = httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0)

        async def post(body: bytes) -> int:
            return (await session.post("/infer", content=body, headers=headers)).status_code
    else:
        import aiohttp

        session = aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(limit=concurrency),
                                        timeout=aiohttp.ClientTimeout(total=60))

        async def post(body: bytes) -> int:
            async with session.post("/infer", data=body, headers=headers) as r:
                await r.read()
                return r.status
    async with session:
        # warm the connections so the measured window has no connection setup in it
        await asyncio.gather(*(post(bodies[i % len(bodies)]) for i in range(concurrency)))
        cpu_begin = process_cpu_seconds(worker_pid) if worker_pid else 0.0
        begin = time.perf_counter()
        stop = begin + duration

        async def loop_client() -> None:
            nonlocal issued, errors
            while time.perf_counter() < stop and issued < max_requests:
                body = bodies[issued % len(bodies)]
                issued += 1
                t0 = time.perf_counter()
                status = await post(body)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    errors += 1

        await asyncio.gather(*(loop_client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - begin
        worker_cores = (process_cpu_seconds(worker_pid) - cpu_begin) / elapsed if worker_pid else float("nan")
    latencies.sort()

    def pct(p: float) -> float:
        return 1000.0 * latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")

    return {"concurrency": concurrency, "docs_per_s": len(latencies) / elapsed, "requests": len(latencies),
            "errors": errors, "seconds": elapsed, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "mean_ms": 1000.0 * statistics.fmean(latencies) if latencies else float("nan"),
            "worker_cpu_cores": worker_cores}


def stop_worker(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


# --- main -------------------------------------------------------------------------------




def padding_waste(url: str) -> float | None:
    """1 - real/padded token positions over the worker's forward passes (its /metrics counters)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        for name in ("tmd_batch_tokens_total", "tmd_batch_padded_tokens_total", "tmd_forward_passes_total",
                     "tmd_batched_documents_total"):
            if line.startswith(name + "{") or line.startswith(name + " "):
                values[name] = float(line.rsplit(" ", 1)[1])
    padded = values.get("tmd_batch_padded_tokens_total", 0.0)
    return 1.0 - values.get("tmd_batch_tokens_total", 0.0) / padded if padded else None


def average_batch_size(url: str) -> float:
    return float(httpx.get(url + "/stats", timeout=10).json()["node"].get("average_batch_size", float("nan")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measured phase (default 2)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="raw and HTTP phases alternate this many times; ratios are per round, medians reported")
    parser.add_argument("--max-requests", type=int, default=20000, help="request cap per HTTP phase")
    parser.add_argument("--concurrency", default="1,8,64", help="HTTP concurrencies for 1x1 (default 1,8,64)")
    parser.add_argument("--scaling-concurrency", default="8,64", help="concurrencies compared for 2x1 vs 1x1")
    parser.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp", help="load generator HTTP client")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                        help=f"the batched worker's max_batch_size (default {DEFAULT_MAX_BATCH_SIZE}); 1 skips it")
    parser.add_argument("--max-batch-delay", default=DEFAULT_MAX_BATCH_DELAY,
                        help=f"the batched worker's max_batch_delay (default {DEFAULT_MAX_BATCH_DELAY})")
    parser.add_argument("--mixed-lengths", action="store_true",
                        help="texts of 2..--tokens words instead of all truncated to --tokens (padding waste shows)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "results" / "worker_throughput.json"))
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    scaling = [int(c) for c in args.scaling_concurrency.split(",")]
    torch.set_num_threads(1)
    variants = {"unbatched": ("--max-batch-size", "1")}
    if args.max_batch_size > 1:
        variants["batched"] = ("--max-batch-size", str(args.max_batch_size), "--max-batch-delay", args.max_batch_delay)

    rounds: list[dict[str, Any]] = []
    waste: dict[str, float | None] = {}
    batch_sizes: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tmd-bench-") as tmp:
        model_dir = build_model_dir(Path(tmp) / "model", args.layers, args.hidden, args.tokens)
        if args.mixed_lengths:
            rng = random.Random(2)
            texts = [" ".join(t.split()[:rng.randint(2, args.tokens)]) for t in make_texts(512, args.tokens)]
        else:
            texts = make_texts(512, args.tokens)
        bodies = [json.dumps({"docs": [{"input": t}]}).encode() for t in texts]
        raw = RawModel(model_dir, texts)
        workers = {name: start_worker(model_dir, 1, flags) for name, flags in variants.items()}
        try:
            for n in range(args.rounds):
                one: dict[str, Any] = {"raw": raw.throughput(1, args.duration)}
                two: dict[str, Any] = {}
                for name, (proc, url) in workers.items():
                    for c in concurrencies + [c for c in scaling if c not in concurrencies]:
                        one[(name, c)] = asyncio.run(http_load(url, bodies, c, args.duration, args.max_requests, args.client, proc.pid))
                    httpx.post(url + "/allocations", json={"number_of_allocations": 2}, timeout=10).raise_for_status()
                two["raw"] = raw.throughput(2, args.duration)
                for name, (proc, url) in workers.items():
                    for c in scaling:
                        two[(name, c)] = asyncio.run(http_load(url, bodies, c, args.duration, args.max_requests, args.client, proc.pid))
                    httpx.post(url + "/allocations", json={"number_of_allocations": 1}, timeout=10).raise_for_status()
                rounds.append({"1x1": one, "2x1": two})
                print(f"round {n + 1}: raw 1x1 {one['raw']['docs_per_s']:.1f}/s, raw 2x1 {two['raw']['docs_per_s']:.1f}/s; "
                      + "; ".join(f"{name} 1x1 " + ", ".join(f"c={c} {one[(name, c)]['docs_per_s']:.1f}/s" for c in concurrencies)
                                  for name in workers), flush=True)
            for name, (_, url) in workers.items():
                waste[name] = padding_waste(url)
                batch_sizes[name] = average_batch_size(url)
        finally:
            exit_codes = {name: stop_worker(proc) for name, (proc, _) in workers.items()}

    def per_round(f) -> float:
        return statistics.median(f(r) for r in rounds)

    summary: dict[str, Any] = {"raw_1x1_docs_per_s": per_round(lambda r: r["1x1"]["raw"]["docs_per_s"]),
                               "raw_2x1_docs_per_s": per_round(lambda r: r["2x1"]["raw"]["docs_per_s"]),
                               "raw_scaling_2x1_over_1x1": per_round(lambda r: r["2x1"]["raw"]["docs_per_s"] / r["1x1"]["raw"]["docs_per_s"]),
                               "raw_1x1_cpu_cores": per_round(lambda r: r["1x1"]["raw"]["cpu_cores"]),
                               "raw_2x1_cpu_cores": per_round(lambda r: r["2x1"]["raw"]["cpu_cores"]),
                               "batching": {"max_batch_size": args.max_batch_size, "max_batch_delay": args.max_batch_delay,
                                            "mixed_lengths": args.mixed_lengths, "padding_waste": waste,
                                            "average_batch_size": batch_sizes},
                               "http": []}
    print(f"\nmedians over {len(rounds)} rounds of {args.duration:g} s phases ({args.client} load generator); "
          f"batched: max_batch_size {args.max_batch_size}, max_batch_delay {args.max_batch_delay}")
    print(f"{'phase':<26}{'docs/s':>9}{'HTTP/raw':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'worker cores':>14}{'CPU eff.':>10}")
    for name in workers:
        for alloc, cs in (("1x1", concurrencies), ("2x1", scaling)):
            for c in cs:
                key = (name, c)
                row = {"worker": name, "allocations_x_threads": alloc, "concurrency": c,
                       "docs_per_s": per_round(lambda r: r[alloc][key]["docs_per_s"]),
                       "http_over_raw": per_round(lambda r: r[alloc][key]["docs_per_s"] / r[alloc]["raw"]["docs_per_s"]),
                       "p50_ms": per_round(lambda r: r[alloc][key]["p50_ms"]), "p99_ms": per_round(lambda r: r[alloc][key]["p99_ms"]),
                       "worker_cpu_cores": per_round(lambda r: r[alloc][key]["worker_cpu_cores"]),
                       # docs per CPU-second, worker vs raw: the serving overhead, whatever share of the machine we got
                       "cpu_efficiency_vs_raw": per_round(lambda r: (r[alloc][key]["docs_per_s"] / r[alloc][key]["worker_cpu_cores"])
                                                          / (r[alloc]["raw"]["docs_per_s"] / r[alloc]["raw"]["cpu_cores"])),
                       "errors": sum(r[alloc][key]["errors"] for r in rounds)}
                if alloc == "2x1":
                    row["scaling_over_1x1"] = per_round(lambda r: r["2x1"][key]["docs_per_s"] / r["1x1"][key]["docs_per_s"])
                if name != "unbatched":
                    base = ("unbatched", c)
                    row["throughput_over_unbatched"] = per_round(lambda r: r[alloc][key]["docs_per_s"] / r[alloc][base]["docs_per_s"])
                    row["p50_over_unbatched"] = per_round(lambda r: r[alloc][key]["p50_ms"] / r[alloc][base]["p50_ms"])
                summary["http"].append(row)
                print(f"{name + ' ' + alloc + ' c=' + str(c):<26}{row['docs_per_s']:>9.1f}{row['http_over_raw']:>10.2f}"
                      f"{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['errors']:>8}{row['worker_cpu_cores']:>14.2f}"
                      f"{row['cpu_efficiency_vs_raw']:>10.2f}")
    print(f"raw 1x1 {summary['raw_1x1_docs_per_s']:.1f} docs/s on {summary['raw_1x1_cpu_cores']:.2f} cores, "
          f"raw 2x1 {summary['raw_2x1_docs_per_s']:.1f} docs/s on {summary['raw_2x1_cpu_cores']:.2f} cores\n")

    def verdict(ok: bool) -> str:
        return "OK" if ok else "BELOW GOAL"

    for row in summary["http"]:
        if row["worker"] == "unbatched" and row["allocations_x_threads"] == "1x1" and row["concurrency"] >= 8:
            eff = row["http_over_raw"]
            print(f"unbatched HTTP/raw efficiency 1x1 at concurrency {row['concurrency']}: {eff:.2f} (goal >= 0.90) {verdict(eff >= 0.90)}")
    for row in summary["http"]:
        if row["worker"] == "unbatched" and "scaling_over_1x1" in row:
            ratio = row["scaling_over_1x1"]
            print(f"unbatched 2-lane/1-lane scaling over HTTP at concurrency {row['concurrency']}: {ratio:.2f} "
                  f"(goal >= 1.8 on 2 free cores) {verdict(ratio >= 1.8)}")
    for row in summary["http"]:
        if "throughput_over_unbatched" in row:
            line = (f"batched/unbatched {row['allocations_x_threads']} c={row['concurrency']}: throughput "
                    f"{row['throughput_over_unbatched']:.2f}, p50 {row['p50_over_unbatched']:.2f}")
            if row["allocations_x_threads"] == "1x1" and row["concurrency"] == 64:
                line += f" (goal throughput >= 1.5) {verdict(row['throughput_over_unbatched'] >= 1.5)}"
            if row["allocations_x_threads"] == "1x1" and row["concurrency"] == 1:
                line += f" (goal p50 <= 1.05) {verdict(row['p50_over_unbatched'] <= 1.05)}"
            print(line)
    for name in workers:
        w = waste[name]
        print(f"{name}: average batch size {batch_sizes[name]:.2f}, padding waste "
              f"{'n/a' if w is None else f'{100 * w:.1f} %'} of token positions")
    print(f"2-lane/1-lane scaling raw in-process: {summary['raw_scaling_2x1_over_1x1']:.2f}")
    print(f"(cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}; worker exit codes {exit_codes})")

    result = {
        "benchmark": "worker_throughput",
        "model": {"layers": args.layers, "hidden": args.hidden, "tokens": args.tokens},
        "duration_s": args.duration, "rounds": args.rounds, "client": args.client,
        "machine": {"cpu_count": os.cpu_count(), "loadavg_1m": os.getloadavg()[0], "python": platform.python_version(),
                    "torch": torch.__version__},
        "summary": summary,
        "per_round": [{alloc: {(k if isinstance(k, str) else f"{k[0]} c={k[1]}"): v for k, v in phases.items()}
                       for alloc, phases in r.items()} for r in rounds],
        "worker_exit_codes": exit_codes,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
