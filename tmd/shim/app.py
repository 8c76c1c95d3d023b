"""The Elasticsearch-compatible REST API (es-api.md §1): thin routes over `tmd.shim.service`.

Every route reads its query against the parameters its Elasticsearch handler consumes (others
are rejected as Elasticsearch does), parses the body itself (so the vendor media types are
JSON too), and lets ElasticsearchError propagate to the handler that renders the ES error body.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from urllib.parse import parse_qsl, unquote
import uuid
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import FileResponse, Response

from tmd.api.errors import ElasticsearchError, ParseError, ResourceNotFound, ValidationFailed
from tmd.api.http import ElasticProductHeader
from tmd.api.units import parse_time_value
from tmd.shim import ml_info, openapi, views
from tmd.shim.auth import Authenticator
from tmd.shim.inference_api import InferenceEndpoints, task_of
from tmd.shim.console.routes import add_console
from tmd.shim.http import (check_params, error_response, is_pretty, json_response, page_params, parse_body,
                           parse_bool)
from tmd.shim.metrics import RequestMetrics
from tmd.shim.openapi import params
from tmd.shim.service import Shim

log = logging.getLogger("tmd.shim.app")

DEPRECATED_INFER_WARNING = ('299 Elasticsearch-{version} "[POST /_ml/trained_models/{{model_id}}/deployment/_infer] '
                            'is deprecated! Use [POST /_ml/trained_models/{{model_id}}/_infer] instead."')
M = "/_ml/trained_models"


def create_app(shim: Shim, auth: Authenticator | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await shim.recover()
        except Exception:  # the API must come up even if the cluster is briefly unreachable
            log.exception("recovery of assembled definitions failed; it is retried on the next start call")
        yield
        await shim.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    endpoints = InferenceEndpoints(shim)
    cluster_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS, shim.settings.cluster_name))

    @app.exception_handler(ElasticsearchError)
    async def _es_error(_: Request, err: ElasticsearchError) -> Response:
        headers = getattr(err, "headers", None)
        return error_response(err, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _no_route(request: Request, err: StarletteHTTPException) -> Response:
        if err.status_code == 405:
            allowed = allowed_methods((err.headers or {}).get("allow", (err.headers or {}).get("Allow", "")))
            reason = f"Incorrect HTTP method for uri [{request.url.path}] and method [{request.method}]"
            if allowed:
                reason += f", allowed: [{', '.join(allowed)}]"
            return error_response(ElasticsearchError(reason, status=405, type="exception"),
                                  {"Allow": ",".join(allowed)} if allowed else None)
        reason = f"no handler found for uri [{request.url.path}] and method [{request.method}]"
        return error_response(ElasticsearchError(reason, status=400, type="exception"))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, err: RequestValidationError) -> Response:
        return error_response(ElasticsearchError("request could not be parsed", status=400, type="parse_exception"))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, err: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(ElasticsearchError(f"{type(err).__name__}: {err}", status=500))

    if auth is not None:
        app.middleware("http")(auth.middleware)

    async def body_of(request: Request, required: bool = False) -> Any:
        return parse_body(await request.body(), request.headers.get("content-type"), required=required)

    def q(request: Request, *allowed: str) -> dict[str, str]:
        query = dict(request.query_params)
        check_params(request.url.path, query, allowed, openapi.FLAGS)
        return query

    def ok(request: Request, body: Any, headers: dict[str, str] | None = None) -> Response:
        return json_response(body, headers=headers, pretty=is_pretty(request.query_params))

    # -- root
    @app.api_route("/", methods=["GET", "HEAD"])
    async def root(request: Request) -> Response:
        q(request, *params("info"))
        return ok(request, {
            "name": shim.settings.cluster_name, "cluster_name": shim.settings.cluster_name,
            "cluster_uuid": cluster_uuid,
            "version": {"number": shim.settings.version, "build_flavor": "default", "build_type": "tmd",
                        "build_hash": "tmd", "build_date": "2026-01-01T00:00:00.000Z", "build_snapshot": False,
                        "lucene_version": "10.2.2", "minimum_wire_compatibility_version": "8.18.0",
                        "minimum_index_compatibility_version": "8.0.0"},
            "tagline": "You Know, for Search"})

    # -- models
    @app.put(M + "/{model_id}")
    async def put_model(model_id: str, request: Request) -> Response:
        q(request, *params("ml.put_trained_model"))
        return ok(request, await shim.put_model(model_id, await body_of(request, required=True)))

    # Before `GET {M}/{model_id}`: routes match in order, and `_stats` is not a model id.
    @app.get(M + "/_stats")
    @app.get(M + "/{model_id}/_stats")
    async def stats(request: Request, model_id: str | None = None) -> Response:
        query = q(request, *params("ml.get_trained_models_stats"))
        return ok(request, await shim.stats(model_id, parse_bool("allow_no_match", query.get("allow_no_match"), True),
                                            *page_params(query),
                                            human=parse_bool("human", query.get("human"), False)))

    @app.get(M)
    @app.get(M + "/{model_id}")
    async def get_models(request: Request, model_id: str | None = None) -> Response:
        query = q(request, *params("ml.get_trained_models"))
        include = set(filter(None, (query.get("include") or "").split(",")))
        if parse_bool("include_model_definition", query.get("include_model_definition"), False):
            include.add("definition")
        from_, size = page_params(query)
        return ok(request, await shim.get_models(
            model_id, allow_no_match=parse_bool("allow_no_match", query.get("allow_no_match"), True),
            include=include, from_=from_, size=size,
            tags=list(filter(None, (query.get("tags") or "").split(",")))))

    @app.delete(M + "/{model_id}")
    async def delete_model(model_id: str, request: Request) -> Response:
        query = q(request, *params("ml.delete_trained_model"))
        return ok(request, await shim.delete_model(model_id, parse_bool("force", query.get("force"), False)))

    @app.put(M + "/{model_id}/definition/{part}")
    async def put_part(model_id: str, part: str, request: Request) -> Response:
        q(request, *params("ml.put_trained_model_definition_part"))
        return ok(request, await shim.put_definition_part(model_id, part, await body_of(request, required=True)))

    @app.put(M + "/{model_id}/vocabulary")
    async def put_vocabulary(model_id: str, request: Request) -> Response:
        q(request, *params("ml.put_trained_model_vocabulary"))
        return ok(request, await shim.put_vocabulary(model_id, await body_of(request, required=True)))

    @app.put(M + "/{model_id}/model_aliases/{alias}")
    async def put_alias(model_id: str, alias: str, request: Request) -> Response:
        query = q(request, *params("ml.put_trained_model_alias"))
        return ok(request, await shim.put_alias(model_id, alias, parse_bool("reassign", query.get("reassign"), False)))

    @app.delete(M + "/{model_id}/model_aliases/{alias}")
    async def delete_alias(model_id: str, alias: str, request: Request) -> Response:
        q(request, *params("ml.delete_trained_model_alias"))
        return ok(request, await shim.delete_alias(model_id, alias))

    # -- deployments
    @app.post(M + "/{model_id}/deployment/_start")
    async def start(model_id: str, request: Request) -> Response:
        query = q(request, *params("ml.start_trained_model_deployment"))
        return ok(request, await shim.start(model_id, await body_of(request), query))

    @app.post(M + "/{deployment_id}/deployment/_stop")
    async def stop(deployment_id: str, request: Request) -> Response:
        query = q(request, *params("ml.stop_trained_model_deployment"))
        merged = {**stop_body(await body_of(request) or {}), **query}
        return ok(request, await shim.stop(deployment_id, parse_bool("allow_no_match", merged.get("allow_no_match"), True),
                                           parse_bool("force", merged.get("force"), False)))

    @app.post(M + "/{deployment_id}/deployment/_update")
    async def update(deployment_id: str, request: Request) -> Response:
        query = q(request, *params("ml.update_trained_model_deployment"))
        return ok(request, await shim.update(deployment_id, await body_of(request), query))

    @app.post(M + "/{deployment_id}/deployment/cache/_clear")
    async def clear_cache(deployment_id: str, request: Request) -> Response:
        q(request, *params("ml.clear_trained_model_deployment_cache"))
        return ok(request, await shim.clear_cache(deployment_id))

    @app.post(M + "/{model_id}/_infer")
    async def infer(model_id: str, request: Request) -> Response:
        query = q(request, *params("ml.infer_trained_model"))
        raw = await shim.infer_bytes(model_id, await body_of(request, required=True), query)
        if is_pretty(request.query_params):
            return ok(request, json.loads(raw))
        return Response(raw, media_type="application/json")

    @app.post(M + "/{model_id}/deployment/_infer")
    async def infer_deprecated(model_id: str, request: Request) -> Response:
        query = q(request, *params("ml.infer_trained_model_deployment"))
        body = await body_of(request, required=True)
        if isinstance(body, dict) and isinstance(body.get("docs"), list) and len(body["docs"]) > 1:
            raise ValidationFailed(["multiple documents are not supported"])
        results = await shim.infer(model_id, body, query)
        warning = DEPRECATED_INFER_WARNING.format(version=shim.settings.version)
        return ok(request, results[0], headers={"Warning": warning})

    # -- cat
    @app.get("/_cat/ml/trained_models")
    @app.get("/_cat/ml/trained_models/{model_id}")
    async def cat_models(request: Request, model_id: str | None = None) -> Response:
        query = q(request, *params("cat.ml_trained_models"))
        from_, size = page_params(query)
        models = await shim.match_models(model_id, allow_no_match=parse_bool("allow_no_match",
                                                                             query.get("allow_no_match"), True))
        models = models[from_:][:size]
        columns = views.cat_columns(query.get("h"))
        rows = [views.cat_row(m, shim.settings.version) for m in models]
        if query.get("format") == "json":
            return ok(request, [{c: r[c] for c in columns} for r in rows])
        text = views.cat_text(rows, columns, header=parse_bool("v", query.get("v"), False))
        return Response(text, media_type="text/plain; charset=UTF-8")

    # -- ML info and ML node memory (tmd/shim/ml_info.py)
    @app.get("/_ml/info")
    async def ml_info_route(request: Request) -> Response:
        q(request, *params("ml.info"))
        return ok(request, await ml_info.info(shim))

    @app.get("/_ml/memory/_stats")
    @app.get("/_ml/memory/{node_id}/_stats")
    async def memory_stats(request: Request, node_id: str | None = None) -> Response:
        query = q(request, *params("ml.get_memory_stats"))
        for name in ("timeout", "master_timeout"):
            if query.get(name) is not None:
                parse_time_value(query[name], name)
        return ok(request, await ml_info.memory(shim, node_id, parse_bool("human", query.get("human"), False)))

    @app.get("/_nodes/{node_id}/{metric}")
    async def nodes_info(node_id: str, metric: str, request: Request) -> Response:
        query = q(request, *params("nodes.info"))
        if query.get("timeout") is not None:
            parse_time_value(query["timeout"], "timeout")
        parse_bool("flat_settings", query.get("flat_settings"), False)
        return ok(request, await ml_info.nodes_info(shim, node_id, metric, request.url.path))

    # -- _inference with the elasticsearch service (tmd/shim/inference_api.py); update before put
    @app.put("/_inference/{inference_id}/_update")
    @app.put("/_inference/{task_type}/{inference_id}/_update")
    async def inference_update(inference_id: str, request: Request, task_type: str | None = None) -> Response:
        q(request, *params("inference.update"))
        return ok(request, await endpoints.update(task_of(task_type), inference_id,
                                                  await body_of(request, required=True)))

    @app.put("/_inference/{inference_id}")
    @app.put("/_inference/{task_type}/{inference_id}")
    async def inference_put(inference_id: str, request: Request, task_type: str | None = None) -> Response:
        query = q(request, *params("inference.put"))
        return ok(request, await endpoints.put(task_of(task_type), inference_id,
                                               await body_of(request, required=True), query.get("timeout")))

    @app.get("/_inference")
    @app.get("/_inference/{inference_id}")
    @app.get("/_inference/{task_type}/{inference_id}")
    async def inference_get(request: Request, inference_id: str = "_all", task_type: str | None = None) -> Response:
        q(request, *params("inference.get"))
        return ok(request, await endpoints.get(task_of(task_type), inference_id))

    @app.delete("/_inference/{inference_id}")
    @app.delete("/_inference/{task_type}/{inference_id}")
    async def inference_delete(inference_id: str, request: Request, task_type: str | None = None) -> Response:
        query = q(request, *params("inference.delete"))
        parse_bool("force", query.get("force"), False)
        return ok(request, await endpoints.delete(task_of(task_type), inference_id,
                                                  parse_bool("dry_run", query.get("dry_run"), False)))

    @app.post("/_inference/completion/{inference_id}/_stream")
    async def inference_stream(inference_id: str, request: Request) -> Response:
        q(request, *params("inference.stream_completion"))
        return ok(request, await endpoints.stream("completion", inference_id))

    @app.post("/_inference/chat_completion/{inference_id}/_stream")
    async def inference_chat_stream(inference_id: str, request: Request) -> Response:
        q(request, *params("inference.chat_completion_unified"))
        return ok(request, await endpoints.stream("chat_completion", inference_id))

    @app.post("/_inference/{inference_id}")
    @app.post("/_inference/{task_type}/{inference_id}")
    async def inference_infer(inference_id: str, request: Request, task_type: str | None = None) -> Response:
        query = q(request, *params("inference.inference"))
        return ok(request, await endpoints.infer(task_of(task_type), inference_id, await body_of(request),
                                                 query.get("timeout")))

    # -- the model store, for workers on other machines
    @app.get("/_tmd/store/{name}/{filename}")
    async def store_file(name: str, filename: str, request: Request) -> Response:
        q(request, *params("tmd.store_file"))
        path = shim.store.file_for(name, filename)
        if path is None:
            raise ResourceNotFound(f"no stored file [{filename}] for model [{name}]")
        return FileResponse(path, media_type="application/octet-stream")

    description = openapi.build(shim.settings.version, auth=auth is not None)

    @app.get(openapi.OPENAPI_PATH)
    async def openapi_description(request: Request) -> Response:
        q(request, *params("tmd.openapi"))
        return ok(request, description)

    add_console(app, shim)  # /_tmd/console: the web console (docs/console.md)

    return RequestMetrics(ElasticProductHeader(InferFastPath(app, shim, auth)))  # type: ignore[return-value]


_STOP = "stop_trained_model_deployment"


def stop_body(body: dict[str, Any]) -> dict[str, Any]:
    """The stop request's body as its ObjectParser reads it (before the query is applied): known
    fields only, `id` a string, the booleans booleans."""
    unknown = [k for k in body if k not in ("id", "allow_no_match", "force", "finish_pending_work")]
    if unknown:
        raise ParseError(f"[{_STOP}] unknown field [{unknown[0]}]", type="x_content_parse_exception")
    for name, value in body.items():
        if value is None or (name == "id" and not isinstance(value, str)):
            raise ParseError(f"[{_STOP}] failed to parse field [{name}]", type="x_content_parse_exception")
        if name != "id":
            parse_bool(name, value, False)
    return body


# RestRequest.Method's order, in which Elasticsearch lists the allowed methods of a path.
_METHOD_ORDER = ("GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE", "CONNECT")


def allowed_methods(allow_header: str) -> list[str]:
    methods = {m.strip().upper() for m in allow_header.split(",") if m.strip()}
    return [m for m in _METHOD_ORDER if m in methods]


_INFER_PATH = re.compile(r"^/_ml/trained_models/([^/]+)/_infer$")


class InferFastPath:
    """`POST /_ml/trained_models/{id}/_infer` served as plain ASGI, before FastAPI's routing and
    middleware stack: it is the one hot path, and on a busy CPU every skipped layer is latency.
    Same checks and errors as the routed endpoints (parameters, body, auth)."""

    def __init__(self, app: Any, shim: Shim, auth: Authenticator | None) -> None:
        self.app, self.shim, self.auth = app, shim, auth

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        match = _INFER_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        extra: dict[str, str] = {}
        try:
            if self.auth is not None:
                principal = self.auth.authenticate(headers.get("authorization"), scope["path"])
                self.auth.authorize(principal, "POST", scope["path"])
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
            check_params(scope["path"], query, params("ml.infer_trained_model"), openapi.FLAGS)
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body = parse_body(b"".join(chunks), headers.get("content-type"), required=True)
            raw = await self.shim.infer_bytes(unquote(match.group(1)), body, query)
            if is_pretty(query):
                raw = json.dumps(json.loads(raw), indent=2).encode()
            status = 200
        except ElasticsearchError as err:
            raw, status = json.dumps(err.body()).encode(), err.status
            extra = getattr(err, "headers", None) or {}
        except Exception as err:  # never a stack trace to the client
            log.exception("unexpected error in _infer")
            fail = ElasticsearchError(f"{type(err).__name__}: {err}", status=500)
            raw, status = json.dumps(fail.body()).encode(), 500
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
                                *((k.encode(), v.encode()) for k, v in extra.items())]})
        await send({"type": "http.response.body", "body": raw})
