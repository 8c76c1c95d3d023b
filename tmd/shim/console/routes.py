"""The console's three routes on the shim's app: the page, its state, its static files.

They sit behind the same authentication as the Elasticsearch API (the app's middleware), and the
page's actions call that API itself, so a console user can do exactly what their role allows.
"""

from __future__ import annotations

import math
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import FileResponse, Response

from tmd.api.errors import IllegalArgument, ResourceNotFound
from tmd.shim import openapi
from tmd.shim.console.state import ConsoleState
from tmd.shim.http import check_params, json_response
from tmd.shim.openapi import CONSOLE_PATH, params
from tmd.shim.service import Shim

STATIC = Path(__file__).resolve().parent / "static"
# The only files served, by the name the page asks for: nothing else under static/ is reachable.
ASSETS: dict[str, tuple[Path, str]] = {
    "console.js": (STATIC / "console.js", "text/javascript; charset=utf-8"),
    "console.css": (STATIC / "console.css", "text/css; charset=utf-8"),
    "uPlot.iife.min.js": (STATIC / "vendor" / "uplot" / "uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "uPlot.min.css": (STATIC / "vendor" / "uplot" / "uPlot.min.css", "text/css; charset=utf-8"),
    "favicon.svg": (STATIC / "favicon.svg", "image/svg+xml"),
}
# Everything the page loads comes from the shim itself; it is never framed.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
}


def parse_since(value: str | None) -> float:
    """Absent means every sample; present, it must be a number (an empty `since=` is refused, as the
    shim refuses any empty numeric parameter; the fuzz test found it accepted)."""
    if value is None:
        return 0.0
    try:
        since = float(value)
    except ValueError:
        raise IllegalArgument(f"Failed to parse value [{value}] for parameter [since]") from None
    if not math.isfinite(since) or since < 0:
        raise IllegalArgument(f"[since] must be a non-negative number of epoch seconds, got [{value}]")
    return since


def add_console(app: FastAPI, shim: Shim) -> ConsoleState:
    console = ConsoleState(shim)

    @app.get(CONSOLE_PATH)
    async def page(request: Request) -> Response:
        check_params(request.url.path, request.query_params, params("tmd.console"), openapi.FLAGS)
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @app.get(CONSOLE_PATH + "/state")
    async def state(request: Request) -> Response:
        check_params(request.url.path, request.query_params, params("tmd.console_state"), openapi.FLAGS)
        since = parse_since(request.query_params.get("since"))
        return json_response(await console.state(since), headers={"Cache-Control": "no-store"})

    @app.get(CONSOLE_PATH + "/static/{asset}")
    async def asset(asset: str, request: Request) -> Response:
        check_params(request.url.path, request.query_params, params("tmd.console_asset"), openapi.FLAGS)
        found = ASSETS.get(asset)
        if found is None:
            raise ResourceNotFound(f"no console file [{asset}]")
        return FileResponse(found[0], media_type=found[1], headers={"Cache-Control": "no-cache",
                                                                     "X-Content-Type-Options": "nosniff"})

    return console
