"""Loading a model directory: `config.json`, `vocabulary.json`, `model.pt` (TorchScript).

Every way loading can fail because of what is (or is not) in the directory becomes a
`ModelLoadError` with a one-line message for the operator of the worker, never a traceback.
The warm-up runs the real path (prepare, forward) once so the first request does not pay for
TorchScript's first-run optimisation, and so a model that cannot run fails here, not later.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import torch

from tmd.api.errors import ElasticsearchError

CONFIG_FILE = "config.json"
VOCABULARY_FILE = "vocabulary.json"
MODEL_FILE = "model.pt"


class ModelLoadError(Exception):
    """The model directory cannot be served; the message says why."""


@dataclass
class LoadedModel:
    model: Any  # torch.jit.ScriptModule
    config: dict
    vocabulary: dict
    pipeline: Any  # tmd.worker.nlp Pipeline
    model_bytes: int

    @property
    def model_id(self) -> str:
        return str(self.config.get("model_id") or getattr(self.pipeline, "model_id", "") or "")


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ModelLoadError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{what} is not valid JSON: {path}: {err}") from None


def load_model_dir(model_dir: str, *, load_pipeline: Any = None) -> LoadedModel:
    """Read and check a model directory; the model is loaded once, on the CPU, in eval mode."""
    if not os.path.isdir(model_dir):
        raise ModelLoadError(f"model directory not found: {model_dir}")
    config = _read_json(os.path.join(model_dir, CONFIG_FILE), "model configuration")
    if not isinstance(config, dict):
        raise ModelLoadError(f"model configuration must be a JSON object: {os.path.join(model_dir, CONFIG_FILE)}")
    vocabulary = _read_json(os.path.join(model_dir, VOCABULARY_FILE), "vocabulary")
    if not isinstance(vocabulary, dict) or not isinstance(vocabulary.get("vocabulary"), list):
        raise ModelLoadError(f"vocabulary must be an object with a [vocabulary] list: {os.path.join(model_dir, VOCABULARY_FILE)}")
    if load_pipeline is None:
        from tmd.worker.nlp import load_pipeline
    try:
        pipeline = load_pipeline(config, vocabulary)
    except ElasticsearchError as err:
        raise ModelLoadError(f"model configuration is not usable: {err.reason}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise ModelLoadError(f"model configuration is not usable: {err!r}") from None
    model_path = os.path.join(model_dir, MODEL_FILE)
    if not os.path.isfile(model_path):
        raise ModelLoadError(f"model definition not found: {model_path}")
    try:
        model = torch.jit.load(model_path, map_location="cpu")
    except Exception as err:  # torch raises RuntimeError/ValueError/zipfile errors for bad files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"model definition is not a TorchScript model: {model_path}: {first}") from None
    model.eval()
    return LoadedModel(model=model, config=config, vocabulary=vocabulary, pipeline=pipeline,
                       model_bytes=os.path.getsize(model_path))


def warm_up_doc(config: dict, pipeline: Any) -> dict:
    """A document with the model's input field set, for the warm-up inference (fill_mask needs its mask)."""
    fields = (config.get("input") or {}).get("field_names") or ["input"]
    text = "warm up"
    if pipeline.task == "fill_mask":
        text = f"warm {pipeline.tokenizer.mask_token}"
    return {fields[0]: text}


def warm_up_overrides(task: str) -> dict | None:
    """Inference options some tasks need before they can run at all (a question, labels, a text)."""
    if task == "question_answering":
        return {"question_answering": {"question": "warm up?"}}
    if task == "zero_shot_classification":
        return {"zero_shot_classification": {"labels": ["warm", "up"]}}
    if task == "text_similarity":
        return {"text_similarity": {"text": "warm up"}}
    return None


def warm_up(loaded: LoadedModel, runs: int = 2) -> Any:
    """Run prepare + forward `runs` times (TorchScript's profiling executor optimises on run 2).

    Returns the prepared warm-up document, for the batching probe (tmd.worker.batching)."""
    try:
        prepared = loaded.pipeline.prepare(warm_up_doc(loaded.config, loaded.pipeline), warm_up_overrides(loaded.pipeline.task))
        with torch.inference_mode():
            for _ in range(runs):
                loaded.model(*prepared.inputs)
        return prepared
    except ElasticsearchError as err:
        raise ModelLoadError(f"warm-up inference failed: {err.reason}") from None
    except Exception as err:
        lines = [line for line in str(err).splitlines() if line.strip()]
        raise ModelLoadError(f"warm-up inference failed: {lines[-1].strip() if lines else type(err).__name__}") from None
