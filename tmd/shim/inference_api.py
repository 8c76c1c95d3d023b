"""The `_inference` API with the `elasticsearch` service (Elasticsearch 8.13+ / 9.x).

An inference endpoint of the `elasticsearch` service names a trained model deployment: PUT starts
one (a TrainedModelDeployment whose deployment id is the inference id, as `_start` creates it) or
attaches to an existing one (`service_settings.deployment_id`); POST runs `_infer` on it and
answers in the `_inference` result shapes; DELETE stops the deployment it started. The endpoint
itself (task type, service and task settings) is stored as a ConfigMap (tmd/shim/kube.py), so the
shim stays stateless. Checks, their order and their texts follow Elasticsearch's
TransportPutInferenceModelAction, ElasticsearchInternalService, ServiceUtils and InferenceAction.

The pure pieces (task type resolution, settings parsing, result shapes) are functions; the
`InferenceEndpoints` methods are the thin side-effecting calls around them.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Mapping

from tmd.api.deployment import AdaptiveAllocations, adaptive_allocations_errors
from tmd.api.errors import (ElasticsearchError, IllegalArgument, ParseError, ResourceAlreadyExists, ResourceNotFound,
                            StatusException, ValidationFailed)
from tmd.api.units import parse_time_value
from tmd.shim.kube import Conflict

if TYPE_CHECKING:
    from tmd.shim.service import Shim

Object = dict[str, Any]

SERVICE = "elasticsearch"
OLD_ELSER_SERVICE = "elser"
ANY = "any"
# TaskType (server/.../inference/TaskType.java) as the REST paths name them.
TASK_TYPES = ("text_embedding", "sparse_embedding", "rerank", "completion", "chat_completion")
# ElasticsearchInternalService.inferenceConfigToTaskType: the model's inference config → task type
# (so the task types the service supports: text_embedding, sparse_embedding, rerank).
TASK_OF_CONFIG = {"text_expansion": "sparse_embedding", "text_embedding": "text_embedding", "text_similarity": "rerank"}
# The default endpoints Elasticsearch reserves (they name packaged models, which tmd does not serve).
RESERVED_IDS = (".elser-2-elasticsearch", ".multilingual-e5-small-elasticsearch", ".rerank-v1-elasticsearch")
# ChunkingSettingsBuilder.DEFAULT_SETTINGS, what Elasticsearch stores for embedding endpoints without any.
DEFAULT_CHUNKING = {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}
SCOPE = "service_settings"
PUT_TIMEOUT = "30s"
INFER_TIMEOUT = "30s"   # InferenceAction.Request.DEFAULT_TIMEOUT
INFER_FIELDS = ("input", "input_type", "task_settings", "query", "return_documents", "top_n", "timeout")
INPUT_TYPES = ("ingest", "search", "classification", "clustering", "internal_ingest", "internal_search")
_INFER_ACTION = "cluster:internal/xpack/inference"
_EMBEDDING_TEST_INPUT = "how big"  # ServiceUtils.TEST_EMBEDDING_INPUT
CACHE_SECONDS = 1.0  # how long an endpoint read for inference is reused (service.ROUTE_CACHE_SECONDS)


# --------------------------------------------------------------------------- pure pieces

def parse_task_type(name: str) -> str:
    """TaskType.fromStringOrStatusException."""
    value = name.strip().lower()
    if value not in (*TASK_TYPES, ANY):
        raise StatusException(f"Unknown task_type [{name}]", 400)
    return value


def task_of(path_task: str | None) -> str:
    """The task type a route's path names: `any` when it names none (RestPutInferenceModelAction & co.)."""
    return ANY if path_task is None else parse_task_type(path_task)


def resolve_task_type(url_task: str, body_task: Any) -> str:
    """ServiceUtils.resolveTaskType: the URL's or the body's task type, never both different."""
    if body_task is None:
        if url_task == ANY:
            raise StatusException("model is missing required setting [task_type]", 400)
        return url_task
    parsed = parse_task_type(str(body_task))
    if parsed == ANY:
        raise StatusException("task_type [any] is not valid type for inference", 400)
    if url_task not in (ANY, parsed):
        raise StatusException(f"Cannot resolve conflicting task_type parameter in the request URL [{url_task}] and "
                              f"the request body [{body_task}]", 400)
    return parsed


def java_map(value: Any) -> str:
    """A value as Java's Map/List toString renders it (the unknown-settings error quotes the map)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={java_map(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(java_map(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def unknown_settings(settings: Mapping[str, Any]) -> None:
    """ServiceUtils.throwIfNotEmptyMap."""
    if settings:
        raise StatusException(f"Model configuration contains settings [{java_map(dict(settings))}] unknown to the "
                              f"[{SERVICE}] service", 400)


_JAVA_TYPES = {bool: "Boolean", int: "Integer", str: "String", dict: "Map"}


def _remove(settings: dict[str, Any], key: str, kind: type, errors: list[str]) -> Any:
    """ServiceUtils.removeAsType with a ValidationException."""
    value = settings.pop(key, None)
    if value is None:
        return None
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    errors.append(f"field [{key}] is not of the expected type. The value [{java_map(value)}] cannot be converted to "
                  f"a [{_JAVA_TYPES[kind]}]")
    return None


def parse_service_settings(raw: Mapping[str, Any]) -> tuple[Object, dict[str, Any]]:
    """ElasticsearchInternalServiceSettings.fromRequestMap: (settings, what is left unread).

    Raises ValidationFailed with every error, as its ValidationException does."""
    left = dict(raw)
    errors: list[str] = []
    out: Object = {}
    allocations = _remove(left, "num_allocations", int, errors)
    if allocations is not None and allocations <= 0:
        errors.append(f"[{SCOPE}] Invalid value [{allocations}]. [num_allocations] must be a positive integer")
        allocations = None
    threads = _remove(left, "num_threads", int, errors)
    if threads is None and not any(e.startswith("field [num_threads]") for e in errors):
        errors.append(f"[{SCOPE}] does not contain the required setting [num_threads]")
    elif threads is not None and threads <= 0:
        errors.append(f"[{SCOPE}] Invalid value [{threads}]. [num_threads] must be a positive integer")
    adaptive = left.pop("adaptive_allocations", None)
    if adaptive is not None:
        if not isinstance(adaptive, dict):
            errors.append("field [adaptive_allocations] is not of the expected type. The value "
                          f"[{java_map(adaptive)}] cannot be converted to a [Map]")
            adaptive = None
        else:
            adaptive = dict(adaptive)
            parsed = {k: _remove(adaptive, k, kind, errors) for k, kind in
                      (("enabled", bool), ("min_number_of_allocations", int), ("max_number_of_allocations", int))}
            errors.extend(f"[adaptive_allocations] does not allow the setting [{k}]" for k in adaptive)
            settings = AdaptiveAllocations(**parsed)
            errors.extend(adaptive_allocations_errors(settings))
            adaptive = settings.to_es()
    for key in ("model_id", "deployment_id"):
        value = _remove(left, key, str, errors)
        if value == "":
            errors.append(f"[{SCOPE}] Invalid value empty string. [{key}] must be a non-empty string")
        elif value is not None:
            out[key] = value
    if allocations is None and adaptive is None:
        errors.append(f"[{SCOPE}] does not contain one of the required settings [num_allocations, "
                      "adaptive_allocations]")
    if errors:
        raise ValidationFailed(errors)
    if allocations is not None:
        out["num_allocations"] = allocations
    out["num_threads"] = threads
    if adaptive is not None:
        out["adaptive_allocations"] = adaptive
    return out, left


SIMILARITIES = ("cosine", "dot_product", "l2_norm")
ELEMENT_TYPES = ("float", "byte", "bit")


def embedding_settings(left: dict[str, Any]) -> Object:
    """The dense-vector settings of a custom text embedding endpoint (CustomElandInternalText-
    EmbeddingServiceSettings): `similarity` (default cosine) and `element_type` (default float)
    are taken from the request; `dimensions` is what the model answers (the test inference)."""
    left.pop("dimensions", None)
    out: Object = {}
    errors: list[str] = []
    for key, allowed, default in (("similarity", SIMILARITIES, "cosine"), ("element_type", ELEMENT_TYPES, "float")):
        value = _remove(left, key, str, errors)
        if value is not None and value.lower() not in allowed:
            errors.append(f"[{SCOPE}] Invalid value [{value}] received. [{key}] must be one of "
                          f"[{', '.join(sorted(allowed))}]")
        out[key] = (value or default).lower()
    if errors:
        raise ValidationFailed(errors)
    return out


def parse_put_head(url_task: str, inference_id: str, body: Any) -> tuple[str, dict[str, Any]]:
    """The checks TransportPutInferenceModelAction makes before looking at the cluster: reserved
    ids, the task type, the service. Returns the task type and the rest of the body."""
    if not isinstance(body, dict):
        raise ParseError("request body is required")
    if inference_id in RESERVED_IDS:
        raise StatusException(f"[{inference_id}] is a reserved inference ID. Cannot create a new inference "
                              "endpoint with a reserved ID.", 400)
    config = dict(body)
    task_type = resolve_task_type(url_task, config.pop("task_type", None))
    service = config.pop("service", None)
    if service is None:
        raise StatusException("Inference endpoint configuration is missing the [service] setting", 400)
    if service not in (SERVICE, OLD_ELSER_SERVICE):
        raise StatusException(f"Unknown service [{service}]", 400)
    return task_type, config


def parse_put_config(task_type: str, config: dict[str, Any]) -> tuple[dict[str, Any], Object, Object | None]:
    """ElasticsearchInternalService.parseRequestConfig's reading of the rest of the body:
    (service_settings as sent, the task settings, the chunking settings of embedding tasks)."""
    config = dict(config)
    raw_settings = config.pop("service_settings", None)
    if not isinstance(raw_settings, dict):
        raise StatusException("Missing required field [service_settings]", 400)
    task_settings = config.pop("task_settings", None) or {}
    chunking = None
    if task_type in ("text_embedding", "sparse_embedding"):
        chunking = config.pop("chunking_settings", None) or dict(DEFAULT_CHUNKING)
    unknown_settings(config)
    if not isinstance(task_settings, dict):
        raise StatusException("Missing required field [task_settings]", 400)
    task_settings = dict(task_settings)
    stored: Object = {}
    if task_type == "rerank" and "return_documents" in task_settings:  # RerankTaskSettings
        value = task_settings.pop("return_documents")
        if not isinstance(value, bool):
            raise ValidationFailed([f"field [return_documents] is not of the expected type. The value "
                                    f"[{java_map(value)}] cannot be converted to a [Boolean]"])
        stored["return_documents"] = value
    unknown_settings(task_settings)
    return raw_settings, stored, chunking


def attached_settings(deployment_id: str, deployment: Mapping[str, Any] | None, model_id: Any) -> Object:
    """validateAgainstDeployment: the settings of an endpoint on an existing deployment are the
    deployment's own."""
    if deployment is None:
        raise StatusException(f"Cannot find deployment [{deployment_id}]", 404)
    spec = deployment["spec"]
    if model_id is not None and model_id != spec["model_id"]:
        raise StatusException(f"Deployment [{deployment_id}] uses model [{spec['model_id']}] which does not match "
                              f"the model [{model_id}] in the request.", 400)
    settings: Object = {"num_allocations": int(spec.get("number_of_allocations") or 1),
                        "num_threads": int(spec.get("threads_per_allocation") or 1),
                        "model_id": spec["model_id"], "deployment_id": deployment_id}
    if spec.get("adaptive_allocations"):
        settings["adaptive_allocations"] = spec["adaptive_allocations"]
    return settings


def start_body(inference_id: str, settings: Mapping[str, Any]) -> Object:
    """The `_start` body of BaseElasticsearchInternalService.start: deployment id = endpoint id."""
    body: Object = {"deployment_id": inference_id, "threads_per_allocation": settings["num_threads"]}
    if "num_allocations" in settings:
        body["number_of_allocations"] = settings["num_allocations"]
    if "adaptive_allocations" in settings:
        body["adaptive_allocations"] = settings["adaptive_allocations"]
    return body


def model_task_type(model_id: str, model: Mapping[str, Any], task_type: str) -> None:
    """ElasticsearchInternalService.throwIfUnsupportedTaskType against the model's inference config."""
    config = (model.get("spec") or {}).get("inference_config") or {}
    kind = next(iter(config), "")
    mapped = TASK_OF_CONFIG.get(kind)
    if mapped is None:
        raise StatusException(f"Deployed model [{model_id}] has type [{kind}] which does not map to any supported "
                              "task types", 400)
    if mapped != task_type:
        raise StatusException(f"Deployed model [{model_id}] with type [{kind}] does not match the requested task type "
                              f"[{task_type}]", 400)


def endpoint_view(endpoint: Mapping[str, Any], deployment: Mapping[str, Any] | None) -> Object:
    """ModelConfigurations as GET and PUT answer it; `num_allocations` is the deployment's current
    number, as ElasticsearchInternalService.updateModelsWithDynamicFields reports it."""
    settings = dict(endpoint["service_settings"])
    if deployment is not None and "num_allocations" in settings:
        settings["num_allocations"] = int((deployment.get("spec") or {}).get("number_of_allocations")
                                          or settings["num_allocations"])
    out: Object = {"inference_id": endpoint["inference_id"], "task_type": endpoint["task_type"],
                   "service": endpoint["service"], "service_settings": settings}
    if endpoint.get("chunking_settings") is not None:
        out["chunking_settings"] = endpoint["chunking_settings"]
    out["task_settings"] = endpoint.get("task_settings") or {}
    return out


def deployment_id_of(endpoint: Mapping[str, Any]) -> str:
    """ElasticsearchInternalModel.mlNodeDeploymentId: the attached deployment, else the endpoint id."""
    return endpoint["service_settings"].get("deployment_id") or endpoint["inference_id"]


def parse_infer_body(url_task: str, body: Any) -> Object:
    """InferenceAction.Request: the ObjectParser, then validate() against the URL's task type."""
    if not isinstance(body, dict):
        raise ParseError("request body is required")
    unknown = [k for k in body if k not in INFER_FIELDS]
    if unknown:
        raise ParseError(f"[{_INFER_ACTION}] unknown field [{unknown[0]}]", type="x_content_parse_exception")
    value = body.get("input")
    if isinstance(value, str):
        value = [value]  # ObjectParser reads a single value where it declares an array
    if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise ParseError(f"[{_INFER_ACTION}] failed to parse field [input]", type="x_content_parse_exception")
    for key, kind in (("query", str), ("input_type", str), ("timeout", str), ("return_documents", bool),
                      ("top_n", int), ("task_settings", dict)):
        if body.get(key) is not None and (not isinstance(body[key], kind)
                                          or (kind is int and isinstance(body[key], bool))):
            raise ParseError(f"[{_INFER_ACTION}] failed to parse field [{key}]", type="x_content_parse_exception")
    input_type = body.get("input_type")
    if input_type is not None and input_type.lower() not in INPUT_TYPES + ("unspecified",):
        raise IllegalArgument(f"Unrecognized input_type [{input_type}], must be one of "
                              f"[{', '.join(t for t in INPUT_TYPES if not t.startswith('internal'))}]")
    task = url_task
    if value is None:
        raise ValidationFailed(["Field [input] cannot be null"])
    if not value:
        raise ValidationFailed(["Field [input] cannot be an empty array"])
    if task == "rerank":
        if body.get("query") is None:
            raise ValidationFailed(["Field [query] cannot be null for task type [rerank]"])
        if body["query"] == "":
            raise ValidationFailed(["Field [query] cannot be empty for task type [rerank]"])
    elif task != ANY:
        for key in ("return_documents", "top_n"):
            if body.get(key) is not None:
                raise ValidationFailed([f"Field [{key}] cannot be specified for task type [{task}]"])
    if task in ("text_embedding", "sparse_embedding") and body.get("query") is not None:
        raise ValidationFailed([f"Field [query] cannot be specified for task type [{task}]"])
    if task not in ("text_embedding", ANY) and input_type and not input_type.lower().startswith("internal") \
            and input_type.lower() != "unspecified":
        raise ValidationFailed([f"Field [input_type] cannot be specified for task type [{task}]"])
    return {**body, "input": value}


def inference_results(task_type: str, results: list[Object], field: str, inputs: list[str],
                      return_documents: bool, top_n: int | None) -> Object:
    """The `_inference` body from `_infer` results (TextEmbeddingFloatResults, SparseEmbeddingResults,
    RankedDocsResults: sorted by score, `text` when documents are returned, the first `top_n`)."""
    if task_type == "text_embedding":
        return {"text_embedding": [{"embedding": r[field]} for r in results]}
    if task_type == "sparse_embedding":
        return {"sparse_embedding": [{"is_truncated": bool(r.get("is_truncated", False)), "embedding": r[field]}
                                     for r in results]}
    ranked = sorted(({"index": i, "relevance_score": float(r[field]),
                      **({"text": inputs[i]} if return_documents else {})} for i, r in enumerate(results)),
                    key=lambda d: -d["relevance_score"])
    return {"rerank": ranked[:top_n] if top_n is not None else ranked}


def results_field(model: Mapping[str, Any]) -> str:
    config = (model.get("spec") or {}).get("inference_config") or {}
    options = next(iter(config.values()), None) or {}
    return options.get("results_field") or "predicted_value"


# --------------------------------------------------------------------------- the calls

class InferenceEndpoints:
    """`_inference` over the shim's Kubernetes client and its `_start` / `_infer` paths."""

    def __init__(self, shim: "Shim") -> None:
        self.shim = shim
        self.kube = shim.kube
        self._cache: dict[str, tuple[float, Object, Object]] = {}  # id → (read at, endpoint, model)

    async def _k(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def _require(self, inference_id: str) -> Object:
        endpoint = await self._k(self.kube.get_inference_endpoint, inference_id)
        if endpoint is None:
            raise ResourceNotFound(f"Inference endpoint not found [{inference_id}]")
        return endpoint

    async def _view(self, endpoint: Object) -> Object:
        deployment = await self._k(self.kube.get_deployment, deployment_id_of(endpoint))
        return endpoint_view(endpoint, deployment)

    async def put(self, url_task: str, inference_id: str, body: Any, timeout: str | None) -> Object:
        """TransportPutInferenceModelAction, then ElasticsearchInternalService.parseRequestConfig,
        its model validator (start the deployment, one test inference) and storing the endpoint."""
        timeout_value = parse_time_value(timeout or PUT_TIMEOUT, "timeout")
        task_type, config = parse_put_head(url_task, inference_id, body)
        deployments = await self._k(self.kube.list_deployments)
        if any(inference_id in (d["spec"].get("model_id"), d["spec"].get("deployment_id")) for d in deployments):
            raise StatusException(f"Inference endpoint IDs must be unique. Requested inference endpoint ID "
                                  f"[{inference_id}] matches existing trained model ID(s) but must not.", 400)
        raw_settings, task_settings, chunking = parse_put_config(task_type, config)
        attach_to = raw_settings.get("deployment_id")
        if attach_to is not None:
            existing = next((d for d in deployments if d["spec"].get("deployment_id") == attach_to), None)
            settings = attached_settings(attach_to, existing, raw_settings.get("model_id"))
            model = await self.shim.require_model(settings["model_id"])
            model_task_type(settings["model_id"], model, task_type)
        else:
            model_id = raw_settings.get("model_id")
            if model_id is None:
                raise IllegalArgument("Error parsing service settings, model_id must be provided")
            model = await self.shim.require_model(await self.shim.resolve_alias(str(model_id)))
            model_task_type(str(model_id), model, task_type)
            settings, left = parse_service_settings(raw_settings)
            if task_type == "text_embedding":
                settings.update(embedding_settings(left))
            unknown_settings(left)
        if await self._k(self.kube.get_inference_endpoint, inference_id) is not None:
            raise ResourceAlreadyExists(f"Inference endpoint [{inference_id}] already exists")
        self._cache.pop(inference_id, None)
        endpoint: Object = {"inference_id": inference_id, "task_type": task_type, "service": SERVICE,
                            "service_settings": settings, "task_settings": task_settings}
        if chunking is not None:
            endpoint["chunking_settings"] = chunking
        if attach_to is None:
            await self.shim.start(model["spec"]["model_id"], start_body(inference_id, settings),
                                  {"timeout": timeout_value.text, "wait_for": "started"})
        try:
            if task_type == "text_embedding":
                settings["dimensions"] = await self._embedding_size(endpoint, model)
            await self._k(self.kube.create_inference_endpoint, endpoint)
        except (ElasticsearchError, Conflict) as err:
            if attach_to is None:  # the validator stops what it started when the endpoint cannot be made
                await self.shim.stop(inference_id, True, True)
            if isinstance(err, Conflict):
                raise ResourceAlreadyExists(f"Inference endpoint [{inference_id}] already exists") from None
            raise
        return await self._view(endpoint)

    async def _embedding_size(self, endpoint: Object, model: Object) -> int:
        """ServiceUtils.getEmbeddingSize: one inference of a test input."""
        probe = await self.shim.infer(deployment_id_of(endpoint), {"docs": [
            {_input_field(model): _EMBEDDING_TEST_INPUT}]}, {"timeout": INFER_TIMEOUT})
        embedding = probe[0].get(results_field(model))
        if not isinstance(embedding, list):
            raise StatusException("Could not determine embedding size", 400)
        return len(embedding)

    async def get(self, url_task: str, inference_id: str) -> Object:
        """GET `_inference[/{task_type}]/{id}`; `_all` (or no id) lists every endpoint of the task type."""
        if inference_id in ("_all", "*"):
            endpoints = sorted(await self._k(self.kube.list_inference_endpoints), key=lambda e: e["inference_id"])
            chosen = [e for e in endpoints if url_task in (ANY, e["task_type"])]
            return {"endpoints": [await self._view(e) for e in chosen]}
        endpoint = await self._require(inference_id)
        _same_task(url_task, endpoint)
        return {"endpoints": [await self._view(endpoint)]}

    async def delete(self, url_task: str, inference_id: str, dry_run: bool) -> Object:
        """TransportDeleteInferenceEndpointAction: nothing refers to endpoints in tmd (no ingest
        pipelines or semantic_text indices), so `force` changes nothing; the deployment the
        endpoint started is stopped (force), an attached one is left running."""
        endpoint = await self._require(inference_id)
        _same_task(url_task, endpoint)
        if dry_run:
            return {"acknowledged": False, "pipelines": [], "indexes": []}
        self._cache.pop(inference_id, None)
        if not endpoint["service_settings"].get("deployment_id"):
            await self.shim.stop(inference_id, True, True)
        await self._k(self.kube.delete_inference_endpoint, inference_id)
        return {"acknowledged": True, "pipelines": [], "indexes": []}

    async def infer(self, url_task: str, inference_id: str, body: Any, timeout: str | None) -> Object:
        """POST `_inference[/{task_type}]/{id}`: `input` through `_infer` on the endpoint's deployment."""
        request = parse_infer_body(url_task, body)
        timeout_value = parse_time_value(timeout or request.get("timeout") or INFER_TIMEOUT, "timeout")
        endpoint, model = await self._for_inference(inference_id)
        task_type = endpoint["task_type"]
        if url_task not in (ANY, task_type):
            raise StatusException(f"Incompatible task_type, the requested type [{url_task}] does not match the model "
                                  f"type [{task_type}]", 400)
        if url_task == ANY:
            request = parse_infer_body(task_type, body)
        field = _input_field(model)
        infer_body: Object = {"docs": [{field: text} for text in request["input"]]}
        if task_type == "rerank":
            infer_body["inference_config"] = {"text_similarity": {"text": request["query"]}}
        results = await self.shim.infer(deployment_id_of(endpoint), infer_body, {"timeout": timeout_value.text})
        return_documents = request.get("return_documents")
        if return_documents is None:
            settings = {**(endpoint.get("task_settings") or {}), **(request.get("task_settings") or {})}
            return_documents = settings.get("return_documents", True)
        return inference_results(task_type, results, results_field(model), request["input"],
                                 bool(return_documents), request.get("top_n"))

    async def _for_inference(self, inference_id: str) -> tuple[Object, Object]:
        """The endpoint and its model. Inference must not cost Kubernetes reads per request (the
        `_infer` path caches its routes the same way): what was read less than a second ago is
        used as is; this shim's own PUT, update and DELETE forget it at once."""
        cached = self._cache.get(inference_id)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1], cached[2]
        endpoint = await self._require(inference_id)
        model = await self.shim.require_model(endpoint["service_settings"]["model_id"])
        self._cache[inference_id] = (time.monotonic(), endpoint, model)
        return endpoint, model

    async def stream(self, task_type: str, inference_id: str) -> Object:
        """The streamed completion APIs: the endpoint must exist, and no elasticsearch-service
        endpoint does (chat) completion, so Elasticsearch's task type check answers."""
        endpoint = await self._require(inference_id)
        raise StatusException(f"Incompatible task_type, the requested type [{task_type}] does not match the model "
                              f"type [{endpoint['task_type']}]", 400)

    async def update(self, url_task: str, inference_id: str, body: Any) -> Object:
        """PUT `_inference[/{task_type}]/{id}/_update` for the elasticsearch service: a new
        `num_allocations` (or `adaptive_allocations`) goes to the deployment as `_update` does."""
        if not isinstance(body, dict):
            raise ParseError("request body is required")
        endpoint = await self._require(inference_id)
        _same_task(url_task, endpoint)
        body = dict(body)
        raw = body.pop("service_settings", None) or {}
        body.pop("task_settings", None)
        unknown_settings({k: v for k, v in body.items() if k != "task_type"})
        if not isinstance(raw, dict):
            raise StatusException("Missing required field [service_settings]", 400)
        raw = dict(raw)
        allowed = {k: raw.pop(k) for k in ("num_allocations", "adaptive_allocations") if k in raw}
        unknown_settings(raw)
        update_body: Object = {}
        if "num_allocations" in allowed:
            update_body["number_of_allocations"] = allowed["num_allocations"]
        if "adaptive_allocations" in allowed:
            update_body["adaptive_allocations"] = allowed["adaptive_allocations"]
        await self.shim.update(deployment_id_of(endpoint), update_body, {})
        if "num_allocations" in allowed:
            endpoint["service_settings"]["num_allocations"] = allowed["num_allocations"]
        if "adaptive_allocations" in allowed:
            endpoint["service_settings"]["adaptive_allocations"] = allowed["adaptive_allocations"]
        await self._k(self.kube.patch_inference_endpoint, endpoint)
        self._cache.pop(inference_id, None)
        return await self._view(endpoint)


def _same_task(url_task: str, endpoint: Mapping[str, Any]) -> None:
    """InferenceExceptions.mismatchedTaskTypeException (GET, DELETE, update)."""
    if url_task not in (ANY, endpoint["task_type"]):
        raise StatusException(f"Requested task type [{url_task}] does not match the inference endpoint's task type "
                              f"[{endpoint['task_type']}]", 400)


def _input_field(model: Mapping[str, Any]) -> str:
    names = ((model.get("spec") or {}).get("input") or {}).get("field_names") or ["input"]  # PYTORCH's default
    return str(names[0])

