"""`tmd status`: deployments, their routing tables and per-node throughput at a glance.

Reads Elasticsearch's trained model stats API (works against tmd's shim, and against
Elasticsearch itself), so what it shows is exactly what the API reports.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--es-url", default="http://127.0.0.1:9200", help="Elasticsearch-compatible API (default %(default)s)")
    parser.add_argument("--user", help="user:password for basic auth")
    parser.add_argument("model_id", nargs="?", default="_all", help="model id, alias or pattern (default: all)")


def render(stats: dict[str, Any]) -> str:
    """A plain-text table of every deployment and each of its nodes."""
    lines = []
    header = f"{'DEPLOYMENT':<28} {'MODEL':<24} {'STATE':<10} {'ALLOC':>7}  {'NODE':<12} {'ROUTE':<9} {'INFER':>8} {'/MIN':>6} {'AVG_MS':>7} {'QUEUE':>5}"
    lines.append(header)
    for model in stats.get("trained_model_stats", []):
        deployment = model.get("deployment_stats")
        if not deployment:
            continue
        allocation = deployment.get("allocation_status") or {}
        alloc = f"{allocation.get('allocation_count', 0)}/{allocation.get('target_allocation_count', deployment.get('number_of_allocations', 0))}"
        first = f"{deployment['deployment_id']:<28} {model['model_id']:<24} {deployment.get('state', ''):<10} {alloc:>7}"
        nodes = deployment.get("nodes") or []
        if not nodes:
            lines.append(f"{first}  {'-':<12}")
        for i, node in enumerate(nodes):
            name = next(iter(node.get("node") or {"-": {}}))
            node_name = (node.get("node") or {}).get(name, {}).get("name", name)
            route = (node.get("routing_state") or {}).get("routing_state", "")
            avg = node.get("average_inference_time_ms")
            lines.append(f"{first if i == 0 else ' ' * len(first)}  {node_name:<12} {route:<9} "
                         f"{node.get('inference_count', 0):>8} {node.get('throughput_last_minute', 0):>6} "
                         f"{(f'{avg:.1f}' if avg is not None else '-'):>7} {node.get('number_of_pending_requests', 0):>5}")
        if deployment.get("reason"):
            lines.append(f"{'':<28} reason: {deployment['reason']}")
    if len(lines) == 1:
        lines.append("(no deployments)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    auth = tuple(args.user.split(":", 1)) if args.user else None
    try:
        response = httpx.get(f"{args.es_url}/_ml/trained_models/{args.model_id}/_stats", auth=auth, timeout=10.0)
    except httpx.HTTPError as err:
        print(f"tmd status: error: cannot reach {args.es_url}: {err}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        reason = response.json().get("error", {}).get("reason", response.text) if response.headers.get(
            "content-type", "").startswith("application/json") else response.text
        print(f"tmd status: error: {response.status_code} {reason}", file=sys.stderr)
        return 1
    print(render(response.json()))
    return 0
