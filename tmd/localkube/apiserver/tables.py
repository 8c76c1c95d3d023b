"""`meta.k8s.io/v1 Table` responses for `kubectl get` (pkg/printers/internalversion, apiextensions
tableconvertor): server-formatted cells, `priority: 1` for `-o wide` columns."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Callable

from .kinds import ResourceType, crd_version, lookup
from .meta import now, parse_time

Column = tuple[str, str, int, str]  # name, type, priority, description


def human_duration(d: dt.timedelta) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    seconds = int(d.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def age(ts: Any) -> str:
    t = parse_time(ts) if ts else None
    return human_duration(now() - t) if t else "<unknown>"


def _none(v: Any) -> Any:
    return v if v not in (None, "") else "<none>"


def _pod_row(pod: dict[str, Any]) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    has_running = False
    for c in reversed(statuses):
        state = c.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state and state["terminated"] is not None:
            term = state["terminated"]
            if term.get("reason"):
                reason = term["reason"]
            elif term.get("signal"):
                reason = f"Signal:{term['signal']}"
            else:
                reason = f"ExitCode:{term.get('exitCode', 0)}"
        elif "running" in state and c.get("ready"):
            has_running = True
    if reason == "Completed" and has_running:
        reason = "Running"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    return [pod["metadata"]["name"], f"{ready}/{total}", reason, restarts, age(pod["metadata"].get("creationTimestamp")),
            _none(status.get("podIP")), _none(spec.get("nodeName")), _none(status.get("nominatedNodeName")),
            "<none>" if not gates else f"0/{len(gates)}"]


def _node_row(node: dict[str, Any]) -> list[Any]:
    status = node.get("status") or {}
    ready = next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    text = {"True": "Ready", "False": "NotReady"}.get(ready or "", "Unknown")
    if (node.get("spec") or {}).get("unschedulable"):
        text += ",SchedulingDisabled"
    labels = node["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    info = status.get("nodeInfo") or {}
    addrs = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    return [node["metadata"]["name"], text, ",".join(roles) or "<none>", age(node["metadata"].get("creationTimestamp")),
            info.get("kubeletVersion", ""), _none(addrs.get("InternalIP")), _none(addrs.get("ExternalIP")),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _event_row(ev: dict[str, Any]) -> list[Any]:
    last = ev.get("lastTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp")
    obj = ev.get("involvedObject") or {}
    return [age(last), ev.get("type", ""), ev.get("reason", ""), f"{(obj.get('kind') or '').lower()}/{obj.get('name', '')}",
            ev.get("message", "")]


BUILTIN: dict[str, tuple[list[Column], Callable[[dict[str, Any]], list[Any]]]] = {
    "Pod": ([("Name", "string", 0, "name"), ("Ready", "string", 0, ""), ("Status", "string", 0, ""),
             ("Restarts", "string", 0, ""), ("Age", "string", 0, ""), ("IP", "string", 1, ""),
             ("Node", "string", 1, ""), ("Nominated Node", "string", 1, ""), ("Readiness Gates", "string", 1, "")],
            _pod_row),
    "Node": ([("Name", "string", 0, "name"), ("Status", "string", 0, ""), ("Roles", "string", 0, ""),
              ("Age", "string", 0, ""), ("Version", "string", 0, ""), ("Internal-IP", "string", 1, ""),
              ("External-IP", "string", 1, ""), ("OS-Image", "string", 1, ""), ("Kernel-Version", "string", 1, ""),
              ("Container-Runtime", "string", 1, "")], _node_row),
    "Namespace": ([("Name", "string", 0, "name"), ("Status", "string", 0, ""), ("Age", "string", 0, "")],
                  lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""),
                             age(o["metadata"].get("creationTimestamp"))]),
    "Event": ([("Last Seen", "string", 0, ""), ("Type", "string", 0, ""), ("Reason", "string", 0, ""),
               ("Object", "string", 0, ""), ("Message", "string", 0, "")], _event_row),
    "Lease": ([("Name", "string", 0, "name"), ("Holder", "string", 0, ""), ("Age", "string", 0, "")],
              lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("holderIdentity", ""),
                         age(o["metadata"].get("creationTimestamp"))]),
    "CustomResourceDefinition": ([("Name", "string", 0, "name"), ("Created At", "date", 0, "")],
                                 lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")]),
    "ConfigMap": ([("Name", "string", 0, "name"), ("Data", "string", 0, ""), ("Age", "string", 0, "")],
                  lambda o: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                             age(o["metadata"].get("creationTimestamp"))]),
    "Secret": ([("Name", "string", 0, "name"), ("Type", "string", 0, ""), ("Data", "string", 0, ""),
                ("Age", "string", 0, "")],
               lambda o: [o["metadata"]["name"], o.get("type", ""), len(o.get("data") or {}),
                          age(o["metadata"].get("creationTimestamp"))]),
    "ServiceAccount": ([("Name", "string", 0, "name"), ("Secrets", "string", 0, ""), ("Age", "string", 0, "")],
                       lambda o: [o["metadata"]["name"], len(o.get("secrets") or []),
                                  age(o["metadata"].get("creationTimestamp"))]),
    "PriorityClass": ([("Name", "string", 0, "name"), ("Value", "integer", 0, ""), ("Global-Default", "boolean", 0, ""),
                       ("Age", "string", 0, ""), ("PreemptionPolicy", "string", 0, "")],
                      lambda o: [o["metadata"]["name"], o.get("value", 0), bool(o.get("globalDefault", False)),
                                 age(o["metadata"].get("creationTimestamp")), o.get("preemptionPolicy", "")]),
}


# --- JSONPath subset used by additionalPrinterColumns ----------------------------------------------

SEGMENT = re.compile(r"\.([A-Za-z0-9_\-$]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*['\"]([^'\"]*)['\"]\)\]|"
                     r"\[['\"]([^'\"]+)['\"]\]")


def json_path(obj: Any, path: str) -> list[Any]:
    """Evaluate `.a.b`, `.a[0]`, `.a[*].b`, `.a[?(@.type=="Ready")].status`, `.a['x.y']`."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if not path.startswith(".") and not path.startswith("["):
        path = "." + path
    current = [obj]
    pos = 0
    while pos < len(path):
        m = SEGMENT.match(path, pos)
        if not m:
            return []
        pos = m.end()
        nxt: list[Any] = []
        for cur in current:
            if m.group(1) is not None or m.group(5) is not None:
                key = m.group(1) if m.group(1) is not None else m.group(5)
                if isinstance(cur, dict) and key in cur:
                    nxt.append(cur[key])
            elif m.group(2) is not None:
                if isinstance(cur, list):
                    if m.group(2) == "*":
                        nxt.extend(cur)
                    elif int(m.group(2)) < len(cur):
                        nxt.append(cur[int(m.group(2))])
            else:
                if isinstance(cur, list):
                    nxt.extend(x for x in cur if isinstance(x, dict)
                               and str(lookup(x, m.group(3))) == m.group(4))
        current = nxt
    return current


def _cell(values: list[Any], typ: str) -> Any:
    if not values:
        return None
    if typ == "date" and len(values) == 1 and isinstance(values[0], str):
        return age(values[0])  # apiextensions tableconvertor: ConvertToHumanReadableDateType
    if len(values) == 1:
        v = values[0]
        if typ in ("integer", "number", "boolean") and isinstance(v, (int, float, bool)):
            return v
        if isinstance(v, (dict, list)):
            import json
            return json.dumps(v, separators=(",", ":"))
        return v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
    return ",".join(str(v) for v in values)


def columns_for(rt: ResourceType) -> tuple[list[dict[str, Any]], Callable[[dict[str, Any]], list[Any]]]:
    if rt.crd is not None:
        printer = crd_version(rt.crd, rt.version).get("additionalPrinterColumns") or []
        defs = [{"name": "Name", "type": "string", "format": "name",
                 "description": "Name must be unique within a namespace.", "priority": 0}]
        if not printer:
            defs.append({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0})

            def row(o: dict[str, Any]) -> list[Any]:
                return [o["metadata"]["name"], age(o["metadata"].get("creationTimestamp"))]
            return defs, row
        for col in printer:
            defs.append({"name": col.get("name", ""), "type": col.get("type", "string"),
                         "format": col.get("format", ""), "description": col.get("description", ""),
                         "priority": int(col.get("priority", 0))})

        def crow(o: dict[str, Any]) -> list[Any]:
            return [o["metadata"]["name"]] + [_cell(json_path(o, c.get("jsonPath", "")), c.get("type", "string"))
                                              for c in printer]
        return defs, crow
    if rt.kind in BUILTIN:
        cols, fn = BUILTIN[rt.kind]
        return [{"name": n, "type": t, "format": "name" if d == "name" else "", "description": d, "priority": p}
                for n, t, p, d in cols], fn
    defs = [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0},
            {"name": "Created At", "type": "date", "format": "", "description": "", "priority": 0}]
    return defs, lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")]


def partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(rt: ResourceType, objs: list[dict[str, Any]], rv: str | None, include: str = "Metadata",
          with_columns: bool = True, list_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    defs, row = columns_for(rt)
    meta = dict(list_meta or {})
    if rv is not None:
        meta["resourceVersion"] = rv
    rows = []
    for o in objs:
        r: dict[str, Any] = {"cells": row(o)}
        if include == "Object":
            r["object"] = o
        elif include != "None":
            r["object"] = partial(o)
        rows.append(r)
    out: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
    out["columnDefinitions"] = defs if with_columns else []
    out["rows"] = rows
    return out
