"""`tmd shim`: serve the Elasticsearch-compatible API over the cluster's resources and a model store."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from tmd.shim.service import ShimSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--host", default=env("TMD_SHIM_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("TMD_SHIM_PORT", "9200")))
    parser.add_argument("--namespace", default=env("TMD_NAMESPACE", "default"),
                        help="namespace holding the TrainedModel/TrainedModelDeployment resources")
    parser.add_argument("--store", default=env("TMD_STORE", "./tmd-store"), help="model store directory")
    parser.add_argument("--store-uri-base", default=env("TMD_STORE_URI_BASE") or None,
                        help="http base URL under which workers fetch stored models (default: file:// URIs)")
    parser.add_argument("--es-version", default=env("TMD_ES_VERSION", "9.1.0"), help="version reported by GET /")
    parser.add_argument("--worker-port", type=int, default=int(env("TMD_WORKER_PORT", "8080")))
    parser.add_argument("--auth-secret", default=env("TMD_AUTH_SECRET") or None,
                        help="Secret (in --namespace) with users.json; enables authentication")
    parser.add_argument("--metrics", default=env("TMD_SHIM_METRICS") or None, metavar="HOST:PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics (env TMD_SHIM_METRICS)")
    parser.add_argument("--ml-node-selector", default=env("TMD_ML_NODE_SELECTOR", "ml.tmd.dev/ml-node=true"),
                        help="key=value[,...]: the ML nodes, as the operator's TMD_ML_NODE_SELECTOR (for _ml/info)")
    parser.add_argument("--no-auth", action="store_true", help="serve without authentication (loopback use)")


def run(args: argparse.Namespace) -> int:
    import uvicorn
    from kubernetes.config import ConfigException

    from tmd.api.ml_nodes import parse_node_selector
    from tmd.shim.app import create_app
    from tmd.shim.auth import Authenticator
    from tmd.shim.kube import ShimKube
    from tmd.shim.service import Shim
    from tmd.store.directory import DirectoryStore

    logging.basicConfig(level=logging.INFO, format='{"ts":"%(asctime)s","level":"%(levelname)s",'
                                                   '"logger":"%(name)s","msg":%(message)r}')
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per proxied request is noise
    log = logging.getLogger("tmd.shim")
    settings = ShimSettings(namespace=args.namespace, store_root=args.store, store_uri_base=args.store_uri_base,
                            version=args.es_version, worker_port=args.worker_port,
                            ml_node_selector=parse_node_selector(args.ml_node_selector))
    if args.metrics:
        from tmd.shim.metrics import serve

        try:
            serve(args.metrics)
        except (ValueError, OSError) as err:
            print(f"tmd shim: cannot serve metrics at {args.metrics!r}: {err}", file=sys.stderr)
            return 2
    try:
        kube = ShimKube(args.namespace)
    except ConfigException as err:
        print(f"tmd shim: no Kubernetes API to talk to ({err}): set KUBECONFIG or run in a cluster", file=sys.stderr)
        return 2
    auth = None
    if args.auth_secret and not args.no_auth:
        auth = Authenticator.from_secret_data(kube.read_secret(args.auth_secret))
    elif not args.no_auth and args.host not in ("127.0.0.1", "localhost", "::1"):
        log.error("refusing to serve without authentication on %s: pass --auth-secret or --no-auth", args.host)
        return 2
    shim = Shim(settings, kube, DirectoryStore(args.store))
    log.info(json.dumps({"event": "serving", "host": args.host, "port": args.port, "auth": auth is not None}))
    # uvicorn handles SIGTERM: stops accepting, finishes in-flight requests, runs the lifespan exit,
    # then re-raises the signal; the no-op handlers make that re-raise harmless, so the exit code is 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    config = uvicorn.Config(create_app(shim, auth), host=args.host, port=args.port, loop="uvloop", http="httptools",
                            log_config=None, access_log=False)
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        print(f"tmd shim: error: could not serve on {args.host}:{args.port}", file=sys.stderr)
        return 1
    log.info(json.dumps({"event": "stopped"}))
    return 0
