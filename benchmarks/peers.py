"""Against the peers: tmd's worker (direct and through the shim), KServe, TorchServe, Ray Serve,
MLServer and PyTriton serving the same TorchScript model on the same cores, driven by the same
load generator; each with its own dynamic batching on where it has it (the "-batched" servers,
MLServer's adaptive batching, Triton's dynamic batcher), so tmd meets each peer at its best.

Every server runs the 4-layer encoder of benchmarks/worker_throughput.py (tmd.tinymodels'
benchmark_encoder, 64 tokens), saved once as TorchScript, with 1 torch thread per replica and
1 replica (allocation) by default. Every request carries one document:

* tmd (worker /infer, shim /_ml/trained_models/<id>/_infer): the text, tokenized by the worker
  (its cost per document is measured in-process and printed beside the table);
* the peers: the same document's 64 token ids as KServe-v1 JSON {"instances": [[ids]]} (MLServer
  and PyTriton: an Open Inference Protocol V2 INT64 tensor); their handlers (benchmarks/peers/)
  build the model's four inputs exactly as tmd's worker does.

Batching servers share --batch-size (default tmd's max_batch_size); the peers wait at most
--peer-batch-delay-ms for a batch to fill, tmd uses its own default max_batch_delay (take what
is queued). The load generator is tests/faults/load.py's aiohttp closed loop (concurrency 1, 8,
64) and then its open loop at fixed offered rates (--rates: requests sent on schedule whatever
the answers, so the latency at each rate shows where a server saturates), after a warm-up, in
this process, on the same cores. All servers of one replica count are started side
by side and take turns, --rounds rounds: a server's turn measures the raw in-process model (no
HTTP, on as many threads as the server has replicas, while the servers idle) and then each
concurrency for --duration seconds. Ratios are per turn (server throughput / raw throughput,
server p50/p99 / the raw forward pass's p50/p99), medians over the rounds reported.
"server cores" is the CPU time of the server's processes over the phase's wall time; "CPU eff."
is requests per server CPU-second over raw inferences per CPU-second: the serving overhead,
whatever share of a shared machine the phase got.

Peers live in their own virtual environments under .peers/ (`make peers-venvs`), never in tmd's
dependencies; a peer whose environment is missing is skipped with a message saying how to create
it. Every server binds 127.0.0.1, and by default the whole run happens in a private network
namespace (`unshare --net`), so nothing can be reached from outside even where a peer's
defaults bind all interfaces. Every process started is stopped by PID at the end.

Writes benchmarks/results/peers.json and, when .peers/plot has matplotlib, docs/benchmarks-peers.png.

    python benchmarks/peers.py [--duration 4] [--rounds 3] [--servers tmd-worker,tmd-worker-batched,...] [--rates 50,100]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ipaddress
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / "benchmarks"
PEER_SCRIPTS = BENCH_DIR / "peers"
sys.path[:0] = [str(REPO_ROOT), str(BENCH_DIR)]  # run from a checkout without installing tmd

import httpx  # noqa: E402
import torch  # noqa: E402

from tests.faults.load import Record, closed_loop, open_loop  # noqa: E402
from tmd.api.deployment import DEFAULT_MAX_BATCH_DELAY, DEFAULT_MAX_BATCH_SIZE  # noqa: E402
from worker_throughput import RawModel, build_model_dir, make_texts, start_worker, stop_worker  # noqa: E402

# Each server as it runs by default, and -- where it has dynamic batching -- with it on ("-batched").
# tmd's shim runs the deployment with tmd's defaults, which batch.
SERVERS = ("tmd-worker", "tmd-worker-batched", "tmd-shim", "kserve", "torchserve", "torchserve-batched", "ray",
           "ray-batched", "mlserver", "pytriton")
PEER_VENV = {"kserve": "kserve", "torchserve": "torchserve", "torchserve-batched": "torchserve", "ray": "ray",
             "ray-batched": "ray", "mlserver": "mlserver", "pytriton": "pytriton"}
NETNS_ENV = "TMD_PEERS_NETNS"


# --- processes ----------------------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    """PIDs below `pid` in the process tree (Linux /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu_seconds(roots: list[int]) -> float:
    """User + system CPU seconds of the processes under `roots` (themselves included)."""
    total = 0.0
    for pid in {p for r in roots for p in [r, *descendants(r)]}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def stop_tree(proc: subprocess.Popen, grace: float = 30.0) -> int:
    """SIGTERM the server, then SIGTERM / SIGKILL whatever it left of the processes it started."""
    pids = descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        alive = [p for p in pids if Path(f"/proc/{p}").exists()]
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _zombie(p)]
    return code


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True


def listening_addresses(roots: list[int]) -> list[str]:
    """The TCP addresses the processes under `roots` listen on (/proc/net/tcp{,6}), to show each binds loopback."""
    inodes = set()
    for pid in {p for r in roots for p in [r, *descendants(r)]}:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    found = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:  # 0A: LISTEN
                    hex_ip, hex_port = parts[1].split(":")
                    raw = bytes.fromhex(hex_ip)
                    # /proc prints the address as host-order 32-bit words
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                    found.add(f"{ipaddress.ip_address(words)}:{int(hex_port, 16)}")
    return sorted(found)


def loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_answering(url: str, body: Any, proc: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    """Until POST url answers 200 (the model is loaded and serving), or the server died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.post(url, json=body, timeout=10).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"not answering after {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


@dataclass
class Target:
    """A started server: where to send what, and whose CPU time to count."""

    url: str
    body: Any
    pids: list[int]
    carries: str
    notes: list[str] = field(default_factory=list)


def peer_python(peers_dir: Path, name: str) -> Path:
    return peers_dir / PEER_VENV[name] / "bin" / "python"


def peer_env(model_pt: Path, tmp: Path) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
            "PEER_MODEL": str(model_pt), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TMPDIR": str(tmp)}


# --- the servers --------------------------------------------------------------------------

@contextlib.contextmanager
def serve_tmd_worker(ctx: "Context", replicas: int, batched: bool = False) -> Iterator[Target]:
    flags = ("--max-batch-size", str(ctx.batch_size), "--max-batch-delay", ctx.tmd_batch_delay) if batched \
        else ("--max-batch-size", "1")
    proc, url = start_worker(ctx.model_dir, allocations=replicas, batching=flags)
    try:
        yield Target(url + "/infer", ctx.tmd_body, [proc.pid], "text (tokenized by the worker)",
                     [f"tmd worker --allocations {replicas} --threads 1 --cache-size 0 --queue-capacity 10000 "
                      + " ".join(flags)])
    finally:
        stop_worker(proc)


@contextlib.contextmanager
def serve_tmd_shim(ctx: "Context", replicas: int) -> Iterator[Target]:
    """localkube + the operator + the shim, as benchmarks/shim_overhead.py runs them; one worker pod."""
    from tests.operator.e2e import worker_pid
    from tests.shim.support import ShimProcess, ordered_parts, start_operator
    from tmd.localkube.testing import local_cluster, run_kubectl

    # the very files every other server loads: the TorchScript bytes, config and vocabulary
    config = json.loads((ctx.model_dir / "config.json").read_text())
    vocabulary = json.loads((ctx.model_dir / "vocabulary.json").read_text())
    definition = ctx.model_pt.read_bytes()
    tmp = Path(tempfile.mkdtemp(prefix="shim-", dir=ctx.tmp))
    with local_cluster(tmp / "cluster", nodes=1, node_cpus="2", node_memory="4Gi") as cluster:
        run_kubectl(cluster, "apply", "-f", str(REPO_ROOT / "crds"))
        run_kubectl(cluster, "wait", "--for=condition=established", "--timeout=30s",
                    "crd/trainedmodeldeployments.ml.tmd.dev")
        port = free_port()
        operator = start_operator(cluster.kubeconfig, tmp / "operator.log", port)
        shim = None
        try:
            shim = ShimProcess(cluster.kubeconfig, tmp / "store", tmp / "shim.log", "--no-auth",
                               "--worker-port", str(port)).start()
            es = httpx.Client(base_url=shim.url, timeout=120)
            base = f"/_ml/trained_models/{config['model_id']}"
            es.put(base, json={k: v for k, v in config.items() if k != "model_id"}).raise_for_status()
            for part, chunk in ordered_parts(definition, 2):
                es.put(f"{base}/definition/{part}", json={"definition": base64.b64encode(chunk).decode(),
                                                          "total_definition_length": len(definition),
                                                          "total_parts": 2}).raise_for_status()
            es.put(f"{base}/vocabulary", json=vocabulary).raise_for_status()
            es.post(f"{base}/deployment/_start", params={
                "wait_for": "started", "cache_size": "0", "timeout": "120s", "number_of_allocations": str(replicas),
                "threads_per_allocation": "1", "queue_capacity": "10000"}).raise_for_status()
            pods = json.loads(run_kubectl(cluster, "get", "pods", "-l", "ml.tmd.dev/role=worker", "-o",
                                          "json").stdout)["items"]
            pod_pid = worker_pid(pods[0]["status"]["podIP"], config["model_id"])
            field_name = config["input"]["field_names"][0]
            body = {"docs": [{field_name: ctx.text}]}
            yield Target(shim.url + base + "/_infer", body, [shim.proc.pid] + ([pod_pid] if pod_pid else []),
                         "text (tokenized by the worker)",
                         [f"shim -> worker pod on localkube, {replicas} allocation(s) x 1 thread, cache_size 0, "
                          f"tmd_batching defaults (max_batch_size {DEFAULT_MAX_BATCH_SIZE}, "
                          f"max_batch_delay {DEFAULT_MAX_BATCH_DELAY})",
                          "server cores = shim + worker pod (not localkube or the operator)"])
            es.post(f"{base}/deployment/_stop").raise_for_status()
        finally:
            if shim is not None and shim.proc is not None:
                shim.stop()
            operator.stop()


@contextlib.contextmanager
def serve_kserve(ctx: "Context", replicas: int) -> Iterator[Target]:
    tmp = Path(tempfile.mkdtemp(prefix="kserve-", dir=ctx.tmp))
    port, log = free_port(), tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(peer_python(ctx.peers_dir, "kserve")), str(PEER_SCRIPTS / "kserve_server.py"),
                                 "--http_port", str(port), "--workers", str(replicas), "--enable_grpc", "false"],
                                env=peer_env(ctx.model_pt, tmp), cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/v1/models/enc:predict"
        wait_answering(url, ctx.peer_body, proc, log)
        yield Target(url, ctx.peer_body, [proc.pid], "64 token ids (KServe v1 instances)",
                     [f"kserve.ModelServer(workers={replicas}), sync predict()"])
    finally:
        stop_tree(proc)


TORCHSERVE_CONFIG = """\
inference_address=http://127.0.0.1:{inference}
management_address=http://127.0.0.1:{management}
metrics_address=http://127.0.0.1:{metrics}
grpc_inference_address=127.0.0.1
grpc_management_address=127.0.0.1
grpc_inference_port={grpc_inference}
grpc_management_port={grpc_management}
default_workers_per_model={workers}
job_queue_size=10000
disable_token_authorization=true
disable_system_metrics=true
default_response_timeout=120
"""
# TorchServe's dynamic batching: the model is registered from config.properties with its batch settings.
TORCHSERVE_BATCHED_MODEL = (
    'load_models=enc.mar\n'
    'models={{"enc": {{"1.0": {{"defaultVersion": true, "marName": "enc.mar", "minWorkers": {workers}, '
    '"maxWorkers": {workers}, "batchSize": {batch_size}, "maxBatchDelay": {delay_ms}, "responseTimeout": 120}}}}}}\n')


@contextlib.contextmanager
def serve_torchserve(ctx: "Context", replicas: int, batched: bool = False) -> Iterator[Target]:
    tmp = Path(tempfile.mkdtemp(prefix="torchserve-", dir=ctx.tmp))
    bin_dir = peer_python(ctx.peers_dir, "torchserve").parent
    env = {**peer_env(ctx.model_pt, tmp), "LOG_LOCATION": str(tmp / "logs"), "METRICS_LOCATION": str(tmp / "logs"),
           "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    store = tmp / "model_store"
    store.mkdir()
    subprocess.run([str(bin_dir / "torch-model-archiver"), "--model-name", "enc", "--version", "1.0",
                    "--serialized-file", str(ctx.model_pt), "--handler", str(PEER_SCRIPTS / "torchserve_handler.py"),
                    "--extra-files", str(PEER_SCRIPTS / "common.py"), "--export-path", str(store)],
                   env=env, cwd=tmp, check=True, capture_output=True)
    ports = {k: free_port() for k in ("inference", "management", "metrics", "grpc_inference", "grpc_management")}
    config = TORCHSERVE_CONFIG.format(workers=replicas, **ports)
    models = ["--models", "enc=enc.mar"]
    if batched:
        config += TORCHSERVE_BATCHED_MODEL.format(workers=replicas, batch_size=ctx.batch_size,
                                                  delay_ms=ctx.peer_batch_delay_ms)
        models = []
    (tmp / "config.properties").write_text(config)
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(bin_dir / "torchserve"), "--start", "--foreground", "--ncs", "--disable-token-auth",
                                 "--model-store", str(store), *models, "--ts-config", str(tmp / "config.properties")],
                                env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{ports['inference']}/predictions/enc"
        wait_answering(url, ctx.peer_body, proc, log)
        yield Target(url, ctx.peer_body, [proc.pid], "64 token ids (KServe v1 instances)",
                     [f"torchserve {replicas} worker(s), batchSize {ctx.batch_size}, maxBatchDelay "
                      f"{ctx.peer_batch_delay_ms} ms" if batched else f"torchserve {replicas} worker(s), batch size 1",
                      "job_queue_size 10000"])
    finally:
        stop_tree(proc)


@contextlib.contextmanager
def serve_ray(ctx: "Context", replicas: int, batched: bool = False) -> Iterator[Target]:
    # a short private path: Ray's unix socket paths must stay under 107 characters
    tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    port, log = free_port(), tmp / "server.log"
    env = {**peer_env(ctx.model_pt, tmp), "RAY_USAGE_STATS_ENABLED": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    if batched:
        env.update(PEER_BATCH_SIZE=str(ctx.batch_size), PEER_BATCH_WAIT_MS=str(ctx.peer_batch_delay_ms))
    with log.open("wb") as out:
        proc = subprocess.Popen([str(peer_python(ctx.peers_dir, "ray")), str(PEER_SCRIPTS / "ray_server.py"),
                                 "--port", str(port), "--replicas", str(replicas), "--tmp", str(tmp / "ray")],
                                env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_answering(url, ctx.peer_body, proc, log)
        yield Target(url, ctx.peer_body, [proc.pid], "64 token ids (KServe v1 instances)",
                     [f"ray serve, {replicas} replica(s) x 1 CPU, max_ongoing_requests 64, "
                      "RAY_SERVE_THROUGHPUT_OPTIMIZED=1"
                      + (f", @serve.batch(max_batch_size={ctx.batch_size}, batch_wait_timeout_s="
                         f"{ctx.peer_batch_delay_ms / 1000:g})" if batched else ""),
                      "server cores include Ray's GCS, raylet, proxy, controller"])
    finally:
        stop_tree(proc, grace=60.0)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def serve_mlserver(ctx: "Context", replicas: int) -> Iterator[Target]:
    """MLServer with a custom runtime and its adaptive batching on (max_batch_size / max_batch_time)."""
    tmp = Path(tempfile.mkdtemp(prefix="mlserver-", dir=ctx.tmp))
    ports = {k: free_port() for k in ("http", "grpc", "metrics")}
    (tmp / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": ports["http"], "grpc_port": ports["grpc"], "metrics_port": ports["metrics"],
        "parallel_workers": replicas, "debug": False}))
    (tmp / "model-settings.json").write_text(json.dumps({
        "name": "enc", "implementation": "mlserver_runtime.Encoder", "max_batch_size": ctx.batch_size,
        "max_batch_time": ctx.peer_batch_delay_ms / 1000.0}))
    bin_dir = peer_python(ctx.peers_dir, "mlserver").parent
    env = {**peer_env(ctx.model_pt, tmp), "PYTHONPATH": str(PEER_SCRIPTS)}
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(bin_dir / "mlserver"), "start", str(tmp)], env=env, cwd=tmp, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{ports['http']}/v2/models/enc/infer"
        wait_answering(url, ctx.v2_body, proc, log)
        yield Target(url, ctx.v2_body, [proc.pid], "64 token ids (Open Inference Protocol V2 tensor)",
                     [f"mlserver, parallel_workers {replicas}, adaptive batching max_batch_size {ctx.batch_size}, "
                      f"max_batch_time {ctx.peer_batch_delay_ms / 1000:g} s"])
    finally:
        stop_tree(proc)


@contextlib.contextmanager
def serve_pytriton(ctx: "Context", replicas: int) -> Iterator[Target]:
    """PyTriton (Triton Inference Server with a Python model) with Triton's dynamic batching on."""
    tmp = Path(tempfile.mkdtemp(prefix="pytriton-", dir="/tmp"))
    ports = {k: free_port() for k in ("http", "grpc", "metrics")}
    env = {**peer_env(ctx.model_pt, tmp), "PEER_BATCH_SIZE": str(ctx.batch_size),
           "PEER_BATCH_DELAY_US": str(int(ctx.peer_batch_delay_ms * 1000)), "PEER_REPLICAS": str(replicas),
           **{f"PEER_{k.upper()}_PORT": str(v) for k, v in ports.items()}}
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(peer_python(ctx.peers_dir, "pytriton")), str(PEER_SCRIPTS / "pytriton_server.py")],
                                env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{ports['http']}/v2/models/enc/infer"
        wait_answering(url, ctx.v2_body, proc, log)
        yield Target(url, ctx.v2_body, [proc.pid], "64 token ids (Open Inference Protocol V2 tensor)",
                     [f"pytriton, {replicas} model instance(s), dynamic batching max_batch_size {ctx.batch_size}, "
                      f"max_queue_delay {ctx.peer_batch_delay_ms:g} ms"])
    finally:
        stop_tree(proc, grace=60.0)
        shutil.rmtree(tmp, ignore_errors=True)


STARTERS: dict[str, Callable[["Context", int], contextlib.AbstractContextManager[Target]]] = {
    "tmd-worker": serve_tmd_worker, "tmd-worker-batched": lambda c, n: serve_tmd_worker(c, n, batched=True),
    "tmd-shim": serve_tmd_shim, "kserve": serve_kserve,
    "torchserve": serve_torchserve, "torchserve-batched": lambda c, n: serve_torchserve(c, n, batched=True),
    "ray": serve_ray, "ray-batched": lambda c, n: serve_ray(c, n, batched=True),
    "mlserver": serve_mlserver, "pytriton": serve_pytriton}


# --- measuring ----------------------------------------------------------------------------

@dataclass
class Context:
    tmp: Path
    model_dir: Path
    model_pt: Path
    text: str
    tmd_body: dict
    peer_body: dict
    v2_body: dict
    peers_dir: Path
    batch_size: int = DEFAULT_MAX_BATCH_SIZE
    tmd_batch_delay: str = DEFAULT_MAX_BATCH_DELAY
    peer_batch_delay_ms: float = 5.0


def raw_phase(raw: RawModel, lanes: int, duration: float) -> dict[str, float]:
    """The raw model: throughput on `lanes` threads, and per-call latency on one thread."""
    result = raw.throughput(lanes, duration)
    times: list[float] = []
    with torch.inference_mode():
        stop = time.perf_counter() + min(duration, 2.0)
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            raw.model(*raw.inputs[0])
            times.append(time.perf_counter() - t0)
    times.sort()
    result.update(p50_ms=1000 * times[len(times) // 2], p99_ms=1000 * times[min(len(times) - 1, int(0.99 * len(times)))])
    return result


def load_phase(target: Target, concurrency: int, duration: float) -> dict[str, Any]:
    cpu0, t0 = tree_cpu_seconds(target.pids), time.perf_counter()
    record: Record = asyncio.run(closed_loop(target.url, target.body, clients=concurrency, duration=duration, timeout=60))
    elapsed = time.perf_counter() - t0
    cores = (tree_cpu_seconds(target.pids) - cpu0) / elapsed
    ok = record.latencies(200)
    statuses = {str(k): v for k, v in sorted(record.statuses().items(), key=str)}
    return {"concurrency": concurrency, "requests_per_s": len(ok) / elapsed, "ok": len(ok),
            "not_ok": len(record.answers) - len(ok), "statuses": statuses, "seconds": elapsed,
            "p50_ms": 1000 * (record.percentile(0.5) or float("nan")),
            "p99_ms": 1000 * (record.percentile(0.99) or float("nan")), "server_cores": cores}


def open_phase(target: Target, rate: float, duration: float) -> dict[str, Any]:
    """Requests at a fixed offered rate whatever the answers: the latency a server gives under that load."""
    cpu0, t0 = tree_cpu_seconds(target.pids), time.perf_counter()
    record: Record = asyncio.run(open_loop(target.url, target.body, rate=rate, duration=duration, timeout=30,
                                           max_in_flight=1000))
    elapsed = time.perf_counter() - t0
    ok = record.latencies(200)
    return {"rate": rate, "requests_per_s": len(ok) / elapsed, "ok": len(ok),
            "not_ok": len(record.answers) - len(ok), "seconds": elapsed,
            "p50_ms": 1000 * (record.percentile(0.5) or float("nan")),
            "p99_ms": 1000 * (record.percentile(0.99) or float("nan")),
            "server_cores": (tree_cpu_seconds(target.pids) - cpu0) / elapsed}


def tokenization_cost(model_dir: Path, text: str, n: int = 300) -> float:
    """Microseconds the worker's pipeline spends turning this document into model inputs."""
    from tmd.worker.nlp import load_pipeline

    config = json.loads((model_dir / "config.json").read_text())
    pipeline = load_pipeline(config, json.loads((model_dir / "vocabulary.json").read_text()))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        pipeline.prepare({"input": text})
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def start_server(stack: contextlib.ExitStack, ctx: Context, name: str, replicas: int,
                 args: argparse.Namespace) -> tuple[Target, dict[str, Any]]:
    """Start one server (stopped when `stack` closes), check where it listens, warm it up."""
    block: dict[str, Any] = {"server": name, "replicas": replicas, "rounds": []}
    started = time.monotonic()
    target = stack.enter_context(STARTERS[name](ctx, replicas))
    block["startup_s"] = time.monotonic() - started
    block["carries"], block["notes"] = target.carries, target.notes
    block["listening"] = listening_addresses(target.pids)
    others = [a for a in block["listening"] if not loopback(a)]
    where = " (inside the private network namespace: its only interface is loopback)" if os.environ.get(NETNS_ENV) else ""
    print(f"  {name} x{replicas} up in {block['startup_s']:.0f} s, listening on {len(block['listening'])} TCP "
          f"address(es)" + (f"; not bound to loopback: {', '.join(others)}{where}" if others else ", all loopback"),
          flush=True)
    asyncio.run(closed_loop(target.url, target.body, clients=8, duration=args.warmup, timeout=60))
    return target, block


def measure_round(raw: RawModel, target: Target, block: dict[str, Any], args: argparse.Namespace) -> None:
    """The raw model on as many threads as the server has replicas (the server idling), then each
    concurrency: adjacent in time, so the other jobs of a shared machine weigh on both alike."""
    one: dict[str, Any] = {"loadavg": os.getloadavg(), "raw": raw_phase(raw, block["replicas"], args.duration)}
    one["http"] = [load_phase(target, c, args.duration) for c in args.concurrency]
    one["open"] = [open_phase(target, rate, args.duration) for rate in args.rates]
    block["rounds"].append(one)
    print(f"  {block['server']} x{block['replicas']}: raw {one['raw']['docs_per_s']:.1f}/s; " + ", ".join(
        f"c={h['concurrency']} {h['requests_per_s']:.1f}/s" for h in one["http"]) + "; " + ", ".join(
        f"offered {o['rate']:g}/s: p50 {o['p50_ms']:.0f} ms p99 {o['p99_ms']:.0f} ms" for o in one["open"]), flush=True)


def summarize(block: dict[str, Any], concurrencies: list[int]) -> list[dict[str, Any]]:
    """Medians over the rounds of each figure and of each per-round ratio to the raw model."""
    rounds = block["rounds"]
    rows = []
    for i, c in enumerate(concurrencies):
        def med(f: Callable[[dict, dict], float]) -> float:
            return statistics.median(f(r["http"][i], r["raw"]) for r in rounds)

        rows.append({
            "server": block["server"], "replicas": block["replicas"], "concurrency": c,
            "requests_per_s": med(lambda h, _: h["requests_per_s"]),
            "throughput_ratio": med(lambda h, raw: h["requests_per_s"] / raw["docs_per_s"]),
            "p50_ms": med(lambda h, _: h["p50_ms"]), "p99_ms": med(lambda h, _: h["p99_ms"]),
            "p50_ratio": med(lambda h, raw: h["p50_ms"] / raw["p50_ms"]),
            "p99_ratio": med(lambda h, raw: h["p99_ms"] / raw["p99_ms"]),
            "not_ok": sum(r["http"][i]["not_ok"] for r in rounds),
            "server_cores": med(lambda h, _: h["server_cores"]),
            # requests per server CPU-second against inferences per raw CPU-second: the serving
            # overhead, whatever share of the shared machine the phase got
            "cpu_efficiency": med(lambda h, raw: (h["requests_per_s"] / h["server_cores"])
                                  / (raw["docs_per_s"] / raw["cpu_cores"]) if h["server_cores"] > 0 else float("nan")),
            "raw_docs_per_s": statistics.median(r["raw"]["docs_per_s"] for r in rounds),
            "raw_p50_ms": statistics.median(r["raw"]["p50_ms"] for r in rounds),
            "raw_p99_ms": statistics.median(r["raw"]["p99_ms"] for r in rounds)})
    for i, rate in enumerate(o["rate"] for o in (rounds[0].get("open") or [])):
        def med_open(key: str) -> float:
            return statistics.median(r["open"][i][key] for r in rounds)

        rows.append({"server": block["server"], "replicas": block["replicas"], "concurrency": None,
                     "offered_per_s": rate, "requests_per_s": med_open("requests_per_s"),
                     "p50_ms": med_open("p50_ms"), "p99_ms": med_open("p99_ms"),
                     "not_ok": sum(r["open"][i]["not_ok"] for r in rounds), "server_cores": med_open("server_cores")})
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| server | replicas | concurrency | req/s | / raw | p50 ms | p99 ms | p50 / raw | p99 / raw | non-200 "
             "| server cores | CPU eff. |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in [r for r in rows if r["concurrency"] is not None]:
        lines.append(f"| {r['server']} | {r['replicas']} | {r['concurrency']} | {r['requests_per_s']:.1f} | "
                     f"{r['throughput_ratio']:.2f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['p50_ratio']:.1f} | "
                     f"{r['p99_ratio']:.1f} | {r['not_ok']} | {r['server_cores']:.2f} | {r['cpu_efficiency']:.2f} |")
    opened = [r for r in rows if r["concurrency"] is None]
    if opened:
        lines += ["", "Open loop (requests sent at a fixed rate whatever the answers):", "",
                  "| server | replicas | offered req/s | answered 200/s | p50 ms | p99 ms | non-200 | server cores |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['server']} | {r['replicas']} | {r['offered_per_s']:g} | {r['requests_per_s']:.1f} | "
                  f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['not_ok']} | {r['server_cores']:.2f} |" for r in opened]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------

def enter_private_network(argv: list[str]) -> int | None:
    """Re-run this script in a new network namespace holding only loopback; None if that is impossible."""
    unshare = shutil.which("unshare")
    if not unshare:
        return None
    inner = "ip link set lo up && exec " + shlex.join([sys.executable, str(Path(__file__).resolve()), *argv])
    user_ns = [] if os.geteuid() == 0 else ["--map-root-user"]
    probe = subprocess.run([unshare, "--net", *user_ns, "sh", "-c", "ip link set lo up"], capture_output=True)
    if probe.returncode != 0:
        return None
    return subprocess.call([unshare, "--net", *user_ns, "sh", "-c", inner], env={**os.environ, NETNS_ENV: "1"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measured phase (default 4)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up load per server (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server; medians reported (default 3)")
    parser.add_argument("--concurrency", default="1,8,64", help="closed-loop client counts")
    parser.add_argument("--rates", default="50,100,150,200",
                        help="open-loop offered rates, requests per second ('' for none)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                        help=f"most requests per forward pass for every batching server (default {DEFAULT_MAX_BATCH_SIZE})")
    parser.add_argument("--tmd-batch-delay", default=DEFAULT_MAX_BATCH_DELAY,
                        help=f"tmd-worker-batched's max_batch_delay (default {DEFAULT_MAX_BATCH_DELAY}, tmd's default)")
    parser.add_argument("--peer-batch-delay-ms", type=float, default=5.0,
                        help="the peers' batch wait: TorchServe maxBatchDelay, Ray batch_wait_timeout_s, MLServer "
                             "max_batch_time, Triton max_queue_delay (default 5 ms)")
    parser.add_argument("--replicas", default="1", help="replicas (allocations x 1 thread) to run, e.g. 1,2")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"from {','.join(SERVERS)}")
    parser.add_argument("--peers-dir", default=str(REPO_ROOT / ".peers"))
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--output", default=str(BENCH_DIR / "results" / "peers.json"))
    parser.add_argument("--plot", default=str(REPO_ROOT / "docs" / "benchmarks-peers.png"))
    parser.add_argument("--no-netns", action="store_true", help="run in this network namespace")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.rates = [float(r) for r in args.rates.split(",") if r]
    replicas = [int(r) for r in args.replicas.split(",")]
    servers = [s for s in args.servers.split(",") if s]
    unknown = [s for s in servers if s not in STARTERS]
    if unknown:
        parser.error(f"unknown server(s) {unknown}; choose from {','.join(SERVERS)}")

    netns = os.environ.get(NETNS_ENV) == "1"
    if not args.no_netns and not netns:
        code = enter_private_network(sys.argv[1:])
        if code is not None:
            return code
        print("unshare --net is not available here: running in this network namespace (servers bind 127.0.0.1)")

    peers_dir = Path(args.peers_dir)
    skipped: dict[str, str] = {}
    for ray_server in [s for s in servers if s.startswith("ray") and not netns]:
        # Ray's agents and workers listen on 0.0.0.0, :: and the node's address whatever
        # _node_ip_address says (seen with ray 2.x): only a private namespace keeps them in.
        skipped[ray_server] = "Ray Serve binds all interfaces; it runs only in a private network namespace (drop --no-netns)"
        print(f"skipping {ray_server}: {skipped[ray_server]}")
    for name in [s for s in servers if s not in skipped]:
        if name in PEER_VENV and not peer_python(peers_dir, name).exists():
            skipped[name] = (f"no virtual environment at {peers_dir / PEER_VENV[name]}: create it with "
                             f"`make peers-venvs PEERS={peers_dir}`")
            print(f"skipping {name}: {skipped[name]}")
    servers = [s for s in servers if s not in skipped]

    torch.set_num_threads(1)
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"uptime: {uptime_before}", flush=True)
    blocks, failed = [], {}
    with tempfile.TemporaryDirectory(prefix="tmd-peers-") as tmp_name:
        tmp = Path(tmp_name)
        model_dir = build_model_dir(tmp / "model", 4, 256, args.tokens)
        text = make_texts(1, args.tokens)[0]
        raw = RawModel(model_dir, [text] * 3)  # the same document every call, as every request carries
        ids = raw.inputs[0][0][0].tolist()
        ctx = Context(tmp, model_dir, model_dir / "model.pt", text, {"docs": [{"input": text}]},
                      {"instances": [ids]},
                      {"inputs": [{"name": "input_ids", "shape": [1, len(ids)], "datatype": "INT64", "data": ids}]},
                      peers_dir, args.batch_size, args.tmd_batch_delay, args.peer_batch_delay_ms)
        tokenize_us = tokenization_cost(model_dir, text)
        model_bytes = ctx.model_pt.stat().st_size
        print(f"one document: {len(text)} characters -> {len(ids)} token ids; worker tokenization "
              f"{tokenize_us:.0f} us per document", flush=True)
        # All servers of one replica count run side by side and take turns round by round, so a
        # change in the machine's other load falls on every server rather than on one.
        for n in replicas if servers else []:
            with contextlib.ExitStack() as stack:
                live: list[tuple[Target, dict[str, Any]]] = []
                for name in servers:
                    print(f"--- starting {name}, {n} replica(s)", flush=True)
                    try:
                        live.append(start_server(stack, ctx, name, n, args))
                    except Exception as err:  # a peer that does not start is reported, not faked
                        failed[f"{name} x{n}"] = f"{type(err).__name__}: {str(err)[-1500:]}"
                        print(f"{name} x{n} failed: {failed[f'{name} x{n}']}", flush=True)
                for r in range(args.rounds):
                    print(f"--- round {r + 1} of {args.rounds}, {n} replica(s)", flush=True)
                    for target, block in live:
                        measure_round(raw, target, block, args)
                blocks.extend(block for _, block in live)
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    rows = [row for block in blocks for row in summarize(block, args.concurrency)]
    print()
    print(markdown_table(rows) if rows else "no server was measured")
    print(f"\nratios (medians of per-round ratios): throughput / the raw in-process model on as many threads as "
          f"replicas, measured in the same round; latency / the raw forward pass's p50 and p99; CPU eff. = requests "
          f"per server CPU-second / raw inferences per CPU-second. tmd requests carry text (tokenization "
          f"{tokenize_us:.0f} us/doc inside the worker), peers carry token ids.")
    for name, why in {**skipped, **failed}.items():
        print(f"not measured: {name}: {why.splitlines()[0] if why else ''}")
    print(f"cpu count {os.cpu_count()}; uptime before: {uptime_before}; after: {uptime_after}")

    result = {
        "benchmark": "peers", "model": {"layers": 4, "hidden": 256, "tokens": args.tokens, "torchscript_bytes": model_bytes},
        "request": {"tmd": "one document of text", "peers": f"{len(ids)} token ids", "text_chars": len(text),
                    "tmd_tokenization_us_per_doc": tokenize_us},
        "duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds, "concurrency": args.concurrency,
        "rates": args.rates, "batching": {"batch_size": args.batch_size, "tmd_max_batch_delay": args.tmd_batch_delay,
                                          "peer_batch_delay_ms": args.peer_batch_delay_ms},
        "private_network_namespace": netns,
        "machine": {"cpu_count": os.cpu_count(), "uptime_before": uptime_before, "uptime_after": uptime_after,
                    "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()},
        "summary": rows, "blocks": blocks, "skipped": skipped, "failed": failed,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    plot_python = peers_dir / "plot" / "bin" / "python"
    if rows and plot_python.exists():
        subprocess.run([str(plot_python), str(PEER_SCRIPTS / "plot.py"), str(out), args.plot], check=False)
    elif rows:
        print(f"no plot: {plot_python} is missing (make peers-venvs creates it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
