"""The OpenAPI description is the shim's API: same routes, same parameters, valid OpenAPI."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from kubernetes import client

from tmd.shim import openapi
from tmd.shim.app import create_app
from tmd.shim.auth import Authenticator
from tmd.shim.kube import ShimKube
from tmd.shim.service import Shim, ShimSettings
from tmd.store.directory import DirectoryStore


def _shim(tmp_path) -> Shim:
    kube = ShimKube("default", client.ApiClient(client.Configuration(host="http://127.0.0.1:9")))
    return Shim(ShimSettings(version="9.1.0"), kube, DirectoryStore(str(tmp_path)))


def _routes(app) -> set[tuple[str, str]]:
    """(METHOD, path with parameters as {}) of every route the FastAPI app behind the wrappers registers."""
    inner = app
    while not hasattr(inner, "routes"):
        inner = inner.app
    return {(method, re.sub(r"\{[^}]+\}", "{}", route.path)) for route in inner.routes for method in route.methods}


def _described(document) -> set[tuple[str, str]]:
    return {(method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
            for path, operations in document["paths"].items() for method in operations}


def test_every_route_is_described_and_every_description_is_a_route(tmp_path):
    app = create_app(_shim(tmp_path))
    described = _described(openapi.build("9.1.0", auth=False))
    assert _routes(app) == described
    assert len(described) == sum(len(e.paths) for e in openapi.ENDPOINTS)


def test_every_parameter_has_a_type_and_every_body_a_schema():
    for endpoint in openapi.ENDPOINTS:
        assert set(endpoint.params) <= set(openapi.PARAMS), endpoint.name
    document = openapi.build("9.1.0", auth=False)
    for path, operations in document["paths"].items():
        for operation in operations.values():
            names = [p["name"] for p in operation["parameters"] if p["in"] == "path"]
            assert names == re.findall(r"\{([^}]+)\}", path)
            assert operation["responses"]["default"]["content"]["application/json"]["schema"] == \
                {"$ref": "#/components/schemas/Error"}


def test_the_description_is_valid_openapi_3_1():
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis>=4 (test extra) validates the document")
    schema = schemathesis.openapi.from_dict(openapi.build("9.1.0", auth=True))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(e.paths) for e in openapi.ENDPOINTS)


def test_served_at_tmd_path_with_auth_applied(tmp_path):
    users = {"users": {"reader": {"password": "pw", "roles": ["user"]}}}
    app = create_app(_shim(tmp_path), Authenticator(users))

    async def get(**kw) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shim") as c:
            return await c.get(openapi.OPENAPI_PATH, **kw)

    assert asyncio.run(get()).status_code == 401
    response = asyncio.run(get(auth=("reader", "pw")))
    assert response.status_code == 200 and response.headers["x-elastic-product"] == "Elasticsearch"
    assert response.json() == openapi.build("9.1.0", auth=True)
    assert response.json()["paths"]["/_tmd/store/{name}/{filename}"]["get"]["security"] == []
