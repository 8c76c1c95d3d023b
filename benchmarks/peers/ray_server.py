"""Ray Serve serving the benchmark encoder on 127.0.0.1, in a Ray cluster private to this process.

    PEER_MODEL=model.pt [PEER_BATCH_SIZE=B PEER_BATCH_WAIT_MS=W] python ray_server.py --port P --replicas N --tmp DIR

ray.init() starts the local cluster (GCS, raylet, workers) as children of this process with its
own temp dir, so stopping this process by PID (SIGTERM -> serve.shutdown + ray.shutdown) stops
exactly the cluster it started and nobody else's. Each replica gets 1 CPU and 1 torch thread;
the forward pass runs in the replica's thread pool so its event loop keeps taking requests.
With PEER_BATCH_SIZE > 1 the replica batches with Ray Serve's own `@serve.batch` (up to B requests,
waiting at most W ms): one forward pass over their rows. Prints "READY" on stdout once the
application answers.
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


# read when this module is imported, by the driver and by each replica (runtime_env passes them on)
BATCH_SIZE = int(os.environ.get("PEER_BATCH_SIZE", "1"))
BATCH_WAIT_S = float(os.environ.get("PEER_BATCH_WAIT_MS", "0")) / 1000.0


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=64, max_queued_requests=-1)
class Encoder:
    def __init__(self, path: str) -> None:
        from common import load_model  # on the replica's sys.path through runtime_env below

        self.model = load_model(path)

    async def __call__(self, request: Request) -> dict:
        body = await request.json()
        if BATCH_SIZE > 1:
            return {"predictions": await self.batched(body["instances"])}
        from common import embed

        rows = await asyncio.get_running_loop().run_in_executor(None, embed, self.model, body["instances"])
        return {"predictions": rows}

    @serve.batch(max_batch_size=max(BATCH_SIZE, 1), batch_wait_timeout_s=BATCH_WAIT_S)
    async def batched(self, requests: list[list[list[int]]]) -> list[list[list[float]]]:
        """Ray Serve's dynamic batching: each element is one request's instances."""
        from common import embed

        rows = await asyncio.get_running_loop().run_in_executor(
            None, embed, self.model, [row for instances in requests for row in instances])
        out, start = [], 0
        for instances in requests:
            out.append(rows[start:start + len(instances)])
            start += len(instances)
        return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--tmp", required=True, help="Ray's temp dir (private to this run)")
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    ray.init(num_cpus=args.replicas, include_dashboard=False, _temp_dir=args.tmp, _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"PYTHONPATH": here, "OMP_NUM_THREADS": "1", "PEER_BATCH_SIZE": str(BATCH_SIZE),
                                       "PEER_BATCH_WAIT_MS": str(BATCH_WAIT_S * 1000.0)}}, log_to_driver=False)
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
