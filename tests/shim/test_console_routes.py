"""The console's routes on the shim's app: the page with its security headers, only the listed
static files, ES errors for bad parameters, and the API's authentication in front of all of it."""

from __future__ import annotations

import asyncio
import base64

import httpx
from kubernetes import client

from tmd.shim.app import create_app
from tmd.shim.auth import Authenticator
from tmd.shim.console.routes import ASSETS
from tmd.shim.kube import ShimKube
from tmd.shim.service import Shim, ShimSettings
from tmd.store.directory import DirectoryStore


def _app(tmp_path, auth: Authenticator | None = None):
    kube = ShimKube("default", client.ApiClient(client.Configuration(host="http://127.0.0.1:9")))
    return create_app(Shim(ShimSettings(version="9.1.0"), kube, DirectoryStore(str(tmp_path))), auth)


def _get(app, path: str, **kw) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shim") as c:
            return await c.get(path, **kw)
    return asyncio.run(go())


def test_page_and_assets_are_served_with_their_types(tmp_path):
    app = _app(tmp_path)
    page = _get(app, "/_tmd/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("console.js", "console.css", "uPlot.iife.min.js", "uPlot.min.css", "favicon.svg"):
        assert f"/_tmd/console/static/{name}" in page.text, name  # the page loads each listed file
        response = _get(app, f"/_tmd/console/static/{name}")
        assert response.status_code == 200 and response.content == ASSETS[name][0].read_bytes(), name
        assert response.headers["content-type"] == ASSETS[name][1]


def test_unknown_files_and_parameters_are_elasticsearch_errors(tmp_path):
    app = _app(tmp_path)
    missing = _get(app, "/_tmd/console/static/index.html")  # on disk, but not a listed asset
    assert missing.status_code == 404 and missing.json()["error"]["reason"] == "no console file [index.html]"
    traversal = _get(app, "/_tmd/console/static/..%2F..%2Fservice.py")
    assert traversal.status_code in (400, 404) and "error" in traversal.json()
    bad = _get(app, "/_tmd/console/state", params={"since": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "illegal_argument_exception"
    assert bad.json()["error"]["reason"] == "Failed to parse value [yesterday] for parameter [since]"
    empty = _get(app, "/_tmd/console/state", params={"since": ""})
    assert empty.status_code == 400
    assert empty.json()["error"]["reason"] == "Failed to parse value [] for parameter [since]"
    negative = _get(app, "/_tmd/console/state", params={"since": "-1"})
    assert negative.status_code == 400 and "[since] must be a non-negative" in negative.json()["error"]["reason"]
    unknown = _get(app, "/_tmd/console", params={"theme": "dark"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["reason"] == "request [/_tmd/console] contains unrecognized parameter: [theme]"


def test_the_console_needs_the_same_credentials_as_the_api(tmp_path):
    app = _app(tmp_path, Authenticator({"users": {"reader": {"password": "pw", "roles": ["user"]}}}))
    anonymous = _get(app, "/_tmd/console")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
    assert _get(app, "/_tmd/console/static/console.js").status_code == 401
    reader = "Basic " + base64.b64encode(b"reader:pw").decode()
    assert _get(app, "/_tmd/console", headers={"Authorization": reader}).status_code == 200
