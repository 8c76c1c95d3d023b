"""A container's environment, as the kubelet computes it: image env, `envFrom`, `env` with the
downward API (`fieldRef`, `resourceFieldRef`), ConfigMap/Secret references and `$(VAR)` expansion.

Pure: the ConfigMaps and Secrets a pod refers to are fetched beforehand and passed in.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .resources import resource_field_value

Obj = Mapping[str, Any]


class EnvError(Exception):
    """The container cannot be created yet (waiting reason CreateContainerConfigError)."""


@dataclass(frozen=True)
class PodContext:
    """What the downward API exposes beyond the pod object itself."""

    pod_ip: str
    host_ip: str
    node_allocatable: Mapping[str, str]


_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, unknown ones kept, `$$` escapes `$`."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REF.sub(sub, text)


def field_ref(pod: Obj, path: str, ctx: PodContext) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": ctx.pod_ip,
        "status.podIPs": ctx.pod_ip,
        "status.hostIP": ctx.host_ip,
        "status.hostIPs": ctx.host_ip,
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    raise EnvError(f"unsupported fieldRef fieldPath: {path!r}")


def _key_ref(kind: str, sources: Mapping[str, Mapping[str, str]], ref: Obj) -> str | None:
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    data = sources.get(name)
    if data is None:
        if optional:
            return None
        raise EnvError(f'{kind} "{name}" not found')
    if key not in data:
        if optional:
            return None
        raise EnvError(f"couldn't find key {key} in {kind} {name}")
    return data[key]


def configmap_data(configmap: Obj) -> dict[str, str]:
    data = dict(configmap.get("data") or {})
    for key, value in (configmap.get("binaryData") or {}).items():
        data.setdefault(key, base64.b64decode(value).decode("utf-8", "replace"))
    return data


def secret_data(secret: Obj) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def referenced_sources(pod: Obj) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets the pod's containers refer to in env/envFrom."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    spec = pod.get("spec") or {}
    for container in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                configmaps.add(source["configMapRef"].get("name", ""))
            if "secretRef" in source:
                secrets.add(source["secretRef"].get("name", ""))
        for var in container.get("env") or []:
            value_from = var.get("valueFrom") or {}
            if "configMapKeyRef" in value_from:
                configmaps.add(value_from["configMapKeyRef"].get("name", ""))
            if "secretKeyRef" in value_from:
                secrets.add(value_from["secretKeyRef"].get("name", ""))
    return configmaps, secrets


def container_env(
    pod: Obj,
    container: Obj,
    ctx: PodContext,
    base_env: Mapping[str, str],
    configmaps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
) -> dict[str, str]:
    """The full environment of one container process, in the kubelet's precedence order."""
    env = dict(base_env)
    env["HOSTNAME"] = (pod.get("metadata") or {}).get("name", "")
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, sources, ref_key in (("configmap", configmaps, "configMapRef"), ("secret", secrets, "secretRef")):
            ref = source.get(ref_key)
            if ref is None:
                continue
            data = sources.get(ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f'{kind} "{ref.get("name", "")}" not found')
            env.update({prefix + k: v for k, v in data.items()})
    defined: dict[str, str] = {}
    for var in container.get("env") or []:
        name = var["name"]
        value_from = var.get("valueFrom")
        if value_from is None:
            value: str | None = expand(str(var.get("value", "")), {**env, **defined})
        elif "fieldRef" in value_from:
            value = field_ref(pod, value_from["fieldRef"].get("fieldPath", ""), ctx)
        elif "resourceFieldRef" in value_from:
            ref = value_from["resourceFieldRef"]
            target = container
            if ref.get("containerName"):
                spec = pod.get("spec") or {}
                matches = [c for c in list(spec.get("containers") or []) + list(spec.get("initContainers") or []) if c.get("name") == ref["containerName"]]
                if not matches:
                    raise EnvError(f"resourceFieldRef: container {ref['containerName']!r} not found")
                target = matches[0]
            value = resource_field_value(target, ref.get("resource", ""), ref.get("divisor"), ctx.node_allocatable)
        elif "configMapKeyRef" in value_from:
            value = _key_ref("configmap", configmaps, value_from["configMapKeyRef"])
        elif "secretKeyRef" in value_from:
            value = _key_ref("secret", secrets, value_from["secretKeyRef"])
        else:
            raise EnvError(f"unsupported valueFrom for env {name}: {sorted(value_from)}")
        if value is not None:
            defined[name] = value
    env.update(defined)
    return env


def container_argv(container: Obj, env: Mapping[str, str]) -> list[str]:
    """`command` + `args` with `$(VAR)` expanded; the image is ignored, so a command is required."""
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if not command and not args:
        raise EnvError(f"container {container.get('name')!r} has no command: localkube runs commands, not images")
    return [expand(str(part), env) for part in command + args]
