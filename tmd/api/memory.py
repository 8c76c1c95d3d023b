"""The memory estimate of a PyTorch deployment (es-api.md §2.7).

Elasticsearch sizes a deployment's native process by `TaskParams.estimateMemoryUsageBytes`;
tmd uses the same formula for the planner's memory accounting, for the worker pod's memory
request and for `model_size_stats.required_native_memory_bytes`, so the numbers a user sees
through the Elasticsearch API and on the pods agree.
"""

from __future__ import annotations

from dataclasses import dataclass

MB = 1 << 20

#: Fixed overhead of a PyTorch inference process (`StartTrainedModelDeploymentAction.MEMORY_OVERHEAD`).
MEMORY_OVERHEAD_BYTES = 240 * MB

#: ELSER v1/v2 are sized flat, whatever their definition length.
ELSER_1_OR_2_MEMORY_BYTES = 2004 * MB
_ELSER_1_OR_2_PREFIXES = (".elser_model_1", ".elser_model_2")

#: Per-node overhead for loading the native code once (`MachineLearning.NATIVE_EXECUTABLE_CODE_OVERHEAD`);
#: subtracted once from each ML node's memory before planning.
NATIVE_EXECUTABLE_CODE_OVERHEAD_BYTES = 30 * MB


def is_elser_v1_or_v2(model_id: str) -> bool:
    return model_id.startswith(_ELSER_1_OR_2_PREFIXES)


def estimate_memory_usage_bytes(
    model_id: str,
    model_bytes: int,
    number_of_allocations: int,
    *,
    per_deployment_memory_bytes: int = 0,
    per_allocation_memory_bytes: int = 0,
    cache_size_bytes: int | None = None,
) -> int:
    """Memory of one worker process hosting `number_of_allocations` allocations of the model.

    Twice the model size because loading briefly holds both the serialized definition and the
    loaded module. A cache larger than the model adds its excess (the base already counts one
    model size that the default cache reuses).
    """
    if number_of_allocations <= 0:
        return 0
    if is_elser_v1_or_v2(model_id):
        estimate = ELSER_1_OR_2_MEMORY_BYTES
    else:
        base = MEMORY_OVERHEAD_BYTES + 2 * model_bytes
        if per_deployment_memory_bytes == 0 and per_allocation_memory_bytes == 0:
            estimate = base
        else:
            estimate = max(
                base,
                per_deployment_memory_bytes + per_allocation_memory_bytes * number_of_allocations + model_bytes,
            )
    if cache_size_bytes is not None and cache_size_bytes > model_bytes:
        estimate += cache_size_bytes - model_bytes
    return estimate


@dataclass(frozen=True)
class MemoryEstimate:
    """The inputs of the estimate, so callers can ask for any allocation count."""

    model_id: str
    model_bytes: int
    per_deployment_memory_bytes: int = 0
    per_allocation_memory_bytes: int = 0
    cache_size_bytes: int | None = None

    def bytes_for(self, number_of_allocations: int) -> int:
        return estimate_memory_usage_bytes(
            self.model_id,
            self.model_bytes,
            number_of_allocations,
            per_deployment_memory_bytes=self.per_deployment_memory_bytes,
            per_allocation_memory_bytes=self.per_allocation_memory_bytes,
            cache_size_bytes=self.cache_size_bytes,
        )

    @property
    def required_native_memory_bytes(self) -> int:
        """`model_size_stats.required_native_memory_bytes`: the estimate for one allocation."""
        return self.bytes_for(1)

    @property
    def additional_allocation_bytes(self) -> int:
        """Memory each further allocation on the same node adds, at most.

        `bytes_for(1) + (k - 1) * additional_allocation_bytes >= bytes_for(k)` for every k ≥ 1, so a
        planner charging memory this way never under-counts; it is exact whenever per-allocation
        memory dominates the base term (the only case where the count matters at all).
        """
        if is_elser_v1_or_v2(self.model_id):
            return 0
        return self.per_allocation_memory_bytes


def required_native_memory_bytes(
    model_id: str,
    model_bytes: int,
    *,
    per_deployment_memory_bytes: int = 0,
    per_allocation_memory_bytes: int = 0,
    cache_size_bytes: int | None = None,
) -> int:
    """The estimate for one allocation (e.g. 240 MB + 2 × 1630 = 251661500 for the YAML test model)."""
    return estimate_memory_usage_bytes(
        model_id,
        model_bytes,
        1,
        per_deployment_memory_bytes=per_deployment_memory_bytes,
        per_allocation_memory_bytes=per_allocation_memory_bytes,
        cache_size_bytes=cache_size_bytes,
    )


def byte_size_string(n: int) -> str:
    """Elasticsearch's `ByteSizeValue.toString()`: the largest 1024-based unit, one decimal truncated.

    Used in reasons such as "Available memory for ML [1073741824 (1gb)]"; `tmd.api.units` parses
    byte sizes but does not render them this way.
    """
    units = (("pb", 1 << 50), ("tb", 1 << 40), ("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10))
    for suffix, size in units:
        if n >= size:
            return _format_one_decimal(n / size, suffix)
    return _format_one_decimal(float(n), "b")


def _format_one_decimal(value: float, suffix: str) -> str:
    """`Strings.format1Decimals`: keep the first decimal digit unless it is 0 (no rounding)."""
    text = repr(value)
    if "e" in text or "E" in text:  # only for absurd sizes; Java would also use exponent form
        return f"{value:.1f}{suffix}"
    whole, _, fraction = text.partition(".")
    first = fraction[:1] or "0"
    return f"{whole}{suffix}" if first == "0" else f"{whole}.{first}{suffix}"
