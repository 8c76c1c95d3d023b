"""`tmd operator`: run the kopf operator against any kubeconfig (or in-cluster credentials)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                        help="kubeconfig to use (default: $KUBECONFIG, in-cluster config, ~/.kube/config)")
    parser.add_argument("--namespace", "-n", action="append", default=None,
                        help="watch only these namespaces (default: all)")
    parser.add_argument("--liveness", default=os.environ.get("TMD_OPERATOR_LIVENESS") or None, metavar="URL",
                        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz (env TMD_OPERATOR_LIVENESS)")
    parser.add_argument("--metrics", default=os.environ.get("TMD_OPERATOR_METRICS") or None, metavar="HOST:PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 0.0.0.0:9090 "
                             "(env TMD_OPERATOR_METRICS)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")


def run(args: argparse.Namespace) -> int:
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import kopf
    from kubernetes import config

    import tmd.operator.handlers  # noqa: F401  (registers the handlers)

    if args.metrics:
        from tmd.operator.metrics import serve

        try:
            serve(args.metrics)
        except (ValueError, OSError) as err:
            print(f"tmd operator: cannot serve metrics at {args.metrics!r}: {err}", file=sys.stderr)
            return 2

    try:  # as Kube() and kopf will: in-cluster credentials, else the kubeconfig
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except config.ConfigException as err:
            print(f"tmd operator: no Kubernetes API to talk to ({err}): set KUBECONFIG or run in a cluster",
                  file=sys.stderr)
            return 2

    try:
        asyncio.run(kopf.operator(standalone=True, clusterwide=not args.namespace, namespaces=args.namespace or [],
                                  liveness_endpoint=args.liveness))
    except KeyboardInterrupt:
        pass
    return 0
