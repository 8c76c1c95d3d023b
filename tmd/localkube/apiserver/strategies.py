"""Per-kind rules (pkg/registry/*/strategy.go): defaults on create, validation, immutable fields."""

from __future__ import annotations

import base64
import binascii
import copy
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import FieldError, forbidden_field, invalid_field, required_field
from .kinds import storage_version
from .meta import DNS1123_LABEL, micro_time, now, parse_time, rfc3339

SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1, "k": 10**3, "M": 10**6,
    "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}


def parse_quantity(value: Any) -> Decimal | None:
    """resource.Quantity → Decimal (None if malformed)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"):
        if text.endswith(suffix):
            try:
                return Decimal(text[: -len(suffix)]) * Decimal(SUFFIXES[suffix])
            except InvalidOperation:
                return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


# --- pods ----------------------------------------------------------------------------------------

def _all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for key in ("initContainers", "containers") for c in spec.get(key) or [] if isinstance(c, dict)]


def qos_class(spec: dict[str, Any]) -> str:
    """Guaranteed / Burstable / BestEffort as pkg/apis/core/helper/qos computes it."""
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    any_set = False
    for c in _all_containers(spec):
        res = c.get("resources") or {}
        req = {k: parse_quantity(v) for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        lim = {k: parse_quantity(v) for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        req = {k: v for k, v in req.items() if v is not None and v != 0}
        lim = {k: v for k, v in lim.items() if v is not None and v != 0}
        if req or lim:
            any_set = True
        if set(lim) != {"cpu", "memory"}:
            guaranteed = False
        for k, v in req.items():
            requests[k] = requests.get(k, Decimal(0)) + v
        for k, v in lim.items():
            limits[k] = limits.get(k, Decimal(0)) + v
            if req.get(k, v) != v:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _image_pull_policy(image: str) -> str:
    tail = image.rsplit("/", 1)[-1]
    if "@" in tail:
        return "IfNotPresent"
    if ":" not in tail or tail.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def default_container(c: dict[str, Any]) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if isinstance(c.get("image"), str):
        c.setdefault("imagePullPolicy", _image_pull_policy(c["image"]))
    res = c.setdefault("resources", {})
    if isinstance(res, dict) and res.get("limits") and isinstance(res["limits"], dict):
        req = res.setdefault("requests", {})
        for k, v in res["limits"].items():
            req.setdefault(k, v)
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
    for env in c.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(ref, dict):
            ref.setdefault("apiVersion", "v1")


def default_pod(pod: dict[str, Any], priority: int | None) -> None:
    spec = pod.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", priority or 0)
    spec.setdefault("tolerations", [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
    ])
    for c in _all_containers(spec):
        default_container(c)
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def validate_pod(pod: dict[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return [required_field("spec")]
    containers = spec.get("containers")
    if not containers:
        errs.append(required_field("spec.containers"))
    names: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            path = f"spec.{key}[{i}]"
            if not isinstance(c, dict):
                errs.append(invalid_field(path, c, "must be an object"))
                continue
            name = c.get("name")
            if not name:
                errs.append(required_field(f"{path}.name"))
            elif not isinstance(name, str) or len(name) > 63 or not DNS1123_LABEL.match(name):
                errs.append(invalid_field(f"{path}.name", name, "a lowercase RFC 1123 label must consist of lower "
                                          "case alphanumeric characters or '-', and must start and end with an "
                                          "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                                          "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"))
            elif name in names:
                errs.append(FieldError("Duplicate", f"{path}.name", value=name, has_value=True))
            else:
                names.add(name)
            if not c.get("image"):
                errs.append(required_field(f"{path}.image"))
            for kind in ("requests", "limits"):
                for rname, q in ((c.get("resources") or {}).get(kind) or {}).items():
                    if parse_quantity(q) is None:
                        errs.append(invalid_field(f"{path}.resources.{kind}[{rname}]", q,
                                                  "must be a valid quantity"))
    rp = spec.get("restartPolicy")
    if rp not in ("Always", "OnFailure", "Never"):
        errs.append(FieldError("NotSupported", "spec.restartPolicy", value=rp, has_value=True,
                               supported=["Always", "OnFailure", "Never"]))
    return errs


POD_UPDATE_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")


def _mutable_blanked(spec: dict[str, Any], blank_resources: bool = False) -> dict[str, Any]:
    s = copy.deepcopy(spec)
    for key in ("containers", "initContainers"):
        for c in s.get(key) or []:
            if isinstance(c, dict):
                c.pop("image", None)
                if blank_resources:
                    c.pop("resources", None)
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "schedulingGates"):
        s.pop(key, None)
    return s


def validate_pod_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    for c in _all_containers(new_spec):
        default_container(c)
    if _mutable_blanked(new_spec) != _mutable_blanked(old_spec):
        return [forbidden_field("spec", POD_UPDATE_MESSAGE)]
    old_tols = old_spec.get("tolerations") or []
    new_tols = new_spec.get("tolerations") or []
    if any(t not in new_tols for t in old_tols):
        return [forbidden_field("spec", POD_UPDATE_MESSAGE)]
    return []


def resize_pod(old: dict[str, Any], body: dict[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    """pods/resize: only `spec.containers[*].resources` may change, and not the QoS class."""
    new = copy.deepcopy(old)
    body_spec = body.get("spec") or {}
    for c in _all_containers(body_spec):
        default_container(c)
    if _mutable_blanked(body_spec, True) != _mutable_blanked(old.get("spec") or {}, True) or \
            [c.get("image") for c in body_spec.get("containers") or []] != \
            [c.get("image") for c in (old.get("spec") or {}).get("containers") or []]:
        return new, [forbidden_field("spec", "only cpu and memory resources are mutable")]
    for i, c in enumerate(body_spec.get("containers") or []):
        new["spec"]["containers"][i]["resources"] = c.get("resources") or {}
    errs: list[FieldError] = []
    for i, c in enumerate(new["spec"]["containers"]):
        for rname in ((c.get("resources") or {}).get("requests") or {}):
            if rname not in ("cpu", "memory") and (c["resources"]["requests"].get(rname) !=
                                                  ((old["spec"]["containers"][i].get("resources") or {})
                                                   .get("requests") or {}).get(rname)):
                errs.append(forbidden_field(f"spec.containers[{i}].resources.requests[{rname}]",
                                            "only cpu and memory resources are mutable"))
    if qos_class(new["spec"]) != (old.get("status") or {}).get("qosClass", qos_class(old["spec"])):
        errs.append(forbidden_field("spec", "Pod QoS is immutable"))
    return new, errs


# --- namespaces ----------------------------------------------------------------------------------

def default_namespace(ns: dict[str, Any]) -> None:
    name = ns["metadata"]["name"]
    ns["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    ns["spec"] = {"finalizers": ["kubernetes"]}
    ns["status"] = {"phase": "Active"}


# --- CRDs ----------------------------------------------------------------------------------------

def crd_status(crd: dict[str, Any], old_status: dict[str, Any] | None) -> dict[str, Any]:
    """Names accepted and established at once (no controller delay)."""
    t = rfc3339(now())
    status = copy.deepcopy(old_status) if old_status else {}
    names = copy.deepcopy(crd["spec"].get("names") or {})
    names.setdefault("singular", names.get("kind", "").lower())
    names.setdefault("listKind", names.get("kind", "") + "List")
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    for ctype, reason, msg in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                               ("Established", "InitialNamesAccepted", "the initial names have been accepted")):
        if ctype not in conds:
            conds[ctype] = {"type": ctype, "status": "True", "lastTransitionTime": t, "reason": reason,
                            "message": msg}
    status["conditions"] = list(conds.values())
    status["acceptedNames"] = names
    stored = list(status.get("storedVersions") or [])
    sv = storage_version(crd)
    if sv not in stored:
        stored.append(sv)
    status["storedVersions"] = stored
    return status


def default_crd(crd: dict[str, Any]) -> None:
    spec = crd.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("scope", "Namespaced")
        spec.setdefault("conversion", {"strategy": "None"})
        names = spec.setdefault("names", {})
        if isinstance(names, dict) and names.get("kind"):
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", names["kind"] + "List")


# --- secrets, events, leases ---------------------------------------------------------------------

def prepare_secret(secret: dict[str, Any]) -> list[FieldError]:
    secret.setdefault("type", "Opaque")
    errs: list[FieldError] = []
    string_data = secret.pop("stringData", None)
    if isinstance(string_data, dict):
        data = secret.setdefault("data", {})
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
    for k, v in (secret.get("data") or {}).items():
        try:
            base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError, TypeError):
            errs.append(invalid_field(f"data[{k}]", "<secret contents redacted>", "must be base64 encoded"))
    return errs


def normalise_times(obj: dict[str, Any], kind: str) -> list[FieldError]:
    """Re-serialise client timestamps the way Go's metav1.Time/MicroTime would (UTC, `Z`)."""
    errs: list[FieldError] = []
    fields: list[tuple[dict[str, Any], str, bool]] = []
    if kind == "Event":
        fields = [(obj, "eventTime", True), (obj, "firstTimestamp", False), (obj, "lastTimestamp", False)]
        series = obj.get("series")
        if isinstance(series, dict):
            fields.append((series, "lastObservedTime", True))
    elif kind == "Lease":
        spec = obj.get("spec")
        if isinstance(spec, dict):
            fields = [(spec, "acquireTime", True), (spec, "renewTime", True)]
    for holder, key, micro in fields:
        value = holder.get(key)
        if value is None:
            holder.pop(key, None)
            continue
        t = parse_time(value)
        if t is None:
            errs.append(invalid_field(key, value, "must be an RFC 3339 time"))
            continue
        holder[key] = micro_time(t) if micro else rfc3339(t)
    return errs
