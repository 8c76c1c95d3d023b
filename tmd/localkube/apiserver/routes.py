"""HTTP edge: path routing, body decoding, content negotiation and the watch stream (aiohttp).

Handlers stay thin: they translate requests into `Registry` calls and objects into responses.
"""

from __future__ import annotations

import asyncio
import collections
import base64
import json
import logging
import pathlib
from typing import Any, Callable, Mapping

import yaml
from aiohttp import web

from . import discovery, errors as E, protobuf, tables
from .errors import StatusError
from .kinds import ResourceType
from .patching import (APPLY_PATCH, JSON_PATCH, STRATEGIC_PATCH, check_patch_type, json_patch, merge_patch,
                       strategic_merge)
from .registry import Registry
from .selector import label_matcher, parse_field_selector
from .store import StorageFailure
from .logs import serve_log
from .watch import serve_watch, wants_table

log = logging.getLogger("tmd.localkube.apiserver")

JSON = "application/json"
DUP_WARNINGS = web.RequestKey("dup_warnings", list)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def respond(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(obj), status=status, content_type=JSON)


def error_response(err: StatusError) -> web.Response:
    resp = web.Response(body=dumps(err.status()), status=err.code, content_type=JSON)
    for k, v in err.headers.items():
        resp.headers[k] = v
    return resp


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def decode_body(raw: bytes, content_type: str, what: str = "object") -> tuple[Any, list[str]]:
    """JSON (default when no Content-Type is sent, like negotiate.go) or YAML; returns (body, duplicates)."""
    duplicates: list[str] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                duplicates.append(k)
            out[k] = v
        return out
    if not raw.strip():
        raise E.bad_request("Object 'Kind' is missing in ''" if what == "object" else "empty patch")
    if content_type in ("application/yaml", APPLY_PATCH):
        try:
            return yaml.safe_load(raw), duplicates
        except yaml.YAMLError as e:
            raise E.bad_request(f"error converting YAML to JSON: {str(e).splitlines()[0]}")
    try:
        return json.loads(raw, object_pairs_hook=hook), duplicates
    except (ValueError, UnicodeDecodeError) as e:
        prefix = "couldn't get version/kind; json parse error: " if what == "object" else "error decoding patch: "
        raise E.bad_request(prefix + str(e))


def wants_partial(accept: str) -> bool:
    first = accept.split(",")[0]
    return "as=PartialObjectMetadata" in first and "g=meta.k8s.io" in first


def request_metrics(requests: Mapping[tuple[str, str, str], int]) -> str:
    """Prometheus text of the request counts (kube-apiserver's metric name; `client` is the
    User-Agent's product, e.g. kopf, OpenAPI-Generator for the python client, kubectl)."""
    lines = ["# HELP apiserver_request_total Resource requests by verb, resource and client.",
             "# TYPE apiserver_request_total counter"]
    for (verb, resource, agent), n in sorted(requests.items()):
        client = agent.replace("\\", "").replace('"', "")
        lines.append(f'apiserver_request_total{{verb="{verb}",resource="{resource}",client="{client}"}} {n}')
    return "\n".join(lines) + "\n"


class Handlers:
    """Routes every request (one catch-all route) to discovery, OpenAPI or resource handlers."""

    def __init__(self, registry: Registry, version: dict[str, str], data_dir: pathlib.Path,
                 bookmark_interval: float) -> None:
        self.registry = registry
        self.version = version
        self.data_dir = data_dir
        self.bookmark_interval = bookmark_interval
        self.streams: set[asyncio.Task[Any]] = set()
        # Resource requests by (verb, resource[/subresource], client): served at /metrics in the
        # format of kube-apiserver's apiserver_request_total, so scale tests can count a client's calls.
        self.requests: collections.Counter[tuple[str, str, str]] = collections.Counter()

    @property
    def types(self) -> list[ResourceType]:
        return list(self.registry.types.values())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            resp = await self._route(request)
        except StatusError as err:
            resp = error_response(err)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:  # never a stack trace to the client
            log.exception("internal error on %s %s", request.method, request.path)
            resp = error_response(E.internal(str(e)))
        if not resp.prepared:  # answer only what is on disk (streams wait before their first byte)
            try:
                await self.registry.store.durable()
            except StorageFailure as e:
                return error_response(E.internal(f"storage failure: {e}"))
        return resp

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if path == "/":
            return respond(discovery.root_paths(self.types))
        if path == "/version":
            return respond(self.version)
        if parts and parts[0] in ("healthz", "livez", "readyz"):
            return web.Response(text="ok", content_type="text/plain")
        if parts == ["metrics"]:
            return web.Response(text=request_metrics(self.requests), content_type="text/plain")
        if parts[:2] == ["openapi", "v3"]:
            return self._openapi(parts[2:])
        if parts[:1] == ["openapi"]:
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        if parts == ["api"]:
            return respond(discovery.api_versions())
        if parts == ["apis"]:
            return respond(discovery.api_group_list(self.types))
        if parts[:1] == ["apis"] and len(parts) == 2:
            g = discovery.api_group(parts[1], self.types)
            if g is None:
                raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
            return respond({"kind": "APIGroup", "apiVersion": "v1", **g})
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        if not rest:
            doc = discovery.resource_list(group, version, self.types)
            if doc is None:
                raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
            return respond(doc)
        return await self._resource(request, group, version, rest)

    def _openapi(self, rest: list[str]) -> web.Response:
        if not rest:
            return respond(discovery.openapi_index(self.types, self.version["gitVersion"]))
        if rest[0] == "api" and len(rest) == 2:
            doc = discovery.openapi_doc("", rest[1], self.types, self.version["gitVersion"])
        elif rest[0] == "apis" and len(rest) == 3:
            doc = discovery.openapi_doc(rest[1], rest[2], self.types, self.version["gitVersion"])
        else:
            doc = None
        if doc is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        return respond(doc)

    # --- resources ---------------------------------------------------------------------------

    async def _resource(self, request: web.Request, group: str, version: str, rest: list[str]
                        ) -> web.StreamResponse:
        ns: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (group == "" and rest[2] in ("status", "finalize")):
            ns, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if len(rest) > 3:
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        rt = self.registry.resolve(group, version, plural)
        if ns is not None and not rt.namespaced:
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        if sub and sub not in rt.subresources:
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        if rt.namespaced and name is not None and ns is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        q = request.query
        method = request.method
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise E.method_not_allowed()
        if rt.kind == "Binding":  # create-only: binds the pod named like the Binding
            if name is not None or method != "POST":
                raise E.method_not_allowed()
            body = await self._body(request, "object")
            pod_name = (body.get("metadata") or {}).get("name", "") if isinstance(body, dict) else ""
            self.registry.bind(self.registry.resolve("", "v1", "pods"), ns or "", pod_name, body)
            return respond({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                            "code": 201}, 201)
        verb = {"GET": "get" if name else ("watch" if _flag(q.get("watch")) else "list"), "POST": "create",
                "PUT": "update", "PATCH": "patch", "DELETE": "delete" if name else "deletecollection"}[method]
        self.requests[(verb.upper(), f"{plural}/{sub}" if sub else plural,
                       request.headers.get("User-Agent", "").split("/", 1)[0] or "unknown")] += 1
        if not sub and verb not in rt.verbs:
            raise E.method_not_allowed()
        if name is None:
            if method == "GET":
                if _flag(q.get("watch")):
                    return await self.watch(request, rt, ns)
                return self.list(request, rt, ns)
            if method == "POST":
                if rt.namespaced and ns is None:
                    raise E.method_not_allowed()
                body = await self._body(request, "object")
                return self._write_result(request, self.registry.create(
                    rt, ns or "", body, self._validation(request), _dry(request)), rt, created=True)
            if method == "DELETE":
                return self.delete_collection(request, rt, ns)
            raise E.method_not_allowed()
        ns = ns or ""
        if sub == "log":
            return await self.pod_log(request, rt, ns, name)
        if sub == "binding":
            if method != "POST":
                raise E.method_not_allowed()
            body = await self._body(request, "object")
            self.registry.bind(rt, ns, name, body)
            return respond({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                            "code": 201}, 201)
        if sub == "scale":
            return await self._scale(request, rt, ns, name)
        if method == "GET":
            obj = self.registry.get(rt, ns, name)
            return self._object(request, rt, obj)
        if method == "PUT":
            body = await self._body(request, "object")
            return self._write_result(request, self.registry.update(
                rt, ns, name, body, sub, self._validation(request), _dry(request)), rt)
        if method == "PATCH":
            ctype = request.content_type if request.headers.get("Content-Type") else ""
            raw = await request.read()
            check_patch_type(ctype, rt.builtin)
            patch, dups = decode_body(raw, ctype, "patch")
            if dups and self._validation(request) == "Strict" and ctype != JSON_PATCH:
                raise E.bad_request("strict decoding error: " + ", ".join(f'duplicate field "{d}"' for d in dups))
            return self._write_result(request, self.registry.patch(
                rt, ns, name, ctype, patch, sub, self._validation(request), _dry(request),
                q.get("fieldManager"), _flag(q.get("force"))), rt)
        if method == "DELETE":
            if sub:
                raise E.method_not_allowed()
            options = await self._delete_options(request)
            out = self.registry.delete(rt, ns, name, options, _dry(request))
            obj = out.obj
            still_there = self.registry.store.get(rt.key, ns if rt.namespaced else "", name) is not None
            if still_there or rt.kind in ("Pod", "Namespace") or rt.crd is not None:
                return self._object(request, rt, obj)
            return respond({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                            "details": {"name": name, **({"group": rt.group} if rt.group else {}),
                                        "kind": rt.plural, "uid": obj["metadata"].get("uid", "")}})
        raise E.method_not_allowed()

    async def _scale(self, request: web.Request, rt: ResourceType, ns: str, name: str) -> web.Response:
        if request.method == "GET":
            return respond(self.registry.get_scale(rt, ns, name))
        if request.method == "PUT":
            body = await self._body(request, "object")
        elif request.method == "PATCH":
            ctype = request.content_type if request.headers.get("Content-Type") else ""
            check_patch_type(ctype, True)
            patch, _ = decode_body(await request.read(), ctype, "patch")
            current = self.registry.get_scale(rt, ns, name)
            if ctype == JSON_PATCH:
                body = json_patch(current, patch)
            elif ctype == STRATEGIC_PATCH:
                body = strategic_merge(current, patch)
            else:
                body = merge_patch(current, patch)
        else:
            raise E.method_not_allowed()
        return respond(self.registry.update_scale(rt, ns, name, body).obj)

    async def _body(self, request: web.Request, what: str) -> Any:
        ctype = request.content_type if request.headers.get("Content-Type") else JSON
        raw = await request.read()
        if ctype == protobuf.PROTOBUF:
            return protobuf.decode(raw)
        if "protobuf" in ctype or "cbor" in ctype:
            raise E.unsupported_media_type([JSON, "application/yaml", protobuf.PROTOBUF])
        body, dups = decode_body(raw, ctype, what)
        if dups:
            mode = self._validation(request)
            if mode == "Strict":
                raise E.bad_request("strict decoding error: " + ", ".join(f'duplicate field "{d}"' for d in dups))
            request[DUP_WARNINGS] = [f'duplicate field "{d}"' for d in dups] if mode == "Warn" else []
        return body

    def _validation(self, request: web.Request) -> str:
        mode = request.query.get("fieldValidation", "Warn") or "Warn"
        if mode not in ("Strict", "Warn", "Ignore"):
            raise E.bad_request(f"fieldValidation parameter unsupported: {mode}, "
                                "valid values are: Ignore, Warn, Strict")
        return mode

    def _write_result(self, request: web.Request, outcome: Any, rt: ResourceType, created: bool = False
                      ) -> web.Response:
        warnings = list(request.get(DUP_WARNINGS, [])) + outcome.warnings
        status = 201 if created or outcome.created else 200
        resp = self._object(request, rt, outcome.obj, status)
        for w in warnings:
            resp.headers.add("Warning", "299 - " + json.dumps(w))
        return resp

    def _object(self, request: web.Request, rt: ResourceType, obj: dict[str, Any], status: int = 200
                ) -> web.Response:
        obj = self.registry.render(rt, obj)
        accept = request.headers.get("Accept", "")
        if wants_table(accept):
            return respond(tables.table(rt, [obj], None, request.query.get("includeObject", "Metadata")), status)
        if wants_partial(accept):
            return respond(tables.partial(obj), status)
        return respond(obj, status)

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        raw = await request.read()
        if raw.strip():
            body, _ = decode_body(raw, JSON, "object")
            if not isinstance(body, dict):
                raise E.bad_request("DeleteOptions must be an object")
            options.update(body)
        q = request.query
        if "gracePeriodSeconds" in q:
            try:
                options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError:
                raise E.bad_request(f"invalid gracePeriodSeconds: {q['gracePeriodSeconds']}")
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q:
            options["orphanDependents"] = _flag(q["orphanDependents"])
        return options

    # --- list --------------------------------------------------------------------------------

    def _filters(self, request: web.Request, rt: ResourceType) -> Callable[[dict[str, Any]], bool]:
        q = request.query
        label = label_matcher(q.get("labelSelector"))
        fields = parse_field_selector(q.get("fieldSelector", ""))
        for f, _, _ in fields:
            if not rt.supports_field(f):
                if rt.crd is not None:
                    raise E.bad_request(f'"{f}" is not a known field selector: only "metadata.name", '
                                        f'"metadata.namespace"')
                raise E.bad_request(f'field label not supported: {f}')

        def match(obj: dict[str, Any]) -> bool:
            if label is not None and not label(obj):
                return False
            for f, op, value in fields:
                have = rt.field_value(obj, f)
                if (have == value) != (op == "="):
                    return False
            return True
        return match

    def list(self, request: web.Request, rt: ResourceType, ns: str | None) -> web.Response:
        match = self._filters(request, rt)
        store = self.registry.store
        q = request.query
        rv = store.revision
        items = [self.registry.render(rt, o) for o in store.list(rt.key, ns if rt.namespaced else None) if match(o)]
        list_meta: dict[str, Any] = {"resourceVersion": str(rv)}
        limit = int(q.get("limit") or 0) if (q.get("limit") or "0").isdigit() else 0
        cont = q.get("continue")
        if cont:
            try:
                token = json.loads(base64.urlsafe_b64decode(cont.encode()))
                start = tuple(token["start"])
                list_meta["resourceVersion"] = str(token["rv"])
            except (ValueError, KeyError, TypeError):
                raise E.bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                                    "(version meta.k8s.io/v1)")
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            token = {"rv": int(list_meta["resourceVersion"]), "start": [last.get("namespace", ""), last["name"]]}
            list_meta["continue"] = base64.urlsafe_b64encode(dumps(token)).decode()
            list_meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        accept = request.headers.get("Accept", "")
        if wants_table(accept):
            return respond(tables.table(rt, items, None, q.get("includeObject", "Metadata"), list_meta=list_meta))
        if wants_partial(accept):
            return respond({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                            "metadata": list_meta, "items": [tables.partial(o) for o in items]})
        return respond({"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": list_meta,
                        "items": items})

    def delete_collection(self, request: web.Request, rt: ResourceType, ns: str | None) -> web.Response:
        match = self._filters(request, rt)
        items = [o for o in self.registry.store.list(rt.key, ns if rt.namespaced else None) if match(o)]
        deleted = []
        for o in items:
            try:
                out = self.registry.delete(rt, o["metadata"].get("namespace", ""), o["metadata"]["name"],
                                           {}, _dry(request))
                deleted.append(self.registry.render(rt, out.obj))
            except StatusError as err:
                if err.code != 404:
                    raise
        return respond({"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                        "metadata": {"resourceVersion": str(self.registry.store.revision)}, "items": deleted})

    # --- watch and logs ----------------------------------------------------------------------

    async def watch(self, request: web.Request, rt: ResourceType, ns: str | None) -> web.StreamResponse:
        return await serve_watch(request, self.registry, rt, ns, self._filters(request, rt),
                                 self.bookmark_interval, self.streams)

    async def pod_log(self, request: web.Request, rt: ResourceType, ns: str, name: str) -> web.StreamResponse:
        return await serve_log(request, self.registry, self.data_dir, rt, ns, name)


def _dry(request: web.Request) -> bool:
    return request.query.get("dryRun") == "All"

