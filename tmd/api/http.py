"""HTTP pieces every tmd server shares. The Elasticsearch convention (es-api.md §0): each
response carries `X-elastic-product: Elasticsearch`, errors and unmatched routes included,
because the official clients refuse a server without it. And the Prometheus endpoint of the
operator and the shim."""

from __future__ import annotations

from typing import Any

PRODUCT_HEADER = (b"x-elastic-product", b"Elasticsearch")


class ElasticProductHeader:
    """Pure ASGI middleware (no per-request task, unlike Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), PRODUCT_HEADER]
            await send(message)

        await self.app(scope, receive, send_with_header)


def serve_metrics(address: str, registry: Any) -> None:
    """Serve a Prometheus registry's /metrics on `host:port` from a daemon thread
    (prometheus_client's own server), for the operator and the shim alike."""
    from prometheus_client import start_http_server

    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError("expected HOST:PORT, e.g. 0.0.0.0:9090")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=registry)
