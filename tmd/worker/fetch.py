"""Bring a model's artifacts into the pod and check them before anything loads them.

A TrainedModel says where its definition and vocabulary live (a file://, http:// or https://
URI, with the sha256 and length the model store computed). The worker copies them into a local
model directory (the layout `tmd.worker.model` loads: config.json, vocabulary.json, model.pt)
and refuses to start on a mismatch, so a truncated upload or a swapped file never serves.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx

CHUNK = 1 << 20


class FetchError(Exception):
    """An artifact could not be fetched or failed verification; the message says which and why."""


@dataclass(frozen=True)
class Artifact:
    uri: str
    sha256: str | None = None
    length: int | None = None


def fetch(artifact: Artifact, dest: Path) -> Path:
    """Copy `artifact` to `dest` atomically, verifying its sha256 and length when given."""
    parsed = urlparse(artifact.uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in _chunks(parsed, artifact.uri):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if artifact.length is not None and size != artifact.length:
            raise FetchError(f"[{artifact.uri}] has {size} bytes, expected {artifact.length}")
        if artifact.sha256 and digest.hexdigest() != artifact.sha256.lower():
            raise FetchError(f"[{artifact.uri}] has sha256 {digest.hexdigest()}, expected {artifact.sha256}")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _chunks(parsed: Any, uri: str):
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        try:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
        except OSError as err:
            raise FetchError(f"cannot read [{uri}]: {err.strerror}") from None
    elif parsed.scheme in ("http", "https"):
        try:
            with httpx.stream("GET", uri, timeout=60.0, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise FetchError(f"[{uri}] answered HTTP {response.status_code}")
                yield from response.iter_bytes(CHUNK)
        except httpx.HTTPError as err:
            raise FetchError(f"cannot download [{uri}]: {err}") from None
    else:
        raise FetchError(f"unsupported URI scheme [{parsed.scheme}] in [{uri}]; use file://, http:// or https://")


def materialize_model_dir(dest: Path, config: dict[str, Any], definition: Artifact,
                          vocabulary: Artifact | None) -> Path:
    """Write a complete model directory at `dest` from the model's configuration and artifacts."""
    dest.mkdir(parents=True, exist_ok=True)
    fetch(definition, dest / "model.pt")
    if vocabulary is not None:
        fetch(vocabulary, dest / "vocabulary.json")
    else:
        (dest / "vocabulary.json").write_text(json.dumps({"vocabulary": []}))
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def default_model_dir(deployment_id: str) -> Path:
    """Pod-local scratch space for the fetched model (an emptyDir in a cluster)."""
    return Path(os.environ.get("TMD_WORK_DIR") or tempfile.gettempdir()) / f"tmd-model-{deployment_id}-{os.getpid()}"


def remove_model_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def model_dir_from_env(env: dict[str, str] | os._Environ) -> Path | None:
    """In a pod the operator describes the model by URIs (TMD_DEFINITION_URI, TMD_VOCABULARY_URI,
    their TMD_*_SHA256, and TMD_MODEL_CONFIG); fetch them into a local model directory.
    Returns None when a model directory is given directly instead."""
    if env.get("TMD_MODEL_DIR") or not env.get("TMD_DEFINITION_URI"):
        return None
    try:
        config = json.loads(env.get("TMD_MODEL_CONFIG") or "{}")
    except json.JSONDecodeError as err:
        raise FetchError(f"TMD_MODEL_CONFIG is not JSON: {err}") from None
    definition = Artifact(env["TMD_DEFINITION_URI"], env.get("TMD_DEFINITION_SHA256") or None)
    vocabulary = (Artifact(env["TMD_VOCABULARY_URI"], env.get("TMD_VOCABULARY_SHA256") or None)
                  if env.get("TMD_VOCABULARY_URI") else None)
    deployment_id = env.get("TMD_DEPLOYMENT_ID") or config.get("model_id") or "model"
    return materialize_model_dir(default_model_dir(deployment_id), config, definition, vocabulary)
