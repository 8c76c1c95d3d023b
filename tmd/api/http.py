"""The one HTTP convention every tmd server shares with Elasticsearch (es-api.md §0): each
response carries `X-elastic-product: Elasticsearch`, errors and unmatched routes included,
because the official clients refuse a server without it."""

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
