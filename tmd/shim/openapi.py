"""The shim's API as an OpenAPI 3.1 description, served at `GET /_tmd/openapi.json`.

One table, `ENDPOINTS`, names every route the shim serves with the query parameters its
Elasticsearch handler consumes; the routes in `tmd.shim.app` read their parameter lists from it,
so the description cannot drift from what the shim accepts (tests/shim/test_openapi.py checks
the route set both ways). Request bodies reuse the pydantic models of `tmd.api` where
Elasticsearch's body is the same thing (inference and tokenization configs, adaptive
allocations); the rest is written here with the types Elasticsearch documents. Every error is
the Elasticsearch error body (es-api.md §0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tmd.api.deployment import AdaptiveAllocations, Priority, TmdBatching, WaitFor
from tmd.api.trained_model import (TASK_CONFIGS, TOKENIZATIONS, TRUNCATE_VALUES, PrefixStrings, TokenizationUpdate,
                                   TrainedModelInput)
from tmd.shim.http import INT_MAX

Schema = dict[str, Any]
M = "/_ml/trained_models"
I = "/_inference"
OPENAPI_PATH = "/_tmd/openapi.json"
CONSOLE_PATH = "/_tmd/console"


@dataclass(frozen=True)
class Endpoint:
    """One Elasticsearch API (its rest-api-spec name) on one HTTP method."""

    name: str
    method: str
    paths: tuple[str, ...]
    summary: str
    params: tuple[str, ...] = ()
    body: str | None = None          # a key of `_bodies()`
    body_required: bool = False
    response: str = "object"         # a key of `_responses()`
    deprecated: bool = False


# --------------------------------------------------------------------------- the routes

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("info", "GET", ("/",), "Cluster name and version (what the official clients check)", response="info"),
    Endpoint("ping", "HEAD", ("/",), "Is the shim up", response="empty"),
    Endpoint("ml.put_trained_model", "PUT", (M + "/{model_id}",), "Create a pytorch trained model",
             ("defer_definition_decompression", "wait_for_completion"), "trained_model_config", True, "model_config"),
    Endpoint("ml.get_trained_models", "GET", (M, M + "/{model_id}"), "Trained model configurations",
             ("allow_no_match", "include", "include_model_definition", "decompress_definition", "from", "size", "tags",
              "exclude_generated"), response="model_configs"),
    Endpoint("ml.delete_trained_model", "DELETE", (M + "/{model_id}",), "Delete a trained model",
             ("timeout", "force"), response="acknowledged"),
    Endpoint("ml.put_trained_model_definition_part", "PUT", (M + "/{model_id}/definition/{part}",),
             "Upload one base64 part of the TorchScript definition", (), "definition_part", True, "acknowledged"),
    Endpoint("ml.put_trained_model_vocabulary", "PUT", (M + "/{model_id}/vocabulary",),
             "Upload the tokenizer vocabulary", (), "vocabulary", True, "acknowledged"),
    Endpoint("ml.put_trained_model_alias", "PUT", (M + "/{model_id}/model_aliases/{model_alias}",),
             "Point a model alias at a model", ("reassign",), response="acknowledged"),
    Endpoint("ml.delete_trained_model_alias", "DELETE", (M + "/{model_id}/model_aliases/{model_alias}",),
             "Remove a model alias", response="acknowledged"),
    Endpoint("ml.get_trained_models_stats", "GET", (M + "/_stats", M + "/{model_id}/_stats"),
             "Model sizes and deployment statistics", ("allow_no_match", "from", "size"), response="model_stats"),
    Endpoint("ml.start_trained_model_deployment", "POST", (M + "/{model_id}/deployment/_start",),
             "Start a deployment of a model",
             ("cache_size", "deployment_id", "number_of_allocations", "threads_per_allocation", "priority",
              "queue_capacity", "timeout", "wait_for", "model_threads", "inference_threads"), "start", False,
             "assignment"),
    Endpoint("ml.stop_trained_model_deployment", "POST", (M + "/{model_id}/deployment/_stop",),
             "Stop deployments (the path names deployment ids)", ("allow_no_match", "force", "finish_pending_work"),
             "stop", False, "stopped"),
    Endpoint("ml.update_trained_model_deployment", "POST", (M + "/{model_id}/deployment/_update",),
             "Change a deployment's allocations (and tmd's batching knobs)", ("timeout", "master_timeout", "number_of_allocations"),
             "update", False, "assignment"),
    Endpoint("ml.clear_trained_model_deployment_cache", "POST", (M + "/{model_id}/deployment/cache/_clear",),
             "Clear a deployment's inference cache on every node", response="cleared"),
    Endpoint("ml.infer_trained_model", "POST", (M + "/{model_id}/_infer",),
             "Infer on documents with a deployed model (id, alias or deployment id)", ("timeout",), "infer", True,
             "inference_results"),
    Endpoint("ml.infer_trained_model_deployment", "POST", (M + "/{model_id}/deployment/_infer",),
             "Deprecated single-document inference: the result flattened at top level", ("timeout",), "infer", True,
             "object", deprecated=True),
    Endpoint("cat.ml_trained_models", "GET", ("/_cat/ml/trained_models", "/_cat/ml/trained_models/{model_id}"),
             "Trained models as a table", ("allow_no_match", "from", "size", "bytes", "format", "h", "help", "s",
                                           "time", "v"), response="cat"),
    Endpoint("ml.info", "GET", ("/_ml/info",), "Machine learning defaults and limits, from the ML nodes",
             response="ml_info"),
    Endpoint("ml.get_memory_stats", "GET", ("/_ml/memory/_stats", "/_ml/memory/{node_id}/_stats"),
             "Memory of each ML node and what inference uses of it", ("master_timeout", "timeout"),
             response="memory_stats"),
    Endpoint("nodes.info", "GET", ("/_nodes/{node_id}/{metric}",),
             "tmd: the ML nodes' `os` info (what Kibana's trained models page reads); other metrics refused",
             ("flat_settings", "timeout"), response="nodes_info"),
    # Update before put: `PUT /_inference/x/_update` is the update API, not task type x.
    Endpoint("inference.update", "PUT", (I + "/{inference_id}/_update", I + "/{task_type}/{inference_id}/_update"),
             "Change an elasticsearch-service endpoint's allocations", (), "inference_update", True,
             "inference_endpoint"),
    Endpoint("inference.put", "PUT", (I + "/{inference_id}", I + "/{task_type}/{inference_id}"),
             "Create an elasticsearch-service inference endpoint: starts a deployment (or attaches to one)",
             ("timeout",), "inference_endpoint", True, "inference_endpoint"),
    Endpoint("inference.get", "GET", (I, I + "/{inference_id}", I + "/{task_type}/{inference_id}"),
             "Inference endpoints (`_all` for every one)", response="inference_endpoints"),
    Endpoint("inference.delete", "DELETE", (I + "/{inference_id}", I + "/{task_type}/{inference_id}"),
             "Delete an inference endpoint and stop the deployment it started", ("dry_run", "force"),
             response="inference_deleted"),
    Endpoint("inference.stream_completion", "POST", (I + "/completion/{inference_id}/_stream",),
             "Streamed completion: no elasticsearch-service endpoint does completion (the task type error)",
             ("timeout",), "object", False, "object"),
    Endpoint("inference.chat_completion_unified", "POST", (I + "/chat_completion/{inference_id}/_stream",),
             "Streamed chat completion: no elasticsearch-service endpoint does it (the task type error)",
             ("timeout",), "object", False, "object"),
    Endpoint("inference.inference", "POST", (I + "/{inference_id}", I + "/{task_type}/{inference_id}"),
             "Embed, expand or rerank `input` with an endpoint", ("timeout",), "inference_input", True,
             "inference_results_of_task"),
    Endpoint("tmd.store_file", "GET", ("/_tmd/store/{name}/{filename}",),
             "tmd: an assembled model file, for workers on other machines (no credentials needed)",
             response="file"),
    Endpoint("tmd.openapi", "GET", (OPENAPI_PATH,), "tmd: this description", response="openapi"),
    Endpoint("tmd.console", "GET", (CONSOLE_PATH,), "tmd: the web console (docs/console.md)", response="html"),
    Endpoint("tmd.console_state", "GET", (CONSOLE_PATH + "/state",),
             "tmd: what the console shows: deployments, nodes × deployments, events, chart samples", ("since",)),
    Endpoint("tmd.console_asset", "GET", (CONSOLE_PATH + "/static/{asset}",),
             "tmd: the console's script, style sheet, icon and vendored chart library", response="asset"),
)

BY_NAME = {e.name: e for e in ENDPOINTS}


def params(name: str) -> tuple[str, ...]:
    """The query parameters (besides the global ones) the route of API `name` consumes."""
    return BY_NAME[name].params


# --------------------------------------------------------------------------- parameter types

# A boolean query parameter: true, false, or empty (a bare flag, which is true).
_FLAG: Schema = {"type": ["boolean", "string"], "enum": [True, False, ""]}
_BOOL: Schema = {"type": "boolean"}
_INT: Schema = {"type": "integer"}
# Elasticsearch's Duration and ByteSize (tsspec _types/Time.ts, _types/common.ts)
_DURATION: Schema = {"anyOf": [{"type": "string"}, {"enum": [-1, 0]}], "description": "A time value: a number and a unit (nanos, micros, ms, s, m, "
                                                      "h, d), or -1 (no limit) or 0.", "examples": ["10s", "500ms"]}
_BYTE_SIZE: Schema = {"anyOf": [{"type": "string"}, {"enum": [0]}], "description": "A byte size: 0 or a number and a unit (b, kb, "
                                                                    "mb, gb, tb, pb).", "examples": ["10kb", "0"]}

GLOBAL_PARAMS: dict[str, tuple[Schema, str]] = {
    "pretty": (_FLAG, "Indent the JSON response."),
    "human": (_FLAG, "Add human-readable sizes (trained model stats)."),
    "error_trace": (_FLAG, "Accepted; tmd never returns stack traces."),
    "filter_path": ({"type": "string"}, "Accepted and ignored by tmd: the whole response is returned."),
}

PARAMS: dict[str, tuple[Schema, str]] = {
    "allow_no_match": (_FLAG, "Whether ids or wildcards that match nothing are an error (false) or an empty "
                              "answer (true, the default)."),
    "include": ({"type": "string"}, "Comma list of: definition (refused for pytorch models), definition_status, "
                                    "total_feature_importance, feature_importance_baseline, hyperparameters."),
    "include_model_definition": (_FLAG, "Deprecated: include=definition."),
    "decompress_definition": (_FLAG, "Accepted; pytorch definitions are never returned."),
    "from": ({**_INT, "minimum": 0, "maximum": INT_MAX}, "Skip this many models (default 0)."),
    "size": ({**_INT, "minimum": 0, "maximum": INT_MAX}, "Return at most this many models (default 100)."),
    "tags": ({"type": "string"}, "Comma list: only models carrying every tag."),
    "exclude_generated": (_FLAG, "Accepted and ignored."),
    "timeout": (_DURATION, "How long to wait (start: 30s, infer: 10s, delete: 30s)."),
    "master_timeout": (_DURATION, "Accepted and ignored (there is no master node)."),
    "force": (_FLAG, "Delete or stop a model that is deployed."),
    "defer_definition_decompression": (_FLAG, "Accepted and ignored (definitions are not compressed)."),
    "wait_for_completion": (_FLAG, "Accepted; packaged model downloads are not served."),
    "since": ({"type": "number", "minimum": 0}, "Console: only chart samples newer than this (epoch seconds; "
                                                "default 0, all of the last 15 minutes)."),
    "reassign": (_FLAG, "Move an alias that already points at another model."),
    "cache_size": (_BYTE_SIZE, "Inference cache size per node (default: the model size; 0 disables)."),
    "deployment_id": ({"type": "string"}, "Id of the deployment (default: the model id)."),
    "number_of_allocations": ({**_INT, "minimum": 1}, "Total allocations across ML nodes (default 1)."),
    "threads_per_allocation": ({**_INT, "enum": [1, 2, 4, 8, 16, 32]}, "Threads per allocation (default 1)."),
    "priority": ({"type": "string", "enum": [p.value for p in Priority]}, "normal (default) or low."),
    "queue_capacity": ({**_INT, "minimum": 1, "maximum": 1_000_000}, "Queued requests per node (default 1024)."),
    "wait_for": ({"type": "string", "enum": [w.value for w in WaitFor]}, "Answer once the deployment reaches this "
                                                                          "state (default started)."),
    "model_threads": ({**_INT, "minimum": 1}, "Deprecated name of number_of_allocations."),
    "inference_threads": ({**_INT, "enum": [1, 2, 4, 8, 16, 32]}, "Deprecated name of threads_per_allocation."),
    "finish_pending_work": (_FLAG, "Accepted; workers always finish queued work on stop."),
    "bytes": ({"type": "string"}, "Accepted and ignored (sizes are printed as Elasticsearch's default does)."),
    "format": ({"type": "string"}, "json for a JSON array; anything else is the text table."),
    "h": ({"type": "string"}, "Comma list of columns (names or aliases)."),
    "help": (_FLAG, "Accepted and ignored."),
    "s": ({"type": "string"}, "Accepted and ignored."),
    "time": ({"type": "string"}, "Accepted and ignored."),
    "v": (_FLAG, "Print the column header."),
    "flat_settings": (_FLAG, "Accepted; the os metric has no settings."),
    "dry_run": (_FLAG, "Only say what refers to the endpoint (in tmd: nothing), delete nothing."),
}

FLAGS = frozenset(name for name, (schema, _) in {**GLOBAL_PARAMS, **PARAMS}.items() if schema is _FLAG)

_ID: Schema = {"type": "string", "minLength": 1}
PATH_PARAMS: dict[str, tuple[Schema, str]] = {
    "model_id": (_ID, "A model id; on read APIs also a comma list, wildcard or alias; on stop, update and cache "
                      "clear a deployment id."),
    "model_alias": (_ID, "The alias."),
    "part": ({"type": "integer", "minimum": 0, "maximum": 9_999}, "Number of the definition part, from 0."),
    "name": (_ID, "The model's resource name."),
    "filename": (_ID, "model.pt or vocabulary.json."),
    "node_id": (_ID, "Node names, uids or wildcards, comma separated; `_all`; role filters such as `ml:true`."),
    "metric": ({"type": "string", "enum": ["os"]}, "The nodes info metric: tmd serves `os`."),
    "inference_id": (_ID, "The inference endpoint id (`_all` on GET)."),
    "task_type": ({"type": "string", "enum": ["text_embedding", "sparse_embedding", "rerank", "completion",
                                              "chat_completion"]},
                  "The endpoint's task type; tmd's elasticsearch service serves the first three."),
    "asset": (_ID, "console.js, console.css, favicon.svg, uPlot.iife.min.js or uPlot.min.css."),
}


# --------------------------------------------------------------------------- schemas

def pydantic_schema(model: type[BaseModel]) -> Schema:
    """A model's JSON Schema, $refs inlined (none of these models is recursive), titles dropped."""
    schema = model.model_json_schema(mode="validation")
    return _inline(schema, schema.get("$defs", {}))


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline({**defs[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}},
                           defs)
        return {k: _inline(v, defs) for k, v in node.items() if k not in ("$defs", "title")}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _one_of_named(options: dict[str, Schema]) -> Schema:
    """Elasticsearch's NamedObject: an object with exactly one key naming the variant."""
    return {"type": "object", "properties": options, "additionalProperties": False, "minProperties": 1,
            "maxProperties": 1}


def tokenization_schema() -> Schema:
    variants = {}
    for kind, cls in TOKENIZATIONS.items():
        schema = pydantic_schema(cls)
        schema["properties"]["truncate"] = {"type": "string", "enum": list(TRUNCATE_VALUES)}
        variants[kind] = schema
    return _one_of_named(variants)


def tokenization_update_schema() -> Schema:
    """Only `truncate` and `span` may be overridden per request (es-api.md §5.4 step 3)."""
    schema = pydantic_schema(TokenizationUpdate)
    schema["properties"]["truncate"] = {"type": "string", "enum": list(TRUNCATE_VALUES)}
    return _one_of_named({kind: schema for kind in TOKENIZATIONS})


def inference_config_schema(*, update: bool = False) -> Schema:
    """`{<task>: {...}}` as put trained model takes it, or (update) the per-request overrides of §5.4."""
    tasks = {}
    for task, cls in TASK_CONFIGS.items():
        schema = pydantic_schema(cls)
        props = schema["properties"]
        props.pop("vocabulary", None)  # refused at creation; Elasticsearch writes it back
        props["tokenization"] = _ref("TokenizationUpdate" if update else "Tokenization")
        if update:
            schema["properties"] = {k: v for k, v in props.items() if k in cls.updatable}
            schema.pop("required", None)
        tasks[task] = schema
    return _one_of_named(tasks)


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: Schema, required: tuple[str, ...] = (), additional: bool = False) -> Schema:
    out: Schema = {"type": "object", "properties": properties, "additionalProperties": additional}
    if required:
        out["required"] = list(required)
    return out


def _bodies() -> dict[str, Schema]:
    adaptive = _ref("AdaptiveAllocations")
    batching = _ref("TmdBatching")  # a tmd extension (docs/api.md)
    deployment_fields = {
        "model_id": {"type": "string"}, "deployment_id": {"type": "string"},
        **{name: PARAMS[name][0] for name in ("number_of_allocations", "threads_per_allocation", "queue_capacity",
                                              "cache_size", "priority", "timeout", "wait_for", "model_threads",
                                              "inference_threads")},
        "adaptive_allocations": adaptive,
        "tmd_batching": batching,
    }
    return {
        # TrainedModelConfig (tsspec ml/put_trained_model/MlPutTrainedModelRequest.ts)
        "trained_model_config": _object({
            "model_id": {"type": "string"},
            "model_type": {"type": "string", "enum": ["tree_ensemble", "lang_ident", "pytorch"],
                           "description": "tmd serves pytorch only; other types are refused with 400."},
            "inference_config": _ref("InferenceConfig"),
            "input": pydantic_schema(TrainedModelInput),
            "description": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "metadata": {"type": "object"},
            "prefix_strings": pydantic_schema(PrefixStrings),
            "platform_architecture": {"type": "string"},
            "compressed_definition": {"type": "string", "description": "Refused: upload pytorch definitions in "
                                                                       "parts."},
            "definition": {"type": "object", "description": "Refused: upload pytorch definitions in parts."},
            "model_size_bytes": {"type": "integer"},
        }, ("inference_config",)),
        "definition_part": _object({
            "definition": {"type": "string", "contentEncoding": "base64"},
            "total_definition_length": {"type": "integer", "minimum": 1},
            "total_parts": {"type": "integer", "minimum": 1, "maximum": 10_000},
        }, ("definition", "total_definition_length", "total_parts")),
        "vocabulary": _object({
            "vocabulary": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "merges": {"type": "array", "items": {"type": "string"}},
            "scores": {"type": "array", "items": {"type": "number"}},
        }, ("vocabulary",)),
        "start": _object(deployment_fields),
        "stop": _object({"id": {"type": "string"}, "allow_no_match": _BOOL, "force": _BOOL,
                         "finish_pending_work": _BOOL}),
        "update": _object({"model_id": {"type": "string"}, "deployment_id": {"type": "string"},
                           "number_of_allocations": {**_INT, "minimum": 1}, "adaptive_allocations": adaptive,
                           "tmd_batching": batching}),
        "inference_endpoint": _object({
            "service": {"type": "string", "enum": ["elasticsearch", "elser"]},
            "task_type": {"type": "string"},
            "service_settings": _object({
                "model_id": {"type": "string"}, "deployment_id": {"type": "string"},
                "num_allocations": {**_INT, "minimum": 1}, "num_threads": {**_INT, "enum": [1, 2, 4, 8, 16, 32]},
                "adaptive_allocations": adaptive}),
            "task_settings": {"type": "object"},
            "chunking_settings": {"type": "object"},
        }, ("service", "service_settings")),
        "inference_update": _object({"service_settings": _object({
            "num_allocations": {**_INT, "minimum": 1}, "adaptive_allocations": adaptive}),
            "task_settings": {"type": "object"}}),
        "inference_input": _object({
            "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
            "query": {"type": "string", "description": "rerank: the query the inputs are scored against."},
            "input_type": {"type": "string"}, "task_settings": {"type": "object"},
            "return_documents": _BOOL, "top_n": {**_INT, "minimum": 0}, "timeout": _DURATION,
        }, ("input",)),
        "object": {"type": "object"},
        "infer": _object({
            "docs": {"type": "array", "minItems": 1, "items": {"type": "object"},
                     "description": "Documents: the model's input field (default `input`) holds the text."},
            "inference_config": _ref("InferenceConfigUpdate"),
            "timeout": _DURATION,
        }, ("docs",)),
    }


ERROR_CAUSE: Schema = {"type": "object", "required": ["type", "reason"], "additionalProperties": True,
                       "properties": {"type": {"type": "string"}, "reason": {"type": "string"}}}
ERROR: Schema = {
    "type": "object", "required": ["error", "status"], "additionalProperties": False,
    "description": "Elasticsearch's error body; `type` is the snake_case exception name clients report.",
    "properties": {
        "error": {**ERROR_CAUSE, "required": ["root_cause", "type", "reason"],
                  "properties": {**ERROR_CAUSE["properties"],
                                 "root_cause": {"type": "array", "minItems": 1, "items": ERROR_CAUSE}}},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
    },
}

_ASSIGNMENT = _object({
    "task_parameters": _object({"model_id": {"type": "string"}, "deployment_id": {"type": "string"},
                                "model_bytes": _INT, "threads_per_allocation": _INT, "number_of_allocations": _INT,
                                "queue_capacity": _INT, "cache_size": {"type": "string"},
                                "priority": {"type": "string", "enum": [p.value for p in Priority]}},
                               ("model_id", "deployment_id", "threads_per_allocation", "number_of_allocations",
                                "queue_capacity", "priority"), additional=True),
    "routing_table": {"type": "object", "additionalProperties": _object(
        {"current_allocations": _INT, "target_allocations": _INT, "routing_state": {"type": "string"},
         "reason": {"type": "string"}}, ("current_allocations", "target_allocations", "routing_state"))},
    "assignment_state": {"type": "string", "enum": ["starting", "started", "stopping", "failed"]},
    "reason": {"type": "string"},
    "start_time": {"type": ["string", "integer"]},
    "max_assigned_allocations": _INT,
}, ("task_parameters", "routing_table", "assignment_state"), additional=True)


_INFERENCE_ENDPOINT = _object({
    "inference_id": {"type": "string"}, "task_type": {"type": "string"}, "service": {"type": "string"},
    "service_settings": {"type": "object"}, "task_settings": {"type": "object"},
    "chunking_settings": {"type": "object"}}, ("inference_id", "task_type", "service", "service_settings"))


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses() -> dict[str, dict[str, Any]]:
    ok = "OK"
    return {
        "info": {"description": ok, "content": _json(_object({
            "name": {"type": "string"}, "cluster_name": {"type": "string"}, "cluster_uuid": {"type": "string"},
            "version": _object({"number": {"type": "string"}, "build_flavor": {"type": "string"}}, ("number",), True),
            "tagline": {"type": "string", "const": "You Know, for Search"}},
            ("name", "cluster_name", "cluster_uuid", "version", "tagline"), True))},
        "empty": {"description": ok},
        "model_config": {"description": "The stored configuration, defaults filled", "content": _json(_object({
            "model_id": {"type": "string"}, "model_type": {"type": "string"}, "inference_config": {"type": "object"}},
            ("model_id", "model_type", "inference_config"), True))},
        "model_configs": {"description": ok, "content": _json(_object({
            "count": {**_INT, "minimum": 0}, "trained_model_configs": {"type": "array", "items": _object(
                {"model_id": {"type": "string"}}, ("model_id",), True)}}, ("count", "trained_model_configs")))},
        "acknowledged": {"description": ok, "content": _json(_object({"acknowledged": _BOOL}, ("acknowledged",)))},
        "model_stats": {"description": "One element per deployment (a model without one: one element)",
                        "content": _json(_object({
                            "count": {**_INT, "minimum": 0}, "trained_model_stats": {"type": "array", "items": _object(
                                {"model_id": {"type": "string"}, "model_size_stats": {"type": "object"},
                                 "pipeline_count": _INT, "deployment_stats": {"type": "object"}},
                                ("model_id", "model_size_stats", "pipeline_count"), True)}},
                            ("count", "trained_model_stats")))},
        "assignment": {"description": ok, "content": _json(_object({"assignment": _ASSIGNMENT}, ("assignment",)))},
        "stopped": {"description": ok, "content": _json(_object({"stopped": _BOOL}, ("stopped",)))},
        "cleared": {"description": ok, "content": _json(_object({"cleared": _BOOL}, ("cleared",)))},
        "inference_results": {"description": "One result per document, in order", "content": _json(_object(
            {"inference_results": {"type": "array", "items": {"type": "object"}}}, ("inference_results",)))},
        "object": {"description": ok, "content": _json({"type": "object"})},
        "ml_info": {"description": ok, "content": _json(_object({
            "defaults": {"type": "object"}, "upgrade_mode": _BOOL, "native_code": {"type": "object"},
            "limits": _object({"total_ml_memory": {"type": "string"}, "total_ml_processors": _INT,
                               "max_single_ml_node_processors": _INT,
                               "effective_max_model_memory_limit": {"type": "string"}}, ("total_ml_memory",))},
            ("defaults", "upgrade_mode", "native_code", "limits")))},
        "memory_stats": {"description": "One entry per ML node, keyed by node id", "content": _json(_object({
            "_nodes": {"type": "object"}, "cluster_name": {"type": "string"},
            "nodes": {"type": "object", "additionalProperties": _object(
                {"name": {"type": "string"}, "mem": {"type": "object"}, "jvm": {"type": "object"}},
                ("name", "mem", "jvm"), True)}}, ("_nodes", "cluster_name", "nodes")))},
        "nodes_info": {"description": "The matching ML nodes", "content": _json(_object({
            "_nodes": {"type": "object"}, "cluster_name": {"type": "string"},
            "nodes": {"type": "object", "additionalProperties": _object(
                {"name": {"type": "string"}, "os": {"type": "object"}}, ("name",), True)}},
            ("_nodes", "cluster_name", "nodes")))},
        "inference_endpoint": {"description": "The endpoint's configuration", "content": _json(_INFERENCE_ENDPOINT)},
        "inference_endpoints": {"description": ok, "content": _json(_object(
            {"endpoints": {"type": "array", "items": _INFERENCE_ENDPOINT}}, ("endpoints",)))},
        "inference_deleted": {"description": ok, "content": _json(_object(
            {"acknowledged": _BOOL, "pipelines": {"type": "array"}, "indexes": {"type": "array"}},
            ("acknowledged", "pipelines", "indexes")))},
        "inference_results_of_task": {"description": "`text_embedding`, `sparse_embedding` or `rerank` results",
                                      "content": _json({**_object({
            "text_embedding": {"type": "array", "items": _object({"embedding": {"type": "array"}}, ("embedding",))},
            "sparse_embedding": {"type": "array", "items": _object(
                {"is_truncated": _BOOL, "embedding": {"type": "object"}}, ("is_truncated", "embedding"))},
            "rerank": {"type": "array", "items": _object(
                {"index": _INT, "relevance_score": {"type": "number"}, "text": {"type": "string"}},
                ("index", "relevance_score"))}}), "minProperties": 1, "maxProperties": 1})},
        "cat": {"description": "A text table, or a JSON array with format=json",
                "content": {"text/plain": {"schema": {"type": "string"}},
                            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}},
        "file": {"description": "The file's bytes",
                 "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        "html": {"description": "An HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
        "asset": {"description": "A script or style sheet",
                  "content": {"text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}},
                              "image/svg+xml": {"schema": {"type": "string"}}}},
        "openapi": {"description": "This document", "content": _json(_object(
            {"openapi": {"type": "string"}, "paths": {"type": "object"}}, ("openapi", "paths"), True))},
    }


# --------------------------------------------------------------------------- the document

def _parameter(name: str, where: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {"name": name, "in": where, "required": required, "schema": schema, "description": description}


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def build(version: str, *, auth: bool) -> dict[str, Any]:
    """The description of a shim reporting Elasticsearch `version`, with or without credentials."""
    bodies, responses = _bodies(), _responses()
    error = {"description": "An Elasticsearch error", "content": _json({"$ref": "#/components/schemas/Error"})}
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        for i, path in enumerate(endpoint.paths):
            operation: dict[str, Any] = {
                "operationId": endpoint.name + (f"-{i}" if i else ""),
                "summary": endpoint.summary,
                "parameters": [
                    *(_parameter(p, "path", *PATH_PARAMS[p], True) for p in _path_params(path)),
                    *(_parameter(p, "query", *PARAMS[p]) for p in endpoint.params),
                    *(_parameter(p, "query", *GLOBAL_PARAMS[p]) for p in GLOBAL_PARAMS),
                ],
                "responses": {"200": responses[endpoint.response], "default": error},
            }
            if endpoint.body is not None:
                operation["requestBody"] = {"required": endpoint.body_required, "content": {
                    "application/json": {"schema": bodies[endpoint.body]}}}
            if endpoint.deprecated:
                operation["deprecated"] = True
            if auth and endpoint.name == "tmd.store_file":
                operation["security"] = []
            paths.setdefault(path, {})[endpoint.method.lower()] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "tmd shim: Elasticsearch trained model APIs", "version": version,
                 "description": "The Elasticsearch APIs tmd serves (docs/api.md says how each compares with "
                                "Elasticsearch). Every response carries `X-elastic-product: Elasticsearch`."},
        "paths": paths,
        "components": {"schemas": {
            "Error": ERROR, "Tokenization": tokenization_schema(), "TokenizationUpdate": tokenization_update_schema(), "InferenceConfig": inference_config_schema(),
            "InferenceConfigUpdate": inference_config_schema(update=True),
            "AdaptiveAllocations": pydantic_schema(AdaptiveAllocations),
            "TmdBatching": pydantic_schema(TmdBatching)}},
    }
    if auth:
        document["components"]["securitySchemes"] = {
            "basic": {"type": "http", "scheme": "basic"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "Authorization",
                       "description": "`ApiKey base64(id:key)`"}}
        document["security"] = [{"basic": []}, {"apiKey": []}]
    return document
