"""Every route shape of Elasticsearch's REST spec reaches the shim's handler for that API.

Table-driven over the vendored spec files (tests/shim/rest_api_spec/, ES 9.1): for every path ×
method of every file, with each path part filled the ways clients fill it (an id, `_all`, `*`,
a comma list, a wildcard; every task type the spec lists), the first route of the shim's app that
matches the request (the order Starlette tries them) must be the one the shim's OpenAPI table
names for that API; and every query parameter the spec documents must be one the route accepts.
A route the spec has and the shim lacks fails here: every API of the vendored files is served (the
streamed completion APIs answer the task type error every elasticsearch-service endpoint gets, as
Elasticsearch does). Handlers are not run: routing is the subject, so the app
needs no cluster; what the handlers do is tested end to end (tests/shim/test_shim_e2e.py,
tests/shim/test_inference_e2e.py).
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from starlette.routing import Match

from tmd.shim import openapi
from tmd.shim.app import create_app
from tmd.shim.http import GLOBAL_PARAMS
from tmd.shim.kube import ShimKube
from tmd.shim.service import Shim, ShimSettings
from tmd.store.directory import DirectoryStore

SPEC_DIR = Path(__file__).parent / "rest_api_spec"
SPECS: dict[str, dict[str, Any]] = {}
for _file in sorted(SPEC_DIR.glob("*.json")):
    ((_name, _api),) = json.loads(_file.read_text()).items()
    SPECS[_name] = _api

# How clients fill each path part (a value per shape; every shape is tried).
PART_VALUES: dict[str, tuple[str, ...]] = {
    "model_id": ("my_model", "_all", "*", "model_a,model_b", "my_*"),
    "model_alias": ("my_alias",),
    "part": ("0", "12"),
    "node_id": ("node-1", "_all", "*", "ml-*", "node-1,node-2"),
    "inference_id": ("my-endpoint", "my_endpoint.v2"),
    "elasticsearch_inference_id": ("my-endpoint",),
}

# Spec APIs that name a task-specific form of another API: Elasticsearch serves them with that API's
# REST handler (RestInferenceAction, RestPutInferenceModelAction), and so does the shim.
SAME_HANDLER = {"inference.text_embedding": "inference.inference", "inference.sparse_embedding": "inference.inference",
                "inference.rerank": "inference.inference", "inference.completion": "inference.inference",
                "inference.put_elasticsearch": "inference.put"}


def _app():
    kube = ShimKube("default", client.ApiClient(client.Configuration(host="http://127.0.0.1:9")))
    return create_app(Shim(ShimSettings(version="9.1.0"), kube, DirectoryStore("/nonexistent-tmd-store")))


def _router(app: Any) -> Any:
    inner = app
    while not hasattr(inner, "router"):
        inner = inner.app
    return inner.router


def _api_of_route() -> dict[tuple[str, str], str]:
    """(METHOD, route path) → API name, from the shim's OpenAPI table (what the routes read)."""
    return {(e.method, _shape(path)): e.name for e in openapi.ENDPOINTS for path in e.paths}


def _shape(path: str) -> str:
    """A route path with its parameter names dropped (the app's and the table's may differ)."""
    return re.sub(r"\{[^}]+\}", "{}", path)


def _shapes(path: str, parts: dict[str, Any]) -> list[str]:
    """The path with its parts filled every way the table above (or the spec's enum) lists."""
    names = [p[1:-1] for p in path.split("/") if p.startswith("{")]
    choices = []
    for name in names:
        options = (parts.get(name) or {}).get("options")
        choices.append(tuple(options) if options else PART_VALUES[name])
    out = []
    for combo in itertools.product(*choices):
        filled = path
        for name, value in zip(names, combo):
            filled = filled.replace("{" + name + "}", value)
        out.append(filled)
    return out


def _cases() -> list[tuple[str, str, str]]:
    return [(name, method, shape) for name, api in SPECS.items() for entry in api["url"]["paths"]
            for method in entry["methods"] for shape in _shapes(entry["path"], entry.get("parts") or {})]


def _first_match(router: Any, method: str, path: str) -> Any:
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b"", "headers": []}
    for route in router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route
    return None


ROUTER = _router(_app())
API_OF = _api_of_route()


def test_the_vendored_spec_is_the_expected_set():
    names = set(SPECS)
    assert {"ml.get_trained_models_stats", "ml.info", "ml.get_memory_stats", "inference.put", "inference.get",
            "inference.delete", "inference.inference", "cat.ml_trained_models"} <= names
    assert len(names) == 28, sorted(names)
    assert len(_cases()) > 100


@pytest.mark.parametrize("name,method,path", _cases())
def test_every_spec_route_shape_reaches_its_api(name, method, path):
    if method == "POST" and path.startswith("/_ml/trained_models/") and path.endswith("/_infer"):
        # Served by InferFastPath ahead of the router (tmd/shim/app.py), matched by its pattern.
        from tmd.shim.app import _INFER_PATH
        assert _INFER_PATH.match(path) and name == "ml.infer_trained_model"
        return
    route = _first_match(ROUTER, method, path)
    assert route is not None, f"{method} {path} ({name}): no route of the shim matches"
    assert API_OF.get((method, _shape(route.path))) == SAME_HANDLER.get(name, name), \
        f"{method} {path} reaches {route.path} ({API_OF.get((method, _shape(route.path)))}), not {name}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_spec_parameter_is_accepted(name):
    documented = set(SPECS[name].get("params") or {})
    accepted = set(openapi.BY_NAME[SAME_HANDLER.get(name, name)].params) | GLOBAL_PARAMS
    assert documented <= accepted, f"{name}: spec parameters the shim would reject: {sorted(documented - accepted)}"


def test_stats_without_id_is_the_stats_api_not_a_model_named_stats():
    """The regression of issue #12: `es.ml.get_trained_models_stats()` sends GET
    /_ml/trained_models/_stats, which was routed to get trained models with model id `_stats`."""
    route = _first_match(ROUTER, "GET", "/_ml/trained_models/_stats")
    assert API_OF[("GET", _shape(route.path))] == "ml.get_trained_models_stats"
    assert API_OF[("GET", _shape(_first_match(ROUTER, "GET", "/_ml/trained_models/my_model").path))] == \
        "ml.get_trained_models"


def test_update_shapes_are_not_read_as_put_with_a_task_type():
    route = _first_match(ROUTER, "PUT", "/_inference/my-endpoint/_update")
    assert API_OF[("PUT", _shape(route.path))] == "inference.update"
    route = _first_match(ROUTER, "PUT", "/_inference/text_embedding/my-endpoint")
    assert API_OF[("PUT", _shape(route.path))] == "inference.put"
