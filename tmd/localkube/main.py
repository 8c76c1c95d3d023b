"""`tmd localkube`: the embedded control plane and N virtual nodes in the foreground, until
Ctrl-C or SIGTERM; then every pod process is stopped and the command exits 0."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .cluster import Cluster, ClusterConfig, ClusterError
from .kubelet import BackoffPolicy
from .kubelet.ipam import DEFAULT_SUBNET


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=None, help="API server port (default: the previous run's with this data dir, else any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--nodes", type=int, default=3, help="number of virtual nodes node-1..node-N (default 3)")
    parser.add_argument("--simulated-nodes", type=int, default=0, metavar="N",
                        help="also N simulated nodes sim-1..sim-N whose pods become Running and Ready without a "
                             "process (like kwok; for scale tests), same size as the other nodes (default 0)")
    parser.add_argument("--node-cpus", default="4", help="allocatable CPUs of each node, virtual (default 4)")
    parser.add_argument("--node-memory", default="8Gi", help="allocatable memory of each node, virtual (default 8Gi)")
    parser.add_argument("--zones", type=int, default=3, help="spread nodes over this many topology zones (default 3)")
    parser.add_argument("--data-dir", type=Path, default=Path(".tmd/localkube"), help="state directory (default .tmd/localkube)")
    parser.add_argument("--pod-subnet", default=DEFAULT_SUBNET, help="loopback subnet for pod IPs (default 127.0.0.0/8: 127.0.0.2, 127.0.0.3, ...)")
    parser.add_argument("--backoff-base", type=float, default=10.0, help="first crash-loop back-off in seconds (default 10)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _validate(args: argparse.Namespace) -> str | None:
    if args.simulated_nodes < 0:
        return "--simulated-nodes must not be negative"
    if args.nodes < 0 or args.nodes + args.simulated_nodes < 1:
        return "--nodes must be at least 1 (or 0 with --simulated-nodes)"
    if args.port is not None and not 0 <= args.port <= 65535:
        return "--port must be between 0 and 65535"
    import ipaddress

    from kubernetes.utils.quantity import parse_quantity

    try:
        if not ipaddress.IPv4Network(args.pod_subnet).subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
            return f"--pod-subnet must lie within 127.0.0.0/8, got {args.pod_subnet!r}"
    except ValueError as error:
        return f"--pod-subnet: {error}"

    for flag, value in (("--node-cpus", args.node_cpus), ("--node-memory", args.node_memory)):
        try:
            if parse_quantity(value) <= 0:
                return f"{flag} must be positive, got {value!r}"
        except ValueError:
            return f"{flag}: {value!r} is not a Kubernetes quantity (e.g. 4, 500m, 8Gi)"
    return None


async def serve(args: argparse.Namespace) -> int:
    config = ClusterConfig(
        data_dir=args.data_dir, nodes=args.nodes, node_cpus=args.node_cpus, node_memory=args.node_memory, zones=args.zones,
        port=args.port, host=args.host, backoff=BackoffPolicy(base=args.backoff_base), pod_subnet=args.pod_subnet,
        simulated_nodes=args.simulated_nodes,
    )
    cluster = Cluster(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await cluster.start()
        print(f"localkube: API server {cluster.url}, nodes: " + _names(cluster.node_names), flush=True)
        print(f"kubeconfig: {cluster.kubeconfig.resolve()}", flush=True)
        print(f"try: KUBECONFIG={cluster.kubeconfig.resolve()} kubectl get nodes", flush=True)
        await stop.wait()
    except (OSError, ClusterError) as error:
        print(f"localkube: cannot start: {error}", file=sys.stderr)
        await cluster.stop()
        return 1
    await cluster.stop()
    return 0


def _names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 12 else ", ".join(names[:5]) + f", ... ({len(names)} in all)"


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)r")
    problem = _validate(args)
    if problem:
        print(f"tmd localkube: error: {problem}", file=sys.stderr)
        return 2
    return asyncio.run(serve(args))
