"""A directory model store: definition parts as they arrive, assembled atomically once complete.

Layout under the root (a PersistentVolume in a cluster, a local directory for `tmd up`):

    <model>/parts/<n>.bin        decoded bytes of part n (written to a temp file, then renamed)
    <model>/parts/<n>.json       {"definition_length", "total_definition_length", "total_parts"}
    <model>/model.pt             the assembled TorchScript definition (temp file + rename)
    <model>/definition.json      {"sha256", "total_definition_length"}: written last, so its
                                 presence means model.pt is complete and verified
    <model>/vocabulary.json      {"vocabulary", "merges"?, "scores"?} (temp file + rename)

Every file appears by `os.replace`, so a crash at any moment leaves either the old state or the
new one, never half a file; a retried part simply replaces itself. Parts may arrive in any order.
`<model>` is the Kubernetes resource name of the model id (DNS-safe, collision-free).
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

from tmd.api.errors import ElasticsearchError, IllegalArgument, ResourceNotFound, ValidationFailed
from tmd.api.resources import resource_name

MAX_PARTS = 10_000
DEFINITION_FILE = "model.pt"
VOCABULARY_FILE = "vocabulary.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredArtifact:
    """An assembled artifact: the file, its digest and length."""

    path: Path
    sha256: str
    length: int


def part_validation_errors(part: int, total_definition_length: Any, total_parts: Any) -> list[str]:
    """PutTrainedModelDefinitionPartAction.Request#validate, in Elasticsearch's order and words."""
    errors: list[str] = []
    if part < 0:
        errors.append("[part] must be greater or equal to 0")
    if not isinstance(total_parts, int) or total_parts <= 0:
        errors.append("[total_parts] must be greater than 0")
    elif total_parts > MAX_PARTS:
        errors.append(f"[total_parts] must be less than or equal to {MAX_PARTS}")
    if not isinstance(total_definition_length, int) or total_definition_length <= 0:
        errors.append("[total_definition_length] must be greater than 0")
    if isinstance(total_parts, int) and part >= total_parts > 0:
        errors.append("[part] must be less than total_parts")
    return errors


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DirectoryStore:
    """Model artifacts on a filesystem; safe to use from several processes sharing the directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def model_dir(self, model_id: str) -> Path:
        return self.root / resource_name(model_id)

    # ------------------------------------------------------------------ definition parts

    def put_part(self, model_id: str, part: int, data: bytes, total_definition_length: int,
                 total_parts: int) -> StoredArtifact | None:
        """Store one part; assemble when every part is there. Returns the definition once assembled."""
        errors = part_validation_errors(part, total_definition_length, total_parts)
        if errors:
            raise ValidationFailed(errors)
        parts = self.model_dir(model_id) / "parts"
        meta = {"definition_length": len(data), "total_definition_length": total_definition_length,
                "total_parts": total_parts}
        _atomic_write(parts / f"{part}.bin", data)
        _atomic_write(parts / f"{part}.json", json.dumps(meta).encode())
        return self.assemble(model_id)

    def _part_metas(self, model_id: str) -> dict[int, dict[str, Any]]:
        parts = self.model_dir(model_id) / "parts"
        metas: dict[int, dict[str, Any]] = {}
        if parts.is_dir():
            for entry in parts.glob("*.json"):
                if entry.stem.isdigit() and (parts / f"{entry.stem}.bin").exists():
                    metas[int(entry.stem)] = json.loads(entry.read_text())
        return metas

    def check_parts(self, model_id: str) -> int:
        """The start pre-check of es-api.md §2.3 step 10 over the stored parts: the definition's
        total length, or the Elasticsearch error that says what is wrong."""
        if self.definition(model_id) is not None:
            return self.definition(model_id).length  # type: ignore[union-attr]
        metas = self._part_metas(model_id)
        if not metas:
            raise ResourceNotFound(f"Could not find trained model definition [{model_id}]")
        totals = {m["total_definition_length"] for m in metas.values()}
        if len(totals) > 1:
            raise IllegalArgument(f"[{model_id}] [total_definition_length] must be the same in all model definition "
                                  "parts. The value [{}] in model definition part [{}] does not match the value [{}] "
                                  "in part [0]".format(*self._mismatch(metas)))
        if sum(m["definition_length"] for m in metas.values()) != totals.pop():
            raise ElasticsearchError(f"Model definition truncated. Unable to deserialize trained model definition "
                                     f"[{model_id}]", status=400, type="illegal_argument_exception")
        return sum(m["definition_length"] for m in metas.values())

    @staticmethod
    def _mismatch(metas: dict[int, dict[str, Any]]) -> tuple[int, int, int]:
        first = metas[min(metas)]["total_definition_length"]
        for n in sorted(metas):
            if metas[n]["total_definition_length"] != first:
                return metas[n]["total_definition_length"], n, first
        return first, min(metas), first

    def assemble(self, model_id: str) -> StoredArtifact | None:
        """Concatenate the parts into model.pt if all are present and agree; else None (not yet)."""
        done = self.definition(model_id)
        if done is not None:
            return done
        metas = self._part_metas(model_id)
        if not metas:
            return None
        first = next(iter(metas.values()))
        total_parts, total_length = first["total_parts"], first["total_definition_length"]
        complete = (set(metas) == set(range(total_parts))
                    and all(m["total_parts"] == total_parts and m["total_definition_length"] == total_length
                            for m in metas.values())
                    and sum(m["definition_length"] for m in metas.values()) == total_length)
        if not complete:
            return None
        directory = self.model_dir(model_id)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{DEFINITION_FILE}.")
        try:
            with os.fdopen(fd, "wb") as out:
                for n in range(total_parts):
                    with (directory / "parts" / f"{n}.bin").open("rb") as src:
                        while chunk := src.read(_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, directory / DEFINITION_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _atomic_write(directory / "definition.json",
                      json.dumps({"sha256": digest.hexdigest(), "total_definition_length": total_length}).encode())
        shutil.rmtree(directory / "parts", ignore_errors=True)
        return self.definition(model_id)

    def definition(self, model_id: str) -> StoredArtifact | None:
        """The assembled definition, or None while parts are still missing."""
        directory = self.model_dir(model_id)
        try:
            meta = json.loads((directory / "definition.json").read_text())
        except (OSError, ValueError):
            return None
        return StoredArtifact(directory / DEFINITION_FILE, meta["sha256"], meta["total_definition_length"])

    # ------------------------------------------------------------------ vocabulary

    def put_vocabulary(self, model_id: str, body: dict[str, Any]) -> StoredArtifact:
        data = json.dumps(body, ensure_ascii=False).encode()
        path = self.model_dir(model_id) / VOCABULARY_FILE
        _atomic_write(path, data)
        return StoredArtifact(path, hashlib.sha256(data).hexdigest(), len(data))

    def vocabulary(self, model_id: str) -> StoredArtifact | None:
        path = self.model_dir(model_id) / VOCABULARY_FILE
        try:
            data = path.read_bytes()
        except OSError:
            return None
        return StoredArtifact(path, hashlib.sha256(data).hexdigest(), len(data))

    # ------------------------------------------------------------------ lifecycle

    def delete(self, model_id: str) -> None:
        """Remove everything of a model; renamed away first so no reader sees a half-deleted directory."""
        directory = self.model_dir(model_id)
        if not directory.exists():
            return
        trash = self.root / f".deleted-{directory.name}-{os.getpid()}"
        os.replace(directory, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def file_for(self, name: str, filename: str) -> Path | None:
        """The assembled file `filename` of the model stored under resource name `name`, for serving."""
        if filename not in (DEFINITION_FILE, VOCABULARY_FILE) or "/" in name or name.startswith("."):
            return None
        path = self.root / name / filename
        if filename == DEFINITION_FILE and not (self.root / name / "definition.json").exists():
            return None
        return path if path.is_file() else None


def uri_for(base: str | None, store: DirectoryStore, model_id: str, filename: str) -> str:
    """Where workers fetch an artifact: `file://` under the store root when `base` is None (one
    machine), else `<base>/_tmd/store/<model>/<file>` served by the shim."""
    if base is None:
        return (store.model_dir(model_id) / filename).as_uri()
    return f"{base.rstrip('/')}/_tmd/store/{resource_name(model_id)}/{filename}"
