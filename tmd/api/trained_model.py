"""The trained-model configuration as Elasticsearch stores it (es-api.md §1.1, §5.4, §8.1).

One definition serves the shim (PUT/GET trained models), the operator (the TrainedModel
resource) and the worker (which reads `config.json` from its model directory). Parsing is
strict the way Elasticsearch's is: unknown fields are rejected, defaults are filled on
output, and the error texts are Elasticsearch's.

Validators raise `ElasticsearchError` subclasses rather than `ValueError`: pydantic lets
other exceptions through unchanged, so a bad value surfaces with its exact Elasticsearch
text and status instead of a pydantic error report. Checks that Elasticsearch collects
together (`TrainedModelConfig.Builder.validate`) are reported together as `ValidationFailed`.

The model directory a worker loads (written by `tmd.tinymodels.write_model_dir` and by the
model store):

    DIR/config.json      the TrainedModelConfig JSON as Elasticsearch returns it (model_id,
                         model_type "pytorch", inference_config {<task>: {..., "tokenization":
                         {"bert": {...}}}}, input {field_names}, prefix_strings?)
    DIR/vocabulary.json  {"vocabulary": [...], "merges": [...]?, "scores": [...]?}
                         (the body of Elasticsearch's put vocabulary API)
    DIR/model.pt         the TorchScript archive
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError, model_validator

from tmd.api.errors import ElasticsearchError, IllegalArgument, ParseError, StatusException, ValidationFailed

TRUNCATE_VALUES = ("first", "second", "none", "balanced")
Truncate = Literal["first", "second", "none", "balanced"]

# Field names Elasticsearch rejects in a create request (TrainedModelConfig.Builder.validate).
ILLEGAL_AT_CREATION = ("version", "created_by", "create_time", "license_level", "location", "model_package")
ILLEGAL_METADATA_AT_CREATION = ("total_feature_importance", "model_aliases")
ID_LENGTH_LIMIT = 64
_VALID_ID = re.compile(r"^[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?$")


def bad_request(reason: str) -> StatusException:
    """Elasticsearch's ExceptionsHelper.badRequestException: a status_exception with status 400.

    (IllegalArgumentException-based checks use IllegalArgument instead; clients see the type.)
    """
    return StatusException(reason, 400)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


# --------------------------------------------------------------------------- tokenization


def _normalise_truncate(data: Any) -> Any:
    """`truncate` parsed as Elasticsearch's Truncate.fromString does: case-insensitive, else its error."""
    if isinstance(data, dict) and "truncate" in data:
        value = data["truncate"]
        if not isinstance(value, str) or value.lower() not in TRUNCATE_VALUES:
            raise IllegalArgument("No enum constant org.elasticsearch.xpack.core.ml.inference.trainedmodel."
                                  f"Tokenization.Truncate.{str(value).upper()}")
        data = {**data, "truncate": value.lower()}
    return data


class Tokenization(_Strict):
    """Common tokenization options (Tokenization.java); subclasses name the container key."""

    kind: ClassVar[str] = ""
    mask_token: ClassVar[str] = "[MASK]"

    do_lower_case: bool = False
    with_special_tokens: bool = True
    max_sequence_length: int = 512
    truncate: Truncate = "first"
    span: int = -1

    @model_validator(mode="before")
    @classmethod
    def _check_truncate(cls, data: Any) -> Any:
        return _normalise_truncate(data)

    @model_validator(mode="after")
    def _check_rules(self) -> "Tokenization":
        if self.max_sequence_length <= 0:
            raise IllegalArgument("[max_sequence_length] must be positive")
        if self.span < 0 and self.span != -1:
            raise IllegalArgument(
                "[span] must be non-negative to indicate span length or [-1] to indicate no windowing should occur")
        if self.span > self.max_sequence_length:
            raise IllegalArgument(f"[span] provided [{self.span}] must not be greater than "
                                  f"[max_sequence_length] provided [{self.max_sequence_length}]")
        if self.span != -1 and self.truncate != "none":
            raise IllegalArgument(f"[span] must not be provided when [truncate] is [{self.truncate}]")
        return self

    def to_es(self) -> dict[str, Any]:
        return {self.kind: self.model_dump()}


class BertTokenization(Tokenization):
    kind = "bert"


class BertJapaneseTokenization(Tokenization):
    kind = "bert_ja"


class MPNetTokenization(Tokenization):
    kind = "mpnet"
    mask_token = "<mask>"


class RobertaTokenization(Tokenization):
    kind = "roberta"
    mask_token = "<mask>"
    add_prefix_space: bool = False


class XLMRobertaTokenization(Tokenization):
    kind = "xlm_roberta"
    mask_token = "<mask>"


class DebertaV2Tokenization(Tokenization):
    kind = "deberta_v2"


TOKENIZATIONS: dict[str, type[Tokenization]] = {
    cls.kind: cls for cls in (BertTokenization, BertJapaneseTokenization, MPNetTokenization, RobertaTokenization,
                              XLMRobertaTokenization, DebertaV2Tokenization)
}


def parse_tokenization(value: Any) -> Tokenization:
    """`{"bert": {...}}` → BertTokenization (a named object: exactly one key)."""
    if isinstance(value, Tokenization):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise ParseError("[tokenization] must be an object with exactly one tokenization type")
    (kind, options), = value.items()
    cls = TOKENIZATIONS.get(kind)
    if cls is None:
        raise ParseError(f"Unknown tokenization type [{kind}]; expected one of {sorted(TOKENIZATIONS)}")
    return _validate(cls, options or {}, kind)


TokenizationField = Annotated[Tokenization, BeforeValidator(parse_tokenization), PlainSerializer(lambda t: t.to_es())]


class TokenizationUpdate(_Strict):
    """The per-request tokenization override: only `truncate` and `span` (es-api.md §5.4 step 3)."""

    truncate: Truncate | None = None
    span: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_truncate(cls, data: Any) -> Any:
        return _normalise_truncate(data)


# --------------------------------------------------------------------------- task configs

DEFAULT_RESULTS_FIELD = "predicted_value"
NER_DEFAULT_LABELS = ["O", "B_MISC", "I_MISC", "B_PER", "I_PER", "B_ORG", "I_ORG", "B_LOC", "I_LOC"]


class NlpConfig(_Strict):
    """Options shared by every NLP task (NlpConfig.java)."""

    task: ClassVar[str] = ""
    # Fields a request's inference_config may override for this task (§5.4 step 3).
    updatable: ClassVar[tuple[str, ...]] = ("results_field", "tokenization")

    tokenization: TokenizationField = Field(default_factory=BertTokenization)
    results_field: str | None = None
    # where Elasticsearch keeps the vocabulary ({"index": ...}); present in stored configs, refused at creation
    vocabulary: dict[str, Any] | None = None

    @property
    def results_key(self) -> str:
        return self.results_field or DEFAULT_RESULTS_FIELD

    def to_es(self) -> dict[str, Any]:
        body = self.model_dump(exclude_none=True)
        return body


class PassThroughConfig(NlpConfig):
    task = "pass_through"


class TextEmbeddingConfig(NlpConfig):
    task = "text_embedding"
    embedding_size: int | None = None


class TextExpansionConfig(NlpConfig):
    task = "text_expansion"


class NerConfig(NlpConfig):
    task = "ner"
    classification_labels: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_labels(self) -> "NerConfig":
        # NerProcessor.validate: every label an I-O-B tag, none duplicated, all reported together
        messages, seen = [], set()
        for label in self.classification_labels:
            tag = iob_tag(label)
            if tag is None:
                messages.append(f"classification label [{label}] is not an entity I-O-B tag.")
                continue
            if tag in seen:
                messages.append(f"the classification label [{label}] is duplicated in the list "
                                f"{_java_list(self.classification_labels)}")
            seen.add(tag)
        if messages:
            error = ValidationFailed(messages)
            error.type = "validation_exception"
            raise error
        return self

    @property
    def labels(self) -> list[str]:
        return self.classification_labels or NER_DEFAULT_LABELS

    def to_es(self) -> dict[str, Any]:
        return {**super().to_es(), "classification_labels": list(self.classification_labels)}


def iob_tag(label: str) -> tuple[str, str] | None:
    """("B", "PER") for "B-PER"/"b_per", ("O", "") for "O"; None when not an I-O-B tag."""
    upper = label.upper()
    if upper == "O":
        return ("O", "")
    if upper[:2] in ("B-", "I-", "B_", "I_"):
        return (upper[0], upper[2:])
    return None


class TextClassificationConfig(NlpConfig):
    task = "text_classification"
    updatable = ("results_field", "tokenization", "num_top_classes", "classification_labels")
    classification_labels: list[str] | None = None
    num_top_classes: int = -1

    @model_validator(mode="after")
    def _check_labels(self) -> "TextClassificationConfig":
        if not self.classification_labels or len(self.classification_labels) < 2:
            raise bad_request("[text_classification] requires at least 2 [classification_labels]; provided "
                                  f"{_java_list(self.classification_labels)}")
        return self

    def to_es(self) -> dict[str, Any]:
        return {**super().to_es(), "num_top_classes": self.num_top_classes}


ZERO_SHOT_REQUIRED_LABELS = "[entailment, neutral, contradiction]"


class ZeroShotClassificationConfig(NlpConfig):
    task = "zero_shot_classification"
    updatable = ("results_field", "tokenization", "labels", "multi_label")
    classification_labels: list[str] | None = None
    hypothesis_template: str = "This example is {}."
    multi_label: bool = False
    labels: list[str] | None = None

    @model_validator(mode="after")
    def _check_labels(self) -> "ZeroShotClassificationConfig":
        if self.classification_labels is None:
            raise bad_request("[classification_labels] must not be null.")
        if len(self.classification_labels) != 3:
            raise bad_request(f"[classification_labels] must contain exactly the three values "
                                  f"{ZERO_SHOT_REQUIRED_LABELS}")
        bad = [label.lower() for label in self.classification_labels
               if label.lower() not in ("entailment", "neutral", "contradiction")]
        if bad:
            raise bad_request(f"[classification_labels] must contain exactly the three values "
                                  f"{ZERO_SHOT_REQUIRED_LABELS}. Invalid labels {_java_list(bad)}")
        if self.labels is not None and len(self.labels) == 0:
            raise bad_request("[labels] must not be empty")
        if self.tokenization.span != -1:
            raise bad_request(f"[zero_shot_classification] does not support windowing long text sequences; "
                                  f"configured span [{self.tokenization.span}]")
        return self

    def _index(self, name: str) -> int:
        lower = [label.lower() for label in self.classification_labels or []]
        if name not in lower:
            raise bad_request("zero_shot_classification requires [entailment] and [contradiction] in "
                                  "classification_labels")
        return lower.index(name)

    @property
    def entailment_index(self) -> int:
        return self._index("entailment")

    @property
    def contradiction_index(self) -> int:
        return self._index("contradiction")

    def to_es(self) -> dict[str, Any]:
        return {**super().to_es(), "multi_label": self.multi_label}


class FillMaskConfig(NlpConfig):
    task = "fill_mask"
    updatable = ("results_field", "tokenization", "num_top_classes")
    num_top_classes: int = 5
    mask_token: str | None = None

    @model_validator(mode="after")
    def _check_mask(self) -> "FillMaskConfig":
        expected = self.tokenization.mask_token
        if self.mask_token is not None and self.mask_token != expected:
            raise IllegalArgument(f"Mask token requested was [{self.mask_token}] but must be [{expected}] for this model")
        self.mask_token = None  # always written back from the tokenization (FillMaskConfig.toXContent)
        if self.tokenization.span != -1:
            raise bad_request(f"[fill_mask] does not support windowing long text sequences; "
                                  f"configured span [{self.tokenization.span}]")
        return self

    def to_es(self) -> dict[str, Any]:
        return {**super().to_es(), "num_top_classes": self.num_top_classes, "mask_token": self.tokenization.mask_token}


class QuestionAnsweringConfig(NlpConfig):
    task = "question_answering"
    updatable = ("results_field", "tokenization", "num_top_classes", "question", "max_answer_length")
    question: str | None = None
    num_top_classes: int = 0
    max_answer_length: int = 15

    def to_es(self) -> dict[str, Any]:
        return {**super().to_es(), "num_top_classes": self.num_top_classes,
                "max_answer_length": self.max_answer_length}

    @model_validator(mode="after")
    def _check(self) -> "QuestionAnsweringConfig":
        if self.max_answer_length <= 0:
            raise IllegalArgument("[max_answer_length] must be greater than 0")
        return self


class TextSimilarityConfig(NlpConfig):
    task = "text_similarity"
    updatable = ("results_field", "tokenization", "text", "span_score_combination_function")
    text: str | None = None
    span_score_combination_function: Literal["max", "mean"] = "max"


TASK_CONFIGS: dict[str, type[NlpConfig]] = {
    cls.task: cls for cls in (PassThroughConfig, TextEmbeddingConfig, TextExpansionConfig, NerConfig,
                              TextClassificationConfig, ZeroShotClassificationConfig, FillMaskConfig,
                              QuestionAnsweringConfig, TextSimilarityConfig)
}
TASK_TYPES = tuple(TASK_CONFIGS)


def parse_inference_config(value: Any) -> NlpConfig:
    """`{"ner": {...}}` → NerConfig (a named object: exactly one task)."""
    if isinstance(value, NlpConfig):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise ParseError("[inference_config] must be an object with exactly one inference type")
    (task, options), = value.items()
    cls = TASK_CONFIGS.get(task)
    if cls is None:
        raise ParseError(f"Unknown inference config type [{task}]")
    return _validate(cls, options or {}, task)


def inference_config_to_es(config: NlpConfig) -> dict[str, Any]:
    return {config.task: config.to_es()}


InferenceConfigField = Annotated[NlpConfig, BeforeValidator(parse_inference_config),
                                 PlainSerializer(inference_config_to_es)]


def apply_inference_update(model_id: str, config: NlpConfig, update: dict[str, Any] | None) -> NlpConfig:
    """The per-request `inference_config` of _infer applied to the stored config (§5.4 step 3).

    The task of the update must be the model's; only the fields Elasticsearch's *ConfigUpdate
    classes accept may change, and of the tokenization only `truncate` and `span`.
    """
    if not update:
        return config
    if not isinstance(update, dict) or len(update) != 1:
        raise ParseError("[inference_config] must be an object with exactly one inference type")
    (task, options), = update.items()
    if task not in TASK_CONFIGS:
        raise ParseError(f"Unknown inference config type [{task}]")
    if task != config.task:
        # TrainedModelDeploymentTask.infer answers this with 403 FORBIDDEN
        raise StatusException(f"Trained model [{model_id}] is configured for task [{config.task}] "
                              f"but called with task [{task}]", 403)
    options = options or {}
    if not isinstance(options, dict):
        raise ParseError(f"[{task}] must be an object")
    unknown = sorted(set(options) - set(config.updatable))
    if unknown:
        raise ParseError(f"[{task}] unknown field [{unknown[0]}]")
    changes = {k: v for k, v in options.items() if k != "tokenization"}
    old_labels = getattr(config, "classification_labels", None)
    new_labels = changes.get("classification_labels")
    if config.task == "text_classification" and isinstance(new_labels, list) and old_labels is not None \
            and len(new_labels) != len(old_labels):
        raise bad_request(f"The number of [classification_labels] the model is defined with [{len(old_labels)}] "
                              f"does not match the number in the update [{len(new_labels)}]")
    merged = config.model_dump(exclude_none=True)
    merged.update(changes)
    tokenization = config.tokenization
    if options.get("tokenization"):
        tok_update = options["tokenization"]
        if not isinstance(tok_update, dict) or len(tok_update) != 1:
            raise ParseError("[tokenization] must be an object with exactly one tokenization type")
        (kind, tok_options), = tok_update.items()
        if kind not in TOKENIZATIONS:
            raise ParseError(f"Unknown tokenization update type [{kind}]")
        if kind != tokenization.kind:
            raise IllegalArgument(f"Tokenization config of type [{tokenization.kind}] can not be updated with "
                                  f"a request of type [{kind}]")
        tok = _validate(TokenizationUpdate, tok_options or {}, kind)
        tok_changes = tok.model_dump(exclude_none=True)
        if "truncate" in tok_changes and "span" not in tok_changes and tok_changes["truncate"] != "none":
            tok_changes["span"] = -1  # a truncating update drops the stored span (Tokenization.updateWindowSettings)
        tokenization = _validate(type(tokenization), {**tokenization.model_dump(), **tok_changes}, kind)
    merged["tokenization"] = tokenization
    return _validate(type(config), merged, task)


# --------------------------------------------------------------------------- the trained model


class TrainedModelInput(_Strict):
    field_names: list[str] = Field(default_factory=lambda: ["input"])


class PrefixStrings(_Strict):
    search: str | None = None
    ingest: str | None = None


class TrainedModelConfig(BaseModel):
    """A pytorch trained model's configuration (TrainedModelConfig.java), creation fields only.

    Server-stamped fields (`created_by`, `create_time`, `version`, `license_level`,
    `model_size_bytes`, ...) belong to whoever stores the model; they are rejected here at
    creation and tolerated (kept in `extra`) when a stored config is read back.
    """

    model_config = ConfigDict(extra="allow")

    model_id: str
    model_type: Literal["pytorch"] = "pytorch"
    inference_config: InferenceConfigField
    input: TrainedModelInput = Field(default_factory=TrainedModelInput)
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    prefix_strings: PrefixStrings | None = None
    platform_architecture: str | None = None

    @property
    def task(self) -> str:
        return self.inference_config.task

    @property
    def input_field(self) -> str:
        return self.input.field_names[0]

    def to_es(self) -> dict[str, Any]:
        """The JSON Elasticsearch returns (defaults filled, absent optionals left out)."""
        body = self.model_dump(exclude_none=True, mode="json")
        if self.prefix_strings is not None:
            body["prefix_strings"] = self.prefix_strings.model_dump(exclude_none=True)
        return body


def parse_trained_model_config(body: dict[str, Any], *, model_id: str | None = None,
                               for_creation: bool = True) -> TrainedModelConfig:
    """Validate a put-trained-model body (or a stored config when `for_creation` is False).

    The collectable checks of Elasticsearch's Builder.validate come back together as one
    ValidationFailed; an invalid inference_config fails on its own, as its parser does.
    """
    if not isinstance(body, dict):
        raise ParseError("request body must be a JSON object")
    body = dict(body)
    if model_id is not None:
        body.setdefault("model_id", model_id)
    if for_creation:
        unknown = [k for k in body if k not in _CREATION_FIELDS]
        if unknown:
            raise ParseError(f"[trained_model_config] unknown field [{unknown[0]}]")
    messages: list[str] = []
    mid = body.get("model_id")
    packaged = isinstance(mid, str) and mid.startswith(".")
    if mid is None:
        messages.append("[model_id] must not be null.")
    if not packaged:
        if body.get("definition") is not None and body.get("location") is not None:
            messages.append("[definition] and [location] are both defined but only one can be used.")
        if body.get("model_type") is None and body.get("definition") is None:
            messages.append("[model_type] must be set if [definition] is not defined.")
        if for_creation and body.get("inference_config") is None:
            messages.append("[inference_config] must not be null.")
    if isinstance(mid, str):
        check = mid[1:].removesuffix("_SNAPSHOT") if packaged else mid
        if not _VALID_ID.match(check):
            kind = "model package id" if packaged else "model_id"
            messages.append(f"Invalid {kind}; '{mid}' can contain lowercase alphanumeric (a-z and 0-9), hyphens or "
                            "underscores; must start and end with alphanumeric")
        if len(mid) > ID_LENGTH_LIMIT:
            messages.append(f"Invalid model_id; '{mid}' cannot contain more than {ID_LENGTH_LIMIT} characters.")
    tags = body.get("tags") or []
    if isinstance(tags, list):
        bad = [t for t in tags if not (isinstance(t, str) and _VALID_ID.match(t) and len(t) <= ID_LENGTH_LIMIT)]
        if bad:
            messages.append(f"Invalid tags {_java_list(bad)}; must only can contain lowercase alphanumeric (a-z and "
                            "0-9), hyphens or underscores, must start and end with alphanumeric, and must be less "
                            f"than {ID_LENGTH_LIMIT} characters.")
        if mid in tags:
            messages.append("none of the tags must equal the model_id")
    field_names = (body.get("input") or {}).get("field_names") if isinstance(body.get("input"), dict) else None
    if isinstance(field_names, list):  # InferenceConfig.validateTrainedModelInput; the first field is the input
        if not field_names:
            messages.append("[input.field_names] must not be empty")
        if any(isinstance(f, str) and "." in f and "" in f.split(".") for f in field_names):
            messages.append("[input.field_names] must only contain valid dot delimited field names")
    if for_creation:
        for name in ILLEGAL_AT_CREATION:
            if body.get(name) is not None:
                messages.append(f"illegal to set [{name}] at inference model creation")
        metadata = body.get("metadata")
        if isinstance(metadata, dict):
            for name in ILLEGAL_METADATA_AT_CREATION:
                if metadata.get(name) is not None:
                    messages.append(f"illegal to set [metadata.{name}] at inference model creation")
    if body.get("model_type") not in (None, "pytorch"):
        messages.append(f"[model_type] must be [pytorch]; tmd serves only pytorch models, got [{body.get('model_type')}]")
    if messages:
        raise ValidationFailed(messages)
    inference_config = body.get("inference_config")
    if for_creation and isinstance(inference_config, dict):
        for options in inference_config.values():
            if isinstance(options, dict) and "vocabulary" in options:
                raise bad_request("illegal setting [vocabulary] on inference model creation")
    return _validate(TrainedModelConfig, body, "trained_model_config")


# Top-level fields a create request may carry: ours, and the server-stamped ones Elasticsearch
# parses and then rejects with "illegal to set [...]" (so they are reported, not "unknown").
_CREATION_FIELDS = set(TrainedModelConfig.model_fields) | set(ILLEGAL_AT_CREATION) | {
    "definition", "compressed_definition", "estimated_heap_memory_usage_bytes", "estimated_operations",
    "model_size_bytes", "default_field_map"}


# --------------------------------------------------------------------------- helpers


def _java_list(values: list[Any] | None) -> str:
    """How Java prints a List (`[a, b]`), which Elasticsearch messages embed."""
    if values is None:
        return "null"
    return "[" + ", ".join(str(v) for v in values) + "]"


def _validate(cls: type[BaseModel], data: Any, name: str) -> Any:
    """Model-validate, turning pydantic's structural errors into Elasticsearch parse errors."""
    if not isinstance(data, dict):
        raise ParseError(f"[{name}] must be an object")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise _parse_error(exc, name) from None


def _parse_error(exc: ValidationError, name: str) -> ElasticsearchError:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    field = loc[-1] if loc else name
    container = loc[-2] if len(loc) > 1 else name
    if err["type"] == "extra_forbidden":
        return ParseError(f"[{container}] unknown field [{field}]")
    if err["type"] == "missing":
        return IllegalArgument(f"[{container}] missing required field [{field}]"
                               if container != name else f"[{field}] must not be null")
    return ParseError(f"[{container}] failed to parse field [{field}]: {err['msg']}")
