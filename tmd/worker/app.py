"""The worker's HTTP API (FastAPI on uvicorn): the contract the operator and the shim use.

Every response carries `X-elastic-product: Elasticsearch`; every error is an Elasticsearch
error body `{"error": {"root_cause": [...], "type", "reason"}, "status"}` with that status.

`POST /infer`
    Body `{"docs": [{<field>: <text>}, ...], "inference_config": {<task>: {...}}?,
    "timeout": "10s"?, "prefix": <text>?}`; query `timeout` (wins over the body). One queue
    entry per document. 200 `{"inference_results": [<result per doc, in order>]}` (es-api.md
    §5.6 shapes). `prefix` is prepended to each text (the model's prefix_strings.search or
    .ingest, chosen by the caller). Errors: 400 bad body or input (`parse_exception`,
    `action_request_validation_exception`, the task's own messages from tmd.worker.nlp);
    403 `status_exception` for an inference_config of another task; 408 `status_exception`
    "timeout [<given>] waiting for inference result"; 409 "[<deployment>] process context
    missing" while loading; 429 `es_rejected_execution_exception` "inference process queue is
    full. Unable to execute command" (queue full; the whole request is rejected) or "inference
    process worker service has shutdown" (after SIGTERM); 500 "Error in inference process:
    [<msg>]" when the model fails on valid input. The first failing document fails the request.
`GET /stats`
    `{"deployment": {deployment_id, model_id, threads_per_allocation, number_of_allocations,
    queue_capacity, cache_size, priority, start_time, error_count?, rejected_execution_count?,
    timeout_count?, inference_count?, peak_throughput_per_minute, tmd_batching: {max_batch_size,
    max_batch_delay, mode?}}, "node": {routing_state, inference_count, average_inference_time_ms?,
    average_batch_size?, ..., throughput_last_minute, ...}}` — the
    node-level fields of es-api.md §6.2 without the `node` identity (the caller knows which
    node it asked). While loading, or stopping after SIGTERM, `node` is only
    `{"routing_state": {"routing_state": "starting"|"stopping", "reason"?},
    "peak_throughput_per_minute", "throughput_last_minute"}`. `deployment` holds counters once running.
`POST /cache/_clear`
    200 `{"cleared": true}`.
`GET /allocations`, `POST /allocations` body `{"number_of_allocations": n}` (n ≥ 1)
    Changes the number of lanes live, dropping nothing; answers once surplus lanes have
    finished their current document (at most 30 s); 200 `{"number_of_allocations",
    "threads_per_allocation"}`.
`GET /batching`, `POST /batching` body `{"max_batch_size"?: n, "max_batch_delay"?: "2ms"}`
    The dynamic batching knobs (tmd extension), changed live: a field left out keeps its value;
    the same checks and texts as the shim's `tmd_batching` (400 `x_content_parse_exception` for a
    bad shape, `action_request_validation_exception` for a value out of range). Lanes take the
    new values with their next batch. 200 `{"max_batch_size", "max_batch_delay", "mode"}`.
`GET /healthz`
    200 `{"status": "ok"}` while the process serves HTTP (also while loading).
`GET /readyz`
    200 `{"ready": true}` once the model is loaded and warmed up; 503 `{"ready": false}` before,
    and after SIGTERM.
`GET /metrics`
    Prometheus text format (`tmd_inference_total`, `tmd_pending_requests`, ...).

The event loop only parses JSON and waits: tokenizing, the model and postprocessing run on
the allocation lanes, and a lane wakes the waiting request once, when all its documents are
done.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import orjson

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tmd.api.deployment import TmdBatching, parse_tmd_batching, tmd_batching_errors
from tmd.api.errors import ElasticsearchError, ParseError, StatusException, ValidationFailed
from tmd.api.units import TimeValue, parse_time_value
from tmd.api.http import PRODUCT_HEADER, ElasticProductHeader
from tmd.worker.engine import InferenceEngine, InferenceRequest
from tmd.worker.metrics import CONTENT_TYPE, WorkerCollector, make_registry, render
from tmd.worker.settings import WorkerSettings
from tmd.worker.stats import deployment_stats, node_stats

log = logging.getLogger("tmd.worker.app")

DEFAULT_TIMEOUT = TimeValue(10.0, "10s")
ALLOCATION_CHANGE_WAIT_S = 30.0  # at most one inference per surplus lane
INFER_FIELDS = {"docs", "inference_config", "timeout", "prefix"}


@dataclass
class WorkerState:
    """What the HTTP layer serves: filled in by main once the model is loaded."""

    settings: WorkerSettings
    deployment_id: str
    model_id: str = ""
    engine: InferenceEngine | None = None
    cache_size_text: str = ""
    stopping: bool = False
    failure: str | None = None  # why the model could not be served; main exits 1 with it
    # The batching knobs in effect: the settings' at start, then what `POST /batching` set.
    batching: TmdBatching = field(init=False)

    def __post_init__(self) -> None:
        self.batching = TmdBatching.model_construct(max_batch_size=self.settings.max_batch_size,
                                                    max_batch_delay=self.settings.max_batch_delay)

    @property
    def ready(self) -> bool:
        return self.engine is not None and not self.stopping


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error_response(err: ElasticsearchError) -> Response:
    return json_response(err.body(), err.status)


# --- request parsing (pure) -------------------------------------------------------------

def parse_json_body(raw: bytes) -> Any:
    if not raw.strip():
        raise ParseError("request body is required")
    try:
        return orjson.loads(raw)
    except (orjson.JSONDecodeError, UnicodeDecodeError) as err:
        raise ParseError(f"Failed to parse request body: {err}") from None


def parse_infer_body(body: Any) -> tuple[list[dict], dict | None, str | None, Any]:
    """(docs, inference_config, prefix, timeout from the body) or a 400 Elasticsearch error."""
    if not isinstance(body, dict):
        raise ParseError("request body must be a JSON object")
    for name in body:
        if name not in INFER_FIELDS:
            raise ParseError(f"[infer_trained_model_request] unknown field [{name}]")
    docs = body.get("docs")
    if docs is None or docs == []:
        raise ValidationFailed(["at least one document is required"])
    if not isinstance(docs, list) or not all(isinstance(doc, dict) for doc in docs):
        raise ParseError("[infer_trained_model_request] failed to parse field [docs]: each document must be an object")
    config = body.get("inference_config")
    if config is not None and not isinstance(config, dict):
        raise ParseError("[infer_trained_model_request] failed to parse field [inference_config]: must be an object")
    prefix = body.get("prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise ParseError("[infer_trained_model_request] failed to parse field [prefix]: must be a string")
    return docs, config, prefix, body.get("timeout")


def resolve_timeout(query_value: str | None, body_value: Any) -> TimeValue:
    value = query_value if query_value is not None else body_value
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ParseError(f"failed to parse setting [timeout] with value [{value}] as a time value")
    return parse_time_value(value, "timeout")


def parse_allocations_body(body: Any) -> int:
    n = body.get("number_of_allocations") if isinstance(body, dict) else None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationFailed(["[number_of_allocations] must be a positive integer"])
    return n


def not_started_node(routing_state: str, reason: str | None) -> dict[str, Any]:
    """The node entry of a route without a running process (es-api.md §6.2)."""
    routing: dict[str, Any] = {"routing_state": routing_state}
    if reason:
        routing["reason"] = reason
    return {"routing_state": routing, "peak_throughput_per_minute": 0, "throughput_last_minute": 0}


def parse_batching_body(body: Any, current: TmdBatching) -> TmdBatching:
    """`POST /batching`: the fields given over the current knobs, checked as the shim checks them."""
    batching = parse_tmd_batching(body, "worker_batching", base=current)
    errors = tmd_batching_errors(batching)
    if errors:
        raise ValidationFailed(errors)
    return batching


def batching_stats(batching: TmdBatching, mode: str | None) -> dict[str, Any]:
    """The dynamic batching knobs (tmd extension) and, once the model is probed, the mode in effect."""
    out: dict[str, Any] = batching.to_es()
    if mode is not None:
        out["mode"] = mode if batching.max_batch_size > 1 else "none"
    return out


# --- waiting for lanes ------------------------------------------------------------------

# Up to this much text (a few hundred tokens) is tokenized on the event loop: ~0.1-0.3 ms, cheaper
# than a hop to a thread and back.
INLINE_PREPARE_CHARS = 4096


def _wake(fut: asyncio.Future, value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


async def run_request(engine: InferenceEngine, docs: list[dict], config: dict | None, prefix: str | None,
                      timeout: TimeValue) -> list[dict]:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()
    request = InferenceRequest(docs, config, prefix, partial(loop.call_soon_threadsafe, _wake, fut, True))
    if sum(len(str(doc)) for doc in docs) > INLINE_PREPARE_CHARS:
        # Long inputs tokenize in a thread, so one big request does not stall the event loop.
        await loop.run_in_executor(None, engine.prepare, request)
    engine.submit(request)
    timer = loop.call_later(timeout.seconds, _wake, fut, False) if timeout.seconds is not None else None
    completed = await fut
    if timer is not None:
        timer.cancel()
    if not completed and engine.timed_out(request):
        raise StatusException(f"timeout [{timeout.text}] waiting for inference result", 408)
    if request.error is not None:
        raise request.error
    return request.results  # type: ignore[return-value]


# --- the application --------------------------------------------------------------------

def create_app(state: WorkerState) -> Any:
    app = FastAPI(title="tmd worker", docs_url=None, redoc_url=None, openapi_url=None)

    def engine_or_409() -> InferenceEngine:
        if state.engine is None:
            raise StatusException(f"[{state.deployment_id}] process context missing", 409)
        return state.engine

    def read_state() -> tuple[Any, dict[str, int]] | None:
        engine = state.engine
        if engine is None:
            return None
        return engine.stats.snapshot(), {
            "pending": engine.queue.pending, "allocations": engine.number_of_allocations,
            "threads": engine.threads_per_allocation, "queue_capacity": engine.queue.capacity,
        }

    registry = make_registry(WorkerCollector(read_state, lambda: {"deployment_id": state.deployment_id}))

    @app.exception_handler(ElasticsearchError)
    async def on_es_error(_: Request, err: ElasticsearchError) -> Response:
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, err: RequestValidationError) -> Response:
        return error_response(ValidationFailed([str(e.get("msg", e)) for e in err.errors()]))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, err: StarletteHTTPException) -> Response:
        reason = f"no handler found for uri [{request.url.path}] and method [{request.method}]" if err.status_code in (404, 405) else str(err.detail)
        return error_response(ElasticsearchError(reason, status=err.status_code, type="status_exception"))

    @app.exception_handler(Exception)
    async def on_unexpected(_: Request, err: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(ElasticsearchError(f"internal error: {type(err).__name__}", status=500))

    @app.get("/stats")
    async def stats() -> Response:
        s = state.settings
        priority = "low" if s.low_priority else "normal"
        engine = state.engine
        if engine is None:
            return json_response({
                "deployment": {"deployment_id": state.deployment_id, "model_id": state.model_id,
                               "threads_per_allocation": s.threads, "number_of_allocations": s.allocations,
                               "queue_capacity": s.queue_capacity, "cache_size": state.cache_size_text,
                               "priority": priority, "tmd_batching": batching_stats(state.batching, None)},
                "node": not_started_node("starting", None)})
        snap = engine.stats.snapshot()
        deployment = deployment_stats(
            snap, model_id=state.model_id, deployment_id=state.deployment_id,
            allocations=engine.number_of_allocations, threads=engine.threads_per_allocation,
            queue_capacity=engine.queue.capacity, cache_size=state.cache_size_text, priority=priority)
        deployment["tmd_batching"] = batching_stats(state.batching, engine.plan.mode)
        if state.stopping:
            node = not_started_node("stopping", "worker is shutting down")
        else:
            node = node_stats(snap, pending=engine.queue.pending, allocations=engine.number_of_allocations,
                              threads=engine.threads_per_allocation)
        return json_response({"deployment": deployment, "node": node})

    @app.post("/cache/_clear")
    async def clear_cache() -> Response:
        engine_or_409().clear_cache()
        return json_response({"cleared": True})

    def allocations_body(engine: InferenceEngine) -> dict[str, int]:
        return {"number_of_allocations": engine.number_of_allocations, "threads_per_allocation": engine.threads_per_allocation}

    @app.get("/allocations")
    async def get_allocations() -> Response:
        return json_response(allocations_body(engine_or_409()))

    @app.post("/allocations")
    async def set_allocations(request: Request) -> Response:
        n = parse_allocations_body(parse_json_body(await request.body()))
        engine = engine_or_409()
        engine.set_allocations(n)
        # Answer once surplus lanes have left, so a caller that shrinks the pod's CPU next
        # (the operator) never takes CPU from lanes still computing.
        await asyncio.to_thread(engine.lanes.wait_for_surplus_to_leave, ALLOCATION_CHANGE_WAIT_S)
        return json_response(allocations_body(engine))

    @app.get("/batching")
    async def get_batching() -> Response:
        return json_response(batching_stats(state.batching, engine_or_409().plan.mode))

    @app.post("/batching")
    async def set_batching(request: Request) -> Response:
        batching = parse_batching_body(parse_json_body(await request.body()), state.batching)
        engine = engine_or_409()
        delay_s = parse_time_value(batching.max_batch_delay, "max_batch_delay").seconds or 0.0
        engine.set_batching(batching.max_batch_size, delay_s)
        state.batching = batching
        log.info("max_batch_size=%d max_batch_delay=%s", batching.max_batch_size, batching.max_batch_delay)
        return json_response(batching_stats(batching, engine.plan.mode))

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        return json_response({"ready": state.ready}, 200 if state.ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE)

    async def infer(raw: bytes, query_string: bytes) -> bytes:
        docs, config, prefix, body_timeout = parse_infer_body(parse_json_body(raw))
        query_timeout = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("timeout", [None])[-1] if query_string else None
        timeout = resolve_timeout(query_timeout, body_timeout)
        results = await run_request(engine_or_409(), docs, config, prefix, timeout)
        return orjson.dumps({"inference_results": results})

    return InferEndpoint(ElasticProductHeader(app), infer)


class InferEndpoint:
    """`POST /infer` as a plain ASGI endpoint in front of the FastAPI app, which serves the rest.

    The inference path is the one every request takes: profiled under load (py-spy), FastAPI's
    routing, middleware and exception layers were about 40 % of the event loop's CPU for each
    request. Here it reads the body, calls `handle` and answers, with the same Elasticsearch
    errors and the product header as every other route.
    """

    JSON_HEADERS = [(b"content-type", b"application/json"), PRODUCT_HEADER]

    def __init__(self, app: Any, handle: Any) -> None:
        self.app = app
        self.handle = handle

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/infer" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        status = 200
        try:
            payload = await self.handle(b"".join(chunks) if len(chunks) > 1 else chunks[0], scope["query_string"])
        except ElasticsearchError as err:
            status, payload = err.status, orjson.dumps(err.body())
        except Exception as err:
            log.exception("unexpected error")
            error = ElasticsearchError(f"internal error: {type(err).__name__}", status=500)
            status, payload = 500, orjson.dumps(error.body())
        await send({"type": "http.response.start", "status": status,
                    "headers": [*self.JSON_HEADERS, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
