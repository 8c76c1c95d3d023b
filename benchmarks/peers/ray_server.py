"""Ray Serve serving the benchmark encoder on 127.0.0.1, in a Ray cluster private to this process.

    PEER_MODEL=model.pt python ray_server.py --port P --replicas N --tmp DIR

ray.init() starts the local cluster (GCS, raylet, workers) as children of this process with its
own temp dir, so stopping this process by PID (SIGTERM -> serve.shutdown + ray.shutdown) stops
exactly the cluster it started and nobody else's. Each replica gets 1 CPU and 1 torch thread;
the forward pass runs in the replica's thread pool so its event loop keeps taking requests.
Prints "READY" on stdout once the application answers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ray  # noqa: E402
from ray import serve  # noqa: E402
from starlette.requests import Request  # noqa: E402


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=64, max_queued_requests=-1)
class Encoder:
    def __init__(self, path: str) -> None:
        from common import load_model  # on the replica's sys.path through runtime_env below

        self.model = load_model(path)

    async def __call__(self, request: Request) -> dict:
        from common import embed

        body = await request.json()
        rows = await asyncio.get_running_loop().run_in_executor(None, embed, self.model, body["instances"])
        return {"predictions": rows}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--tmp", required=True, help="Ray's temp dir (private to this run)")
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    ray.init(num_cpus=args.replicas, include_dashboard=False, _temp_dir=args.tmp, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"PYTHONPATH": here, "OMP_NUM_THREADS": "1"}}, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(Encoder.options(num_replicas=args.replicas).bind(os.environ["PEER_MODEL"]), route_prefix="/")
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
