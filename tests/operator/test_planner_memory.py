"""The memory estimate of es-api.md §2.7 and Elasticsearch's byte-size rendering."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmd.api.memory import (
    ELSER_1_OR_2_MEMORY_BYTES,
    MB,
    MemoryEstimate,
    byte_size_string,
    estimate_memory_usage_bytes,
    required_native_memory_bytes,
)


def test_required_native_memory_of_the_yaml_test_model():
    # PyTorchModelIT asserts 240mb + 2 * RAW_MODEL_SIZE for the 1630-byte test model
    assert required_native_memory_bytes("test_model", 1630) == 251661500
    assert MemoryEstimate("test_model", 1630).required_native_memory_bytes == 251661500


def test_base_estimate_ignores_allocations_without_per_allocation_memory():
    assert estimate_memory_usage_bytes("m", 100 * MB, 1) == 440 * MB
    assert estimate_memory_usage_bytes("m", 100 * MB, 8) == 440 * MB


def test_per_deployment_and_per_allocation_memory_take_the_larger_term():
    # 500 + 4 × 100 + 100 = 1000 MB > 240 + 200
    assert (
        estimate_memory_usage_bytes(
            "m", 100 * MB, 4, per_deployment_memory_bytes=500 * MB, per_allocation_memory_bytes=100 * MB
        )
        == 1000 * MB
    )
    # 10 + 1 × 1 + 100 = 111 MB < 240 + 200: the base wins
    assert (
        estimate_memory_usage_bytes("m", 100 * MB, 1, per_deployment_memory_bytes=10 * MB, per_allocation_memory_bytes=MB)
        == 440 * MB
    )


@pytest.mark.parametrize("model_id", [".elser_model_1", ".elser_model_2", ".elser_model_2_linux-x86_64"])
def test_elser_is_sized_flat(model_id):
    assert estimate_memory_usage_bytes(model_id, 10, 1) == ELSER_1_OR_2_MEMORY_BYTES
    assert estimate_memory_usage_bytes(model_id, 10, 5, per_allocation_memory_bytes=MB) == 2004 * MB
    assert MemoryEstimate(model_id, 10, per_allocation_memory_bytes=MB).additional_allocation_bytes == 0


def test_cache_larger_than_the_model_adds_its_excess():
    assert estimate_memory_usage_bytes("m", 100 * MB, 1, cache_size_bytes=300 * MB) == 640 * MB
    assert estimate_memory_usage_bytes("m", 100 * MB, 1, cache_size_bytes=50 * MB) == 440 * MB
    assert estimate_memory_usage_bytes("m", 100 * MB, 1, cache_size_bytes=0) == 440 * MB


def test_zero_allocations_need_no_memory():
    assert estimate_memory_usage_bytes("m", 100 * MB, 0) == 0


@given(
    model_bytes=st.integers(0, 4000 * MB),
    per_deployment=st.integers(0, 4000 * MB),
    per_allocation=st.integers(0, 1000 * MB),
    cache=st.one_of(st.none(), st.integers(0, 4000 * MB)),
    allocations=st.integers(1, 64),
)
def test_linear_charge_per_further_allocation_never_undercounts(
    model_bytes, per_deployment, per_allocation, cache, allocations
):
    estimate = MemoryEstimate("m", model_bytes, per_deployment, per_allocation, cache)
    charged = estimate.required_native_memory_bytes + (allocations - 1) * estimate.additional_allocation_bytes
    assert charged >= estimate.bytes_for(allocations)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0b"),
        (512, "512b"),
        (1024, "1kb"),
        (1536, "1.5kb"),
        (251661500, "240mb"),
        (1 << 30, "1gb"),
        (int(1.99 * (1 << 30)), "1.9gb"),  # truncated, not rounded, as Strings.format1Decimals does
        (3 * (1 << 40), "3tb"),
    ],
)
def test_byte_size_string_matches_elasticsearch(n, text):
    assert byte_size_string(n) == text
