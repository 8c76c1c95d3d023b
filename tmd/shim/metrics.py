"""Prometheus metrics of the shim: requests per Elasticsearch API and status, their latency,
and the inference retries that hid a dead worker from clients.

Measured by an outer ASGI wrapper, so the `_infer` fast path counts like every routed endpoint.
The `api` label is the endpoint's Elasticsearch API name from the one endpoint table
(`tmd.shim.openapi.ENDPOINTS`): bounded, whatever paths clients send. Served on a port of its
own (`--metrics HOST:PORT`), like the operator's, so scraping needs no Elasticsearch credentials.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from tmd.api.http import serve_metrics
from tmd.shim.openapi import ENDPOINTS

REGISTRY = CollectorRegistry()
REQUESTS = Counter("tmd_shim_requests", "HTTP requests answered, by Elasticsearch API and status", ["api", "status"],
                   registry=REGISTRY)
SECONDS = Histogram("tmd_shim_request_duration_seconds", "Time to answer a request, by Elasticsearch API", ["api"],
                    registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RETRIES = Counter("tmd_shim_inference_retries", "Inference slices sent to another worker because theirs was gone",
                  registry=REGISTRY)

_TEMPLATES = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), endpoint.method, endpoint.name)
              for endpoint in ENDPOINTS for path in endpoint.paths]
# Literal segments first, so /_ml/trained_models/_stats is not taken for a model id.
_TEMPLATES.sort(key=lambda t: t[0].pattern.count("[^/]+"))


@lru_cache(maxsize=4096)
def api_of(method: str, path: str) -> str:
    """The Elasticsearch API a request calls, "other" for paths the shim does not serve."""
    method = "GET" if method == "HEAD" and path != "/" else method
    for pattern, endpoint_method, name in _TEMPLATES:
        if endpoint_method == method and pattern.match(path):
            return name
    return "other"


class RequestMetrics:
    """ASGI wrapper: counts and times every HTTP request by API and status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_and_see(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        finally:
            api = api_of(scope["method"], scope.get("path", ""))
            REQUESTS.labels(api, str(status)).inc()
            SECONDS.labels(api).observe(time.perf_counter() - started)


def serve(address: str) -> None:
    serve_metrics(address, REGISTRY)
