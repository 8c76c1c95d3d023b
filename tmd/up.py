"""`tmd up`: the whole system on one machine, in the foreground.

Starts the embedded control plane with virtual ML nodes, installs the CRDs, runs the operator
and the Elasticsearch-compatible API as supervised child processes, and (unless --no-demo)
imports and deploys a small NER model through that API, exactly as eland or a curl script
would. Ctrl-C stops everything; running it again with the same --data-dir brings every model
and deployment back.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

DEMO_MODEL_ID = "demo_ner"
PART_SIZE = 1 << 20
SHIM_START_TIMEOUT = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path(".tmd"), help="state directory (default .tmd)")
    parser.add_argument("--nodes", type=int, default=3, help="virtual ML nodes (default 3)")
    parser.add_argument("--node-cpus", default="2", help="allocatable CPUs per node (default 2)")
    parser.add_argument("--node-memory", default="4Gi", help="allocatable memory per node (default 4Gi)")
    parser.add_argument("--es-port", type=int, default=9200, help="Elasticsearch-compatible API port (default 9200)")
    parser.add_argument("--kube-port", type=int, default=None,
                        help="Kubernetes API port (default: the previous run's, else any free port)")
    parser.add_argument("--no-demo", action="store_true", help="do not import and deploy the demo model")
    parser.add_argument("--operators", type=int, default=1,
                        help="operator replicas; more than one elect an active one through a Lease (default 1)")


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


@dataclass
class Child:
    """A supervised child process: restarted if it dies while the stack is up."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    stopping: bool = field(default=False)

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(*self.argv, env=self.env, stdout=log, stderr=log,
                                                         stdin=asyncio.subprocess.DEVNULL)
        log.close()

    async def supervise(self) -> None:
        while not self.stopping:
            assert self.proc is not None
            code = await self.proc.wait()
            if self.stopping:
                return
            self.restarts += 1
            print(f"!! {self.name} exited with {code}; restarting (see {self.log_path})", file=sys.stderr, flush=True)
            await asyncio.sleep(min(30, 2 ** min(self.restarts, 5)))
            await self.start()

    async def stop(self, grace: float = 20.0) -> None:
        self.stopping = True
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def _install_crds(kubeconfig: Path) -> None:
    """Create or update the CRDs (generated from tmd.api, so they always match this version)."""
    import yaml
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    from tmd.api.crds import render_all

    api = client.ApiextensionsV1Api(config.new_client_from_config(str(kubeconfig)))
    for text in render_all().values():
        crd = yaml.safe_load(text)
        name = crd["metadata"]["name"]
        try:
            current = api.read_custom_resource_definition(name)
            crd["metadata"]["resourceVersion"] = current.metadata.resource_version
            api.replace_custom_resource_definition(name, client.V1CustomResourceDefinition.from_dict(crd))
        except ApiException as err:
            if err.status != 404:
                raise
            api.create_custom_resource_definition(client.V1CustomResourceDefinition.from_dict(crd))


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")
        time.sleep(0.3)


def import_demo_model(es_url: str) -> None:
    """Put and deploy the demo model through the Elasticsearch API, with progress."""
    from tmd.tinymodels import ner

    with httpx.Client(base_url=es_url, timeout=180.0) as es:
        if es.get(f"/_ml/trained_models/{DEMO_MODEL_ID}").status_code == 404:
            step(f"importing demo model [{DEMO_MODEL_ID}]")
            tiny = ner(DEMO_MODEL_ID)
            config = {k: v for k, v in tiny.config.items() if k != "model_id"}
            config["description"] = "tmd demo: tags people, places, organisations (a tiny model built locally)"
            _check(es.put(f"/_ml/trained_models/{DEMO_MODEL_ID}", json=config))
            definition = tiny.definition()
            parts = [definition[i:i + PART_SIZE] for i in range(0, len(definition), PART_SIZE)]
            for number, part in enumerate(parts):
                _check(es.put(f"/_ml/trained_models/{DEMO_MODEL_ID}/definition/{number}", json={
                    "definition": base64.b64encode(part).decode(), "total_definition_length": len(definition),
                    "total_parts": len(parts)}))
                print(f"    definition part {number + 1}/{len(parts)} ({len(part)} bytes)", flush=True)
            _check(es.put(f"/_ml/trained_models/{DEMO_MODEL_ID}/vocabulary", json=tiny.vocabulary))
        stats = es.get(f"/_ml/trained_models/{DEMO_MODEL_ID}/_stats").json()
        deployed = any("deployment_stats" in s for s in stats.get("trained_model_stats", []))
        if not deployed:
            step(f"starting deployment [{DEMO_MODEL_ID}] (waits for the first worker to be ready)")
            _check(es.post(f"/_ml/trained_models/{DEMO_MODEL_ID}/deployment/_start",
                           params={"wait_for": "started", "timeout": "120s", "number_of_allocations": "2"}))


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                           f"{response.text[:500]}")


def next_steps(es_url: str, kubeconfig: Path) -> str:
    return f"""
tmd is up.
  Elasticsearch-compatible API: {es_url}
  console (open in a browser):  {es_url}/_tmd/console
  kubeconfig:                   {kubeconfig}

Try:
  curl -s -XPOST {es_url}/_ml/trained_models/{DEMO_MODEL_ID}/_infer -H 'Content-Type: application/json' \\
       -d '{{"docs": [{{"input": "Josh lives in Berlin and works for Elastic"}}]}}'
  kubectl --kubeconfig {kubeconfig} get tmd,pods -o wide
  tmd status --es-url {es_url}

  python -c "from elasticsearch import Elasticsearch; es = Elasticsearch('{es_url}')
print(es.ml.infer_trained_model(model_id='{DEMO_MODEL_ID}', docs=[{{'input': 'Maria visited Paris'}}]))"

Ctrl-C stops everything; `tmd up` with the same --data-dir brings it all back.
"""


async def serve(args: argparse.Namespace) -> int:
    from tmd.localkube.cluster import Cluster, ClusterConfig

    data_dir = args.data_dir.resolve()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    step(f"starting the control plane with {args.nodes} ML nodes x {args.node_cpus} CPUs ({data_dir})")
    cluster = Cluster(ClusterConfig(data_dir=data_dir / "localkube", nodes=args.nodes, node_cpus=str(args.node_cpus),
                                    node_memory=args.node_memory, port=args.kube_port))
    await cluster.start()
    kubeconfig = cluster.kubeconfig.resolve()
    children: list[Child] = []
    try:
        step("installing the CRDs")
        await asyncio.to_thread(_install_crds, kubeconfig)
        package_root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "KUBECONFIG": str(kubeconfig),
               "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        worker_env = {"PYTHONPATH": package_root, "TMD_WORK_DIR": str(data_dir / "work")}
        operator_env = {**env, "TMD_WORKER_COMMAND": f"{sys.executable} -m tmd worker",
                        "TMD_WORKER_ENV": json.dumps(worker_env)}
        es_url = f"http://127.0.0.1:{args.es_port}"
        children = [*operator_children(args.operators, operator_env, data_dir / "logs"),
            Child("shim", [sys.executable, "-m", "tmd", "shim", "--host", "127.0.0.1", "--port", str(args.es_port),
                           "--store", str(data_dir / "store")],
                  env, data_dir / "logs" / "shim.log"),
        ]
        for child in children:
            step(f"starting the {child.name} (log: {child.log_path})")
            await child.start()
        supervisors = [asyncio.create_task(child.supervise()) for child in children]
        step(f"waiting for the Elasticsearch-compatible API on {es_url}")
        await asyncio.to_thread(_wait_http, es_url + "/", SHIM_START_TIMEOUT)
        if not args.no_demo:
            await asyncio.to_thread(import_demo_model, es_url)
        print(next_steps(es_url, kubeconfig), flush=True)
        await stop.wait()
        step("stopping")
        for task in supervisors:
            task.cancel()
        return 0
    except (OSError, TimeoutError, RuntimeError, httpx.HTTPError) as err:
        print(f"tmd up: error: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        for child in reversed(children):
            await child.stop()
        await cluster.stop()


def operator_children(replicas: int, env: dict[str, str], logs: Path) -> list[Child]:
    """One operator, or `replicas` of them with leader election (one active, the others standing by)."""
    if replicas == 1:
        return [Child("operator", [sys.executable, "-m", "tmd", "operator"], env, logs / "operator.log")]
    return [Child(f"operator-{i}", [sys.executable, "-m", "tmd", "operator"],
                  {**env, "TMD_LEADER_ELECTION": "true", "POD_NAME": f"operator-{i}"}, logs / f"operator-{i}.log")
            for i in range(1, replicas + 1)]


def run(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        print("tmd up: error: --nodes must be at least 1", file=sys.stderr)
        return 2
    if args.operators < 1:
        print("tmd up: error: --operators must be at least 1", file=sys.stderr)
        return 2
    return asyncio.run(serve(args))
