"""Start parameters of a trained model deployment (es-api.md §1.7, §2.1, §2.2, §2.6, §11).

One definition serves three readers: the shim parses Elasticsearch requests with
`parse_start_request`, the operator reads `DeploymentSpec` from the resource, and the CRD
schema under crds/ is generated from `DeploymentSpec`. Checks that Elasticsearch reports
together ("Validation Failed: 1: ...;2: ...;") live in `validation_errors`, a pure function,
because their order and texts are part of the API.
"""

from __future__ import annotations

import json
import re

from dataclasses import dataclass

from enum import Enum
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tmd.api.errors import ElasticsearchError, IllegalArgument, ParseError, ValidationFailed
from tmd.api.units import ByteSize, TimeValue, parse_byte_size, parse_time_value

MAX_THREADS_PER_ALLOCATION = 32
MAX_QUEUE_CAPACITY = 1_000_000
DEFAULT_QUEUE_CAPACITY = 1024
DEFAULT_START_TIMEOUT = "30s"
MAX_DEPLOYMENTS = 100
# Dynamic batching, a tmd extension (docs/api.md): documents per forward pass and how long a lane
# waits for more. The defaults come from benchmarks/worker_throughput.py (docs/benchmarks.md).
DEFAULT_MAX_BATCH_SIZE = 16
MAX_BATCH_SIZE = 1024
DEFAULT_MAX_BATCH_DELAY = "0ms"
MAX_BATCH_DELAY_S = 1.0
BATCH_DELAY_PATTERN = r"^[0-9]+(ms|s)$"  # what both the shim and Kubernetes' CEL duration() read


class Priority(str, Enum):
    normal = "normal"
    low = "low"


class WaitFor(str, Enum):
    """AllocationStatus.State, ordered: a start returns once the state reaches `wait_for`."""

    starting = "starting"
    started = "started"
    fully_allocated = "fully_allocated"

    @property
    def rank(self) -> int:
        return list(WaitFor).index(self)


class AdaptiveAllocations(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    min_number_of_allocations: int | None = None
    max_number_of_allocations: int | None = None

    def to_es(self) -> dict[str, Any]:
        out: dict[str, Any] = {"enabled": bool(self.enabled)}
        if self.min_number_of_allocations is not None:
            out["min_number_of_allocations"] = self.min_number_of_allocations
        if self.max_number_of_allocations is not None:
            out["max_number_of_allocations"] = self.max_number_of_allocations
        return out


class TmdBatching(BaseModel):
    """tmd's dynamic batching knobs (not Elasticsearch): `max_batch_size` documents per forward
    pass at most (1: off), and `max_batch_delay` the longest a lane waits for more."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(DEFAULT_MAX_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE,
                                description="tmd extension: most documents in one forward pass; 1 turns batching off.")
    max_batch_delay: str = Field(DEFAULT_MAX_BATCH_DELAY, pattern=BATCH_DELAY_PATTERN,
                                 description="tmd extension: longest a lane waits for more documents once it holds one "
                                             "(time value, at most 1s; 0ms: take what is queued).")

    def to_es(self) -> dict[str, Any]:
        return {"max_batch_size": self.max_batch_size, "max_batch_delay": self.max_batch_delay}


def tmd_batching_errors(batching: TmdBatching) -> list[str]:
    """The batching knobs' range checks, worded as Elasticsearch words its own."""
    errors: list[str] = []
    if batching.max_batch_size < 1 or batching.max_batch_size > MAX_BATCH_SIZE:
        errors.append(f"[tmd_batching.max_batch_size] must be between 1 and {MAX_BATCH_SIZE}")
    if not re.fullmatch(BATCH_DELAY_PATTERN, str(batching.max_batch_delay)):
        errors.append(f"[tmd_batching.max_batch_delay] must be whole milliseconds or seconds (e.g. 2ms), "
                      f"got [{batching.max_batch_delay}]")
        return errors
    try:
        delay = parse_time_value(batching.max_batch_delay, "tmd_batching.max_batch_delay")
    except ElasticsearchError as err:
        errors.append(err.reason)
    else:
        if delay.seconds is None or not 0 <= delay.seconds <= MAX_BATCH_DELAY_S:
            errors.append(f"[tmd_batching.max_batch_delay] must be between 0ms and {int(MAX_BATCH_DELAY_S * 1000)}ms")
    return errors


class DeploymentSpec(BaseModel):
    """What a TrainedModelDeployment resource asks for; field names are Elasticsearch's."""

    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(min_length=1, description="The trained model to deploy.")
    deployment_id: str | None = Field(None, description="Unique id of the deployment; defaults to model_id.")
    number_of_allocations: int = Field(1, ge=1, description="Total allocations across ML nodes.")
    threads_per_allocation: int = Field(1, ge=1, le=MAX_THREADS_PER_ALLOCATION,
                                        description="Threads per allocation: a power of 2, at most 32.")
    queue_capacity: int = Field(DEFAULT_QUEUE_CAPACITY, ge=1, le=MAX_QUEUE_CAPACITY,
                                description="Inference requests allowed in each node's queue; more are rejected with 429.")
    cache_size: str | None = Field(None, description="Inference cache size per node (byte size, e.g. 10kb; 0 disables). "
                                                     "Defaults to the model size.")
    priority: Priority = Field(Priority.normal, description="normal, or low (1 allocation x 1 thread, yields to normal).")
    adaptive_allocations: AdaptiveAllocations | None = None
    tmd_batching: TmdBatching | None = Field(None, description="tmd extension: dynamic batching in the workers "
                                                                 "(absent: the defaults).")

    @model_validator(mode="after")
    def _default_deployment_id(self) -> "DeploymentSpec":
        if not self.deployment_id:
            self.deployment_id = self.model_id
        return self

    def cache_size_value(self, model_bytes: int) -> ByteSize:
        """The cache size in effect: as given, or the model size (es-api §2.1)."""
        if self.cache_size is None:
            return ByteSize.of_bytes(model_bytes)
        return parse_byte_size(self.cache_size, "cache_size")

    def validation_errors(self) -> list[str]:
        return validation_errors(self)

    def batching(self) -> TmdBatching:
        """The batching knobs in effect: the spec's, or the workers' defaults."""
        return self.tmd_batching if self.tmd_batching is not None else TmdBatching()


class StartRequest(BaseModel):
    """A start call: the spec plus how long and for what to wait."""

    spec: DeploymentSpec
    timeout: TimeValue
    wait_for: WaitFor

    model_config = ConfigDict(arbitrary_types_allowed=True)


def _is_power_of_two(n: int) -> bool:
    # The same bit test as Elasticsearch's isPowerOf2, so 0 and negatives report as it does.
    return (n & (n - 1)) == 0


def validation_errors(spec: DeploymentSpec, timeout: TimeValue | None = None) -> list[str]:
    """Elasticsearch's StartTrainedModelDeploymentAction.Request#validate, in its order."""
    errors: list[str] = []
    adaptive = spec.adaptive_allocations
    if spec.number_of_allocations < 1:
        errors.append("[number_of_allocations] must be a positive integer")
    if spec.threads_per_allocation < 1:
        errors.append("[threads_per_allocation] must be a positive integer")
    if spec.threads_per_allocation > MAX_THREADS_PER_ALLOCATION or not _is_power_of_two(spec.threads_per_allocation):
        errors.append(f"[threads_per_allocation] must be a power of 2 less than or equal to {MAX_THREADS_PER_ALLOCATION}")
    if spec.queue_capacity < 1:
        errors.append("[queue_capacity] must be a positive integer")
    if spec.queue_capacity > MAX_QUEUE_CAPACITY:
        errors.append(f"[queue_capacity] must be less than {MAX_QUEUE_CAPACITY}")
    if timeout is not None and timeout.seconds is not None and timeout.seconds <= 0:
        errors.append("[timeout] must be positive")
    if spec.priority is Priority.low:
        if spec.number_of_allocations > 1:
            errors.append("[number_of_allocations] must be 1 when [priority] is low")
        if spec.threads_per_allocation > 1:
            errors.append("[threads_per_allocation] must be 1 when [priority] is low")
    if adaptive is not None:
        errors += adaptive_allocations_errors(adaptive)
    if spec.tmd_batching is not None:
        errors += tmd_batching_errors(spec.tmd_batching)
    return errors


def adaptive_allocations_errors(adaptive: AdaptiveAllocations) -> list[str]:
    """AdaptiveAllocationsSettings#validate: checked by start and by update."""
    errors: list[str] = []
    lo, hi = adaptive.min_number_of_allocations, adaptive.max_number_of_allocations
    if lo is not None and lo < 0:
        errors.append("[min_number_of_allocations] must be a non-negative integer or null")
    if hi is not None and hi < 1:
        errors.append("[max_number_of_allocations] must be a positive integer or null")
    if lo is not None and hi is not None and lo > hi:
        errors.append("[min_number_of_allocations] must not be larger than [max_number_of_allocations]")
    return errors


# Parameters a start request reads, with the legacy names of the REST v8 compatibility layer.
_ALIASES = {"model_threads": "number_of_allocations", "inference_threads": "threads_per_allocation"}
_INT_PARAMS = ("number_of_allocations", "threads_per_allocation", "queue_capacity")
START_PARAMS = frozenset({"model_id", "deployment_id", "number_of_allocations", "threads_per_allocation",
                          "queue_capacity", "cache_size", "priority", "timeout", "wait_for", "adaptive_allocations",
                          "tmd_batching", *_ALIASES})
_ACTION = "start_trained_model_deployment"


def _enum(cls: type[Enum], value: Any) -> Enum:
    try:
        return cls(str(value).lower())
    except ValueError:
        if cls is WaitFor:
            # Elasticsearch's text, missing closing bracket included.
            raise IllegalArgument(f"invalid [wait_for] state [{value}]; must be one of [started, starting, fully_allocated")
        raise IllegalArgument(f"No enum constant org.elasticsearch.xpack.core.ml.inference.assignment.Priority.{str(value).upper()}")


def _query_int(name: str, value: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise IllegalArgument(f"Failed to parse int parameter [{name}] with value [{value}]") from None


def parse_start_request(path_model_id: str, body: Mapping[str, Any] | None,
                        query: Mapping[str, str]) -> StartRequest:
    """Merge body and query (query wins, es-api §2.1), apply defaults, validate.

    Raises ParseError/IllegalArgument for unreadable values and ValidationFailed with every
    failed check together.
    """
    values: dict[str, Any] = {}
    for key, value in (body or {}).items():
        key = _ALIASES.get(key, key)
        if key not in START_PARAMS:
            raise ParseError(f"[{_ACTION}] unknown field [{key}]", type="x_content_parse_exception")
        if key in _INT_PARAMS and (isinstance(value, bool) or not isinstance(value, int)):
            raise ParseError(f"[{_ACTION}] failed to parse field [{key}]", type="x_content_parse_exception")
        if key not in _INT_PARAMS and key not in ("adaptive_allocations", "tmd_batching"):
            if isinstance(value, (dict, list)):  # ObjectParser's string fields take scalars only
                raise ParseError(f"[{_ACTION}] failed to parse field [{key}]", type="x_content_parse_exception")
            if value is None:
                continue  # an explicit null leaves the default
            if not isinstance(value, str):  # a number or boolean token read as text, as XContent does
                value = json.dumps(value)
        values[key] = value
    body_model_id = values.pop("model_id", None)
    if body_model_id is not None and body_model_id != path_model_id:
        raise ValidationFailed([f"Inconsistent model_id; '{body_model_id}' specified in the body differs from "
                                f"'{path_model_id}' specified as a URL argument"])
    for key, value in query.items():
        key = _ALIASES.get(key, key)
        if key in _INT_PARAMS:
            values[key] = _query_int(key, value)
        elif key in START_PARAMS - {"model_id", "adaptive_allocations", "tmd_batching"}:
            values[key] = value

    timeout = parse_time_value(values.pop("timeout", DEFAULT_START_TIMEOUT), "timeout")
    wait_for = _enum(WaitFor, values.pop("wait_for", "started"))
    if "priority" in values:
        values["priority"] = _enum(Priority, values["priority"])
    if values.get("cache_size") is not None:
        values["cache_size"] = parse_byte_size(values["cache_size"], "cache_size").text
    adaptive = values.get("adaptive_allocations")
    if adaptive is not None:
        try:
            values["adaptive_allocations"] = AdaptiveAllocations.model_validate(adaptive)
        except ValidationError:
            raise ParseError(f"[{_ACTION}] failed to parse field [adaptive_allocations]",
                             type="x_content_parse_exception") from None
        if adaptive.get("enabled") and "number_of_allocations" in values:
            raise ValidationFailed(["[number_of_allocations] cannot be set if adaptive allocations is enabled"])
        if "number_of_allocations" not in values:
            lo = values["adaptive_allocations"].min_number_of_allocations
            values["number_of_allocations"] = lo if lo and lo > 0 else 1
    if values.get("tmd_batching") is not None:
        values["tmd_batching"] = parse_tmd_batching(values["tmd_batching"], _ACTION)
    values.setdefault("deployment_id", path_model_id)
    # model_construct: the range checks are Elasticsearch's own, reported together below.
    spec = DeploymentSpec.model_construct(model_id=path_model_id, **_with_defaults(values))
    errors = validation_errors(spec, timeout)
    if errors:
        raise ValidationFailed(errors)
    return StartRequest(spec=DeploymentSpec.model_validate(spec.model_dump()), timeout=timeout, wait_for=wait_for)


def _with_defaults(values: dict[str, Any]) -> dict[str, Any]:
    defaults = {name: field.default for name, field in DeploymentSpec.model_fields.items()
                if name != "model_id" and not field.is_required()}
    return {**defaults, **values}


def parse_tmd_batching(value: Any, action: str, base: TmdBatching | None = None) -> TmdBatching:
    """The `tmd_batching` object of a start or update body; a bad shape is a parse error, as
    Elasticsearch reports its own objects (ranges are checked with the other validations).
    A field the object leaves out keeps its value in `base` (an update: what the deployment has
    now), else the default (a start)."""
    if not isinstance(value, dict):
        raise ParseError(f"[{action}] failed to parse field [tmd_batching]", type="x_content_parse_exception")
    for key in value:
        if key not in TmdBatching.model_fields:
            raise ParseError(f"[tmd_batching] unknown field [{key}]", type="x_content_parse_exception")
    size = value.get("max_batch_size", base.max_batch_size if base else DEFAULT_MAX_BATCH_SIZE)
    delay = value.get("max_batch_delay", base.max_batch_delay if base else DEFAULT_MAX_BATCH_DELAY)
    if isinstance(size, bool) or not isinstance(size, int) or not isinstance(delay, str):
        raise ParseError(f"[{action}] failed to parse field [tmd_batching]", type="x_content_parse_exception")
    return TmdBatching.model_construct(max_batch_size=size, max_batch_delay=delay)


_UPDATE_ACTION = "update_trained_model_deployment"
UPDATE_PARAMS = frozenset({"number_of_allocations", "adaptive_allocations", "tmd_batching", "model_id", "deployment_id"})


@dataclass(frozen=True)
class UpdateRequest:
    """An update call, checked: what to change (None: leave as is). `adaptive_allocations` is the
    object as given (it replaces the deployment's); `tmd_batching` the fields given, which
    `batching` lays over the deployment's current knobs."""

    number_of_allocations: int | None = None
    adaptive_allocations: dict[str, Any] | None = None
    adaptive_given: bool = False
    tmd_batching: dict[str, Any] | None = None

    def batching(self, current: TmdBatching) -> TmdBatching | None:
        if self.tmd_batching is None:
            return None
        return parse_tmd_batching(self.tmd_batching, _UPDATE_ACTION, base=current)


def parse_update_request(body: Any, query: Mapping[str, str]) -> UpdateRequest:
    """UpdateTrainedModelDeploymentAction.Request: parse and validate (es-api §2.6), before the
    deployment is read. `tmd_batching` (a tmd extension) may come alone or with the others."""
    if body is not None and not isinstance(body, dict):
        raise ParseError("request body must be an object")
    body = dict(body or {})
    unknown = [k for k in body if k not in UPDATE_PARAMS]
    if unknown:
        raise ParseError(f"[{_UPDATE_ACTION}] unknown field [{unknown[0]}]", type="x_content_parse_exception")
    allocations = body.get("number_of_allocations")
    if "number_of_allocations" in query:
        try:
            allocations = int(query["number_of_allocations"])
        except ValueError:
            raise IllegalArgument("Failed to parse int parameter [number_of_allocations] with value "
                                  f"[{query['number_of_allocations']}]") from None
    adaptive = body.get("adaptive_allocations")
    adaptive_errors: list[str] = []
    if adaptive is not None:
        try:
            adaptive_errors = adaptive_allocations_errors(AdaptiveAllocations.model_validate(adaptive))
        except ValidationError:
            raise ParseError(f"[{_UPDATE_ACTION}] failed to parse field [adaptive_allocations]",
                             type="x_content_parse_exception") from None
    batching = body.get("tmd_batching")
    batching_errors: list[str] = []
    if batching is not None:  # fields left out are valid whatever they are now: check the given ones
        batching_errors = tmd_batching_errors(parse_tmd_batching(batching, _UPDATE_ACTION))
    if allocations is None and adaptive is None and batching is None:
        raise ValidationFailed(["Either [number_of_allocations] or [adaptive_allocations] must be provided"])
    errors: list[str] = []
    if allocations is not None and (isinstance(allocations, bool) or not isinstance(allocations, int)
                                    or allocations < 1):
        errors.append("[number_of_allocations] must be a positive integer")
    if allocations is not None and adaptive and adaptive.get("enabled"):
        errors.append("[number_of_allocations] cannot be set if adaptive allocations is enabled")
    errors += adaptive_errors + batching_errors
    if errors:
        raise ValidationFailed(errors)
    return UpdateRequest(allocations, adaptive, "adaptive_allocations" in body, batching)
