"""The spec of a TrainedModel resource: the Elasticsearch model configuration plus where its
definition and vocabulary live (DESIGN.md "Resources").

`inference_config` and `metadata` are kept as free-form objects in the CRD: their schema is
Elasticsearch's and is checked by tmd.api's model-configuration parsing, not by the API server.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tmd.api.trained_model import PrefixStrings, TrainedModelInput


class Location(BaseModel):
    """Where workers fetch an artifact from, and how they verify it."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(description="file://, http:// or https:// URI of the artifact")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    total_definition_length: int | None = Field(None, ge=0)


class TrainedModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(min_length=1)
    model_type: str = "pytorch"
    inference_config: dict[str, Any] = Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    input: TrainedModelInput = Field(default_factory=TrainedModelInput)
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] | None = Field(None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    prefix_strings: PrefixStrings | None = None
    definition: Location | None = Field(None, description="The TorchScript definition")
    vocabulary: Location | None = Field(None, description="The vocabulary JSON ({vocabulary, merges?, scores?})")


class TrainedModelStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fully_defined: bool = False
    model_size_bytes: int = 0
    observedGeneration: int | None = None
