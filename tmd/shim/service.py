"""What each Elasticsearch call does against Kubernetes, the model store and the workers.

State lives only in the resources and the store, so every method re-reads what it needs: the
shim can be killed between any two lines and a retried call continues from what is there.
Kubernetes calls are synchronous (the official client); they run in threads.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import aiohttp
import httpx

from tmd.api.deployment import MAX_DEPLOYMENTS, TmdBatching, parse_start_request, parse_update_request
from tmd.api.errors import (ElasticsearchError, IllegalArgument, ParseError, ResourceAlreadyExists, ResourceNotFound,
                            StatusException, ValidationFailed)
from tmd.api.resources import LABEL_DEPLOYMENT, LABEL_ML_NODE, LABEL_NODE
from tmd.api.trained_model import parse_trained_model_config
from tmd.api.units import TimeValue, parse_time_value
from tmd.shim import views
from tmd.shim.kube import Conflict, ShimKube
from tmd.shim.latency import LatencyWindow
from tmd.shim.metrics import RETRIES
from tmd.shim.routing import Target, fallback, reachable, split_docs, started_targets
from tmd.store.directory import DEFINITION_FILE, VOCABULARY_FILE, DirectoryStore, part_validation_errors, uri_for

log = logging.getLogger("tmd.shim")
T = TypeVar("T")
Object = dict[str, Any]

INFER_TIMEOUT = TimeValue(10.0, "10s")
ROUTE_CACHE_SECONDS = 1.0
ROUTE_STALE_SECONDS = 10.0
WORKER_GRACE_SECONDS = 5.0
# How long a worker that could not be reached is left out of routing. Long enough to cover the
# operator marking its route failed and the route cache catching up (together about a second),
# short enough that a worker restarted in place (which takes seconds to load its model before
# its route is started again) gets traffic as soon as its route says it can.
UNREACHABLE_HOLD_SECONDS = 2.0
# Connecting to a worker takes milliseconds; on a real network a dead pod's IP may drop packets
# instead of refusing, so a connection not made within this is a worker gone, tried elsewhere.
CONNECT_TIMEOUT_SECONDS = 1.0
POLL_SECONDS = 0.2


@dataclass
class ShimSettings:
    namespace: str = "default"
    store_root: str = "./tmd-store"
    store_uri_base: str | None = None  # None: file:// URIs (workers share the filesystem)
    version: str = "9.1.0"
    cluster_name: str = "tmd"
    worker_port: int = 8080
    fail_start_without_capacity: bool = True  # §2.3 step 12 as self-managed Elasticsearch (no autoscaling)
    # Which nodes are ML nodes, as the operator's TMD_ML_NODE_SELECTOR says (`_ml/info`, `_ml/memory/_stats`)
    ml_node_selector: dict[str, str] = field(default_factory=lambda: {LABEL_ML_NODE: "true"})


class Shim:
    def __init__(self, settings: ShimSettings, kube: ShimKube, store: DirectoryStore) -> None:
        self.settings = settings
        self.kube = kube
        self.store = store
        self.http = httpx.AsyncClient(timeout=None)  # control calls (stats, cache clear)
        self._session: aiohttp.ClientSession | None = None  # the inference hop: aiohttp costs less CPU per call
        self.outstanding: dict[str, int] = {}
        self._routes: dict[str, tuple[float, Object, list[Target]]] = {}
        self._refreshing: dict[str, asyncio.Future[Any]] = {}
        self._resolved: dict[str, tuple[float, str]] = {}  # id or alias → deployment id, like _routes
        self._unreachable: dict[str, float] = {}  # worker address → when a connection to it last failed
        self.latency = LatencyWindow()  # answered _infer requests per deployment, for the console's p50/p99

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # created inside the running loop
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                                  timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    async def close(self) -> None:
        await self.http.aclose()
        if self._session is not None:
            await self._session.close()

    @staticmethod
    async def _k(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    # ------------------------------------------------------------------ models

    async def resolve_alias(self, model_id: str) -> str:
        for model in await self._k(self.kube.list_models):
            if model_id in views.model_aliases(model):
                return model["spec"]["model_id"]
        return model_id

    async def require_model(self, model_id: str) -> Object:
        model = await self._k(self.kube.get_model, model_id)
        if model is None:
            raise ResourceNotFound(f"Could not find trained model [{model_id}]")
        return model

    async def put_model(self, model_id: str, body: Any) -> Object:
        if not isinstance(body, dict):
            raise ParseError("request body is required")
        if "model_id" in body and body["model_id"] != model_id:
            raise IllegalArgument(f"Inconsistent model_id; '{body['model_id']}' specified in the body differs from "
                                  f"'{model_id}' specified as a URL argument")
        config = parse_trained_model_config(body, model_id=model_id, for_creation=True)
        if body.get("definition") is not None or body.get("compressed_definition") is not None:
            raise IllegalArgument("tmd stores pytorch definitions in parts; use the put trained model definition "
                                  "part API")
        deployments = await self._k(self.kube.list_deployments)
        if any(d["spec"].get("deployment_id") == model_id for d in deployments):
            raise ElasticsearchError(f"Cannot create model [{model_id}] the id is the same as an current model "
                                     "deployment", status=400, type="illegal_argument_exception")
        spec = {k: v for k, v in config.model_dump(mode="json", exclude_none=True).items() if k in views.CONFIG_KEYS}
        if config.prefix_strings is not None:
            spec["prefix_strings"] = config.prefix_strings.model_dump(exclude_none=True)
        if await self._k(self.kube.get_model, model_id) is not None:
            raise ResourceAlreadyExists(f"Trained machine learning model [{model_id}] already exists")
        # Files left by a model of the same id whose deletion was cut short must not become this
        # model's definition: clear them before the resource exists.
        await self._k(self.store.delete, model_id)
        try:
            created = await self._k(self.kube.create_model, spec)
        except Conflict:
            raise ResourceAlreadyExists(f"Trained machine learning model [{model_id}] already exists") from None
        return views.model_config_body(created, self.settings.version)

    async def get_models(self, pattern: str | None, *, allow_no_match: bool, include: set[str], from_: int,
                         size: int, tags: list[str]) -> Object:
        if "definition" in include and pattern:
            for model_id in pattern.split(","):
                model = await self._k(self.kube.get_model, await self.resolve_alias(model_id))
                if model is not None:
                    raise IllegalArgument(f"[{model['spec']['model_id']}] is type [pytorch] and does not support "
                                          "retrieving the definition")
        models = await self.match_models(pattern, allow_no_match=allow_no_match)
        if tags:
            models = [m for m in models if set(tags) <= set(m["spec"].get("tags") or [])]
        page = models[from_:from_ + size]
        return {"count": len(models), "trained_model_configs": [
            views.model_config_body(m, self.settings.version, include_definition_status="definition_status" in include)
            for m in page]}

    async def match_models(self, pattern: str | None, *, allow_no_match: bool) -> list[Object]:
        """Models named by a comma list of ids, aliases and wildcards (`_all`, `*`), sorted by id."""
        models = sorted(await self._k(self.kube.list_models), key=lambda m: m["spec"]["model_id"])
        if not pattern or pattern in ("_all", "*"):
            return models
        selected: dict[str, Object] = {}
        missing: list[str] = []
        for expr in pattern.split(","):
            hits = [m for m in models if fnmatch.fnmatchcase(m["spec"]["model_id"], expr)
                    or expr in views.model_aliases(m)]
            if not hits and ("*" not in expr or not allow_no_match):
                missing.append(expr)
            for m in hits:
                selected[m["spec"]["model_id"]] = m
        if missing:
            raise ResourceNotFound(f"Could not find trained model [{','.join(missing)}]" if len(missing) == 1
                                   else f"No known trained model with model_id [{','.join(missing)}]")
        return [selected[k] for k in sorted(selected)]

    async def delete_model(self, model_id: str, force: bool) -> Object:
        model = await self.require_model(model_id)
        deployments = [d for d in await self._k(self.kube.list_deployments) if d["spec"].get("model_id") == model_id]
        if deployments and not force:
            raise StatusException(f"Cannot delete model [{model_id}] as it is currently deployed; use force to "
                                  "delete the model", 409)
        for dep in deployments:
            await self._k(self.kube.delete_deployment, dep["spec"]["deployment_id"])
        # The resource goes first: once it is gone nobody can start the model, then its files go.
        await self._k(self.kube.delete_model, model["spec"]["model_id"])
        await self._k(self.store.delete, model_id)
        return {"acknowledged": True}

    # ------------------------------------------------------------------ definition and vocabulary

    async def put_definition_part(self, model_id: str, part_text: str, body: Any) -> Object:
        try:
            part = int(part_text)
        except ValueError:
            raise IllegalArgument(f"Failed to parse int parameter [part] with value [{part_text}]") from None
        _check_body(body, "put_trained_model_definition_part_action",
                    ("definition", "total_definition_length", "total_parts"))
        for name in ("definition", "total_definition_length", "total_parts"):
            if body.get(name) is None:
                raise IllegalArgument(f"[{name}] must not be null.")
        try:
            data = base64.b64decode(body["definition"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise ParseError("[put_trained_model_definition_part_action] failed to parse field [definition]",
                             type="x_content_parse_exception") from None
        errors = part_validation_errors(part, body["total_definition_length"], body["total_parts"])
        if errors:
            raise ValidationFailed(errors)
        model = await self.require_model(model_id)
        if views.fully_defined(model):
            raise StatusException(f"Trained model definition [{model_id}] already exists; delete the model to "
                                  "upload a new definition", 409)
        assembled = await self._k(self.store.put_part, model_id, part, data, body["total_definition_length"],
                                  body["total_parts"])
        if assembled is not None:
            await self.publish_definition(model_id)
        return {"acknowledged": True}

    async def publish_definition(self, model_id: str) -> None:
        """Point the TrainedModel at the assembled definition: this is what makes it fully defined."""
        done = self.store.definition(model_id)
        if done is None:
            return
        definition = {"uri": uri_for(self.settings.store_uri_base, self.store, model_id, DEFINITION_FILE),
                      "sha256": done.sha256, "total_definition_length": done.length}
        await self._k(self.kube.patch_model_spec, model_id, {"definition": definition})
        log.info("model definition published model_id=%s bytes=%d", model_id, done.length)

    async def put_vocabulary(self, model_id: str, body: Any) -> Object:
        _check_body(body, "put_trained_model_vocabulary_action", ("vocabulary", "merges", "scores"))
        vocab = body.get("vocabulary")
        if not isinstance(vocab, list) or not vocab:
            raise ValidationFailed(["[vocabulary] must not be empty"])
        await self.require_model(model_id)
        stored = await self._k(self.store.put_vocabulary, model_id,
                               {k: body[k] for k in ("vocabulary", "merges", "scores") if body.get(k)})
        location = {"uri": uri_for(self.settings.store_uri_base, self.store, model_id, VOCABULARY_FILE),
                    "sha256": stored.sha256}
        await self._k(self.kube.patch_model_spec, model_id, {"vocabulary": location})
        return {"acknowledged": True}

    async def recover(self) -> None:
        """After a restart: publish definitions assembled just before a crash but not yet patched in."""
        for model in await self._k(self.kube.list_models):
            model_id = model["spec"]["model_id"]
            if not views.fully_defined(model) and await self._k(self.store.assemble, model_id) is not None:
                await self.publish_definition(model_id)

    # ------------------------------------------------------------------ aliases

    async def put_alias(self, model_id: str, alias: str, reassign: bool) -> Object:
        if alias == model_id:
            raise ValidationFailed(["model_alias [" + alias + "] cannot equal model_id [" + model_id + "]"])
        models = await self._k(self.kube.list_models)
        target = next((m for m in models if m["spec"]["model_id"] == model_id), None)
        if target is None:
            raise ResourceNotFound(f"Could not find trained model [{model_id}]")
        if any(m["spec"]["model_id"] == alias for m in models):
            raise IllegalArgument(f"model_alias [{alias}] cannot equal an existing model_id")
        old = next((m for m in models if alias in views.model_aliases(m)), None)
        if old is not None and old["spec"]["model_id"] != model_id:
            if not reassign:
                raise IllegalArgument(f"cannot assign model_alias [{alias}] to model_id [{model_id}] as model_alias "
                                      f"already refers to [{old['spec']['model_id']}]. Set parameter [reassign] to "
                                      "[true] if model_alias should be reassigned.")
            deployments = await self._k(self.kube.list_deployments)
            deployed = {d["spec"]["model_id"] for d in deployments}
            if old["spec"]["model_id"] in deployed and model_id not in deployed:
                raise IllegalArgument(f"cannot reassign model_alias [{alias}] to model [{model_id}] from model "
                                      f"[{old['spec']['model_id']}] as it is not yet deployed")
        self._resolved.clear()
        # Add first, then remove: a crash in between leaves the alias on both models, never on none;
        # resolution then prefers the newer owner (the one listed with the alias last written).
        await self._set_aliases(target, [*views.model_aliases(target), alias])
        if old is not None and old["spec"]["model_id"] != model_id:
            await self._set_aliases(old, [a for a in views.model_aliases(old) if a != alias])
        return {"acknowledged": True}

    async def delete_alias(self, model_id: str, alias: str) -> Object:
        model = await self.require_model(model_id)
        if alias not in views.model_aliases(model):
            raise ResourceNotFound(f"model_alias [{alias}] could not be found")
        await self._set_aliases(model, [a for a in views.model_aliases(model) if a != alias])
        return {"acknowledged": True}

    async def _set_aliases(self, model: Object, aliases: list[str]) -> None:
        metadata = dict(model["spec"].get("metadata") or {})
        metadata["model_aliases"] = sorted(set(aliases))
        if not metadata["model_aliases"]:
            metadata.pop("model_aliases")
        await self._k(self.kube.patch_model_spec, model["spec"]["model_id"], {"metadata": metadata or None})

    # ------------------------------------------------------------------ start / stop / update

    async def start(self, model_id: str, body: Any, query: dict[str, str]) -> Object:
        if body is not None and not isinstance(body, dict):
            raise ParseError("request body must be an object")
        request = parse_start_request(model_id, body, query)
        spec = request.spec
        deployment_id = spec.deployment_id or model_id
        deployments = await self._k(self.kube.list_deployments)
        if len(deployments) >= MAX_DEPLOYMENTS:
            raise StatusException(f"Could not start model deployment because existing deployments reached the limit "
                                  f"of [{MAX_DEPLOYMENTS}]", 429)
        if any(d["spec"].get("deployment_id") == deployment_id for d in deployments):
            raise IllegalArgument(f"Could not start model deployment because an existing deployment with the same "
                                  f"id [{deployment_id}] exist")
        model = await self.require_model(model_id)
        if deployment_id != model_id and await self._k(self.kube.get_model, deployment_id) is not None:
            raise IllegalArgument(f"Deployment id [{deployment_id}] is the same as an another model which is not the "
                                  "model being deployed. Deployment id can be the same as the model being deployed "
                                  "but cannot match a different model")
        if not views.fully_defined(model):
            await self._k(self.store.check_parts, model_id)  # raises the §2.3 step 10 errors
            # All parts are there but the shim died before publishing: publish now.
            await self._k(self.store.assemble, model_id)
            await self.publish_definition(model_id)
        try:
            await self._k(self.kube.create_deployment, spec.model_dump(mode="json", exclude_none=True))
        except Conflict:
            raise StatusException(f"Cannot start deployment [{deployment_id}] because it has already been started",
                                  409) from None
        log.info("deployment created deployment_id=%s model_id=%s", deployment_id, model_id)
        deployment = await self.wait_for_start(deployment_id, request.wait_for.rank, request.timeout)
        return {"assignment": views.assignment_body(deployment, await self._k(self.kube.get_model, model_id))}

    async def wait_for_start(self, deployment_id: str, wait_rank: int, timeout: TimeValue) -> Object:
        """DeploymentStartedPredicate (es-api §2.4) over the resource status the operator writes."""
        deadline = time.monotonic() + (timeout.seconds if timeout.seconds is not None else 30.0)
        while True:
            deployment = await self._k(self.kube.get_deployment, deployment_id)
            if deployment is None:
                raise IllegalArgument("Error waiting for the model deployment to start. The trained model assignment "
                                      "was removed while waiting")
            if views.deployment_observed(deployment):
                failed = views.failed_routes(deployment)
                if failed:
                    await self._k(self.kube.delete_deployment, deployment_id)
                    nodes = ", ".join(f"{n}={r}" for n, r in failed.items())
                    raise ElasticsearchError("Could not start trained model deployment, the following nodes failed "
                                             f"with errors [{{{nodes}}}]", status=500, type="status_exception")
                # The planner says why it placed fewer allocations than asked in `reason`; only
                # then is the start refused (a status without reason may still be catching up,
                # e.g. while an earlier deployment of the same name drains).
                if self.settings.fail_start_without_capacity and (deployment.get("status") or {}).get("reason"):
                    requested = deployment["spec"].get("number_of_allocations", 1)
                    if views.total_target_allocations(deployment) < requested:
                        await self._k(self.kube.delete_deployment, deployment_id)
                        raise self._capacity_error(deployment)
                status = (deployment.get("status") or {}).get("allocation_status") or {}
                state = status.get("state", "starting")
                rank = {"starting": 0, "started": 1, "fully_allocated": 2}.get(state, 0)
                if rank >= wait_rank:
                    return deployment
            if wait_rank == 0:
                return deployment
            if time.monotonic() >= deadline:
                raise StatusException(f"Timed out after [{timeout.text}] waiting for trained model deployment "
                                      f"[{deployment_id}] to start. Use the trained model stats API to track the "
                                      "state of the deployment and try again once it has started.", 408)
            await asyncio.sleep(POLL_SECONDS)

    @staticmethod
    def _capacity_error(deployment: Object) -> StatusException:
        if views.total_target_allocations(deployment) == 0:
            reason = (deployment.get("status") or {}).get("reason") or ""
            return StatusException("Could not start deployment because no ML nodes with sufficient capacity were "
                                   f"found; Could not start deployment because no suitable nodes were found, "
                                   f"allocation explanation [{reason}]", 429)
        return StatusException("Could not start deployment because there are not enough resources to provide all "
                               "requested allocations", 429)

    async def stop(self, deployment_id: str, allow_no_match: bool, force: bool) -> Object:
        deployments = await self._k(self.kube.list_deployments)
        if deployment_id in ("_all", "*"):
            matched = deployments
        else:
            matched = [d for d in deployments
                       if any(fnmatch.fnmatchcase(d["spec"].get("deployment_id", ""), e) for e in deployment_id.split(","))]
        if not matched:
            if not allow_no_match:
                raise ResourceNotFound(f"No known model deployment with id [{deployment_id}]")
            return {"stopped": True}
        for dep in matched:
            await self._k(self.kube.delete_deployment, dep["spec"]["deployment_id"])
            self._routes.pop(dep["spec"]["deployment_id"], None)
        self._resolved.clear()
        # Stop answers once the deployments and their worker processes are gone, as Elasticsearch
        # answers once the native processes stopped (bounded: 30 s; deletion goes on regardless).
        names = {d["metadata"]["name"] for d in matched}
        ids = {d["spec"]["deployment_id"] for d in matched}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            remaining = {d["spec"].get("deployment_id") for d in await self._k(self.kube.list_deployments)}
            pods = [p for p in await self._k(self.kube.list_worker_pods)
                    if p["metadata"].get("labels", {}).get(LABEL_DEPLOYMENT) in names]
            if not remaining & ids and not pods:
                break
            await asyncio.sleep(POLL_SECONDS)
        return {"stopped": True}

    async def update(self, deployment_id: str, body: Any, query: dict[str, str]) -> Object:
        request = parse_update_request(body, query)
        allocations, adaptive = request.number_of_allocations, request.adaptive_allocations
        deployment = await self._k(self.kube.get_deployment, deployment_id)
        if deployment is None:
            raise ResourceNotFound(f"No known model deployment with id [{deployment_id}]")
        model = await self._k(self.kube.get_model, deployment["spec"]["model_id"])
        changes: Object = {}
        if allocations is not None and allocations != deployment["spec"].get("number_of_allocations"):
            changes["number_of_allocations"] = allocations
        if request.adaptive_given and adaptive != deployment["spec"].get("adaptive_allocations"):
            changes["adaptive_allocations"] = adaptive
        current = TmdBatching.model_construct(**views.tmd_batching(deployment["spec"]))
        batching = request.batching(current)
        if batching is not None and batching != current:
            changes["tmd_batching"] = batching.to_es()
        if not changes:
            return {"assignment": views.assignment_body(deployment, model)}
        if (deployment.get("status") or {}).get("assignment_state") != "started":
            raise StatusException("cannot update deployment that is not in [started] state", 409)
        updated = await self._k(self.kube.patch_deployment_spec, deployment_id, changes)
        # Answer with the assignment the operator computed for the new spec (bounded wait).
        deadline = time.monotonic() + 10
        while not views.deployment_observed(updated) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            updated = await self._k(self.kube.get_deployment, deployment_id) or updated
        self._routes.pop(deployment_id, None)
        requested = changes.get("number_of_allocations")
        if (self.settings.fail_start_without_capacity and requested is not None and views.deployment_observed(updated)
                and (updated.get("status") or {}).get("reason")
                and views.total_target_allocations(updated) < requested):
            # Elasticsearch refuses an increase it cannot place (no autoscaling): put the old
            # values back (null removes a field that was absent), so the deployment keeps what it had.
            await self._k(self.kube.patch_deployment_spec, deployment_id,
                          {key: deployment["spec"].get(key, 1 if key == "number_of_allocations" else None)
                           for key in changes})
            raise StatusException("Could not update deployment because there are not enough resources to provide "
                                  "all requested allocations", 429)
        return {"assignment": views.assignment_body(updated, model)}

    # ------------------------------------------------------------------ inference

    async def _targets(self, deployment_id: str, fresh: bool = False) -> tuple[Object, list[Target]] | None:
        """The deployment and its routable workers. Inference must not cost Kubernetes reads per
        request: a view younger than a second is used as is; an older one (up to ten seconds) is
        used while one background refresh replaces it, so no request waits for the refresh."""
        cached = self._routes.get(deployment_id)
        if cached and not fresh:
            age = time.monotonic() - cached[0]
            if age < ROUTE_CACHE_SECONDS:
                return cached[1], cached[2]
            if age < ROUTE_STALE_SECONDS and cached[2]:
                if deployment_id not in self._refreshing:
                    self._refreshing[deployment_id] = asyncio.ensure_future(self._refresh_targets(deployment_id))
                return cached[1], cached[2]
        return await self._refresh_targets(deployment_id)

    async def _refresh_targets(self, deployment_id: str) -> tuple[Object, list[Target]] | None:
        try:
            deployment = await self._k(self.kube.get_deployment, deployment_id)
            if deployment is None:
                self._routes.pop(deployment_id, None)
                return None
            name = deployment["metadata"]["name"]
            pods = await self._k(self.kube.list_worker_pods, name)
            ips = {p["metadata"]["labels"].get(LABEL_NODE): p["status"]["podIP"] for p in pods
                   if (p.get("status") or {}).get("podIP") and not p["metadata"].get("deletionTimestamp")}
            targets = started_targets(deployment, ips, self.settings.worker_port)
            self._routes[deployment_id] = (time.monotonic(), deployment, targets)
            return deployment, targets
        finally:
            self._refreshing.pop(deployment_id, None)

    async def resolve_deployment(self, id_: str) -> tuple[str, Object, list[Target]]:
        """es-api §5.1: alias → model id; a deployment with that id, else one of that model's
        (preferring started). Errors as Elasticsearch's coordinating node raises them."""
        alias = self._resolved.get(id_)
        if alias and time.monotonic() - alias[0] < ROUTE_CACHE_SECONDS:
            id_ = alias[1]  # a model id or alias resolved a moment ago: skip the lookups
        found = await self._targets(id_)
        if found is None:
            asked = id_
            model_id = await self.resolve_alias(id_)
            deployments = [d for d in await self._k(self.kube.list_deployments) if d["spec"]["model_id"] == model_id]
            if not deployments:
                if await self._k(self.kube.get_model, model_id) is None:
                    raise ResourceNotFound(f"Could not find trained model [{model_id}]")
                raise StatusException(f"Model [{model_id}] must be deployed to use. Please deploy with the start "
                                      "trained model deployment API.", 409)
            order = {"started": 0, "starting": 1, "stopping": 2, "failed": 3}
            deployments.sort(key=lambda d: (order.get((d.get("status") or {}).get("assignment_state") or "starting", 4),
                                            d["spec"]["deployment_id"]))
            found = await self._targets(deployments[0]["spec"]["deployment_id"])
            self._resolved[asked] = (time.monotonic(), deployments[0]["spec"]["deployment_id"])
            if found is None:
                raise StatusException(f"Model [{model_id}] must be deployed to use. Please deploy with the start "
                                      "trained model deployment API.", 409)
        deployment, targets = found
        deployment_id = deployment["spec"]["deployment_id"]
        state = (deployment.get("status") or {}).get("assignment_state")
        if state in ("stopping", "failed"):
            raise StatusException(f"Trained model [{deployment_id}] is [{state}]", 409)
        if not targets:
            found = await self._targets(deployment_id, fresh=True)
            targets = found[1] if found else []
        if not targets:
            raise StatusException(f"Trained model deployment [{deployment_id}] is not allocated to any nodes", 409)
        return deployment_id, deployment, targets

    async def infer(self, id_: str, body: Any, query: dict[str, str]) -> list[Object]:
        """Results, one per document, in order."""
        raw = await self.infer_bytes(id_, body, query)
        return json.loads(raw)["inference_results"]

    async def infer_bytes(self, id_: str, body: Any, query: dict[str, str]) -> bytes:
        """The `_infer` response body. With one route the worker's own body is passed through
        unparsed (it already is `{"inference_results": [...]}`): the shim then costs one hop."""
        _check_body(body, "infer_trained_model_request", ("docs", "inference_config", "timeout"))
        docs = body.get("docs")
        if not isinstance(docs, list) or not docs:
            raise ValidationFailed(["at least one document is required"])
        timeout = parse_time_value(query.get("timeout") or body.get("timeout") or "10s", "timeout")
        started = time.perf_counter()
        deployment_id, _, targets = await self.resolve_deployment(id_)
        raw = await self._infer_targets(targets, docs, body, timeout)
        self.latency.record(deployment_id, time.perf_counter() - started)
        return raw

    async def _infer_targets(self, targets: list[Target], docs: list[Any], body: Object, timeout: TimeValue) -> bytes:
        """The documents split over the deployment's routable workers, their answers in order."""
        targets = reachable(targets, self._unreachable, time.monotonic(), UNREACHABLE_HOLD_SECONDS)
        payload: Object = {"inference_config": body["inference_config"]} if body.get("inference_config") else {}
        payload["timeout"] = timeout.text
        slices = split_docs(len(docs), targets, self.outstanding)
        # The worker answers 408 itself when `timeout` passes; this bound only covers a worker
        # that stopped answering altogether (and a retry elsewhere, which gets what is left).
        deadline = time.monotonic() + (timeout.seconds or 0) + WORKER_GRACE_SECONDS
        if len(slices) == 1:
            return await self._infer_slice(targets, slices[0][0], {**payload, "docs": docs}, len(docs), deadline,
                                           timeout)
        results = await asyncio.gather(*(self._infer_slice(targets, t, {**payload, "docs": docs[a:b]}, b - a,
                                                           deadline, timeout)
                                         for t, a, b in slices), return_exceptions=True)
        out: list[Object] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result  # the first failing slice fails the whole request, as Elasticsearch does
            out.extend(json.loads(result)["inference_results"])
        return json.dumps({"inference_results": out}, separators=(",", ":")).encode()

    async def _infer_slice(self, targets: list[Target], target: Target, payload: Object, n_docs: int,
                           deadline: float, timeout: TimeValue) -> bytes:
        """A slice on `target`; when that worker cannot be reached or drops the connection before
        answering, once more on another target. Inference has no side effects, so the retry is
        safe; it turns a worker that just died into latency instead of an error for the client."""
        try:
            return await self._infer_on(target, payload, n_docs, deadline, timeout)
        except WorkerUnreachable as err:
            self._mark_unreachable(target)
            retry = fallback(reachable(targets, self._unreachable, time.monotonic(), UNREACHABLE_HOLD_SECONDS),
                             target, self.outstanding)
            if retry is None:
                raise err.error from None
            log.info("worker unreachable, retrying elsewhere node=%s retry_node=%s error=%s", target.node,
                     retry.node, err.error.reason)
            RETRIES.inc()
        try:
            return await self._infer_on(retry, payload, n_docs, deadline, timeout)
        except WorkerUnreachable as err:
            self._mark_unreachable(retry)
            raise err.error from None

    def _mark_unreachable(self, target: Target) -> None:
        now = time.monotonic()
        # forget what is past its hold, so workers long gone do not accumulate
        self._unreachable = {a: t for a, t in self._unreachable.items() if now - t < UNREACHABLE_HOLD_SECONDS}
        self._unreachable[target.address] = now

    async def _infer_on(self, target: Target, payload: Object, n_docs: int, deadline: float,
                        timeout: TimeValue) -> bytes:
        """The worker's 200 body; its error raised as it gave it; WorkerUnreachable when no
        answer came back at all (refused, reset, disconnected, cut short)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:  # a retry after the first attempt used up the time
            raise StatusException(f"timeout [{timeout.text}] waiting for inference result", 408)
        self.outstanding[target.address] = self.outstanding.get(target.address, 0) + n_docs
        limit = aiohttp.ClientTimeout(total=remaining, sock_connect=min(CONNECT_TIMEOUT_SECONDS, remaining))
        try:
            async with self.session().post(f"http://{target.address}/infer", json=payload,
                                           timeout=limit) as response:
                raw = await response.read()
                status = response.status
        except aiohttp.ConnectionTimeoutError as err:  # before TimeoutError, which it also is
            raise WorkerUnreachable(StatusException(f"inference process on node [{target.node}] is not reachable: "
                                                    f"{type(err).__name__}", 409)) from None
        except asyncio.TimeoutError:
            raise StatusException(f"timeout [{timeout.text}] waiting for inference result", 408) from None
        except (aiohttp.ClientError, OSError) as err:
            raise WorkerUnreachable(StatusException(f"inference process on node [{target.node}] is not reachable: "
                                                    f"{type(err).__name__}", 409)) from None
        finally:
            self.outstanding[target.address] -= n_docs
        if status != 200:
            error = worker_error(_json_or_none(raw), status)
            if nothing_ran(status, error.reason):  # draining or still loading: another worker may take it
                raise WorkerUnreachable(error)
            self._unreachable.pop(target.address, None)
            raise error
        self._unreachable.pop(target.address, None)
        return raw

    async def clear_cache(self, deployment_id: str) -> Object:
        found = await self._targets(deployment_id, fresh=True)
        if found is None:
            raise ResourceNotFound(f"No known model deployment with id [{deployment_id}]")
        for target in found[1]:
            response = await self.http.post(f"http://{target.address}/cache/_clear")
            if response.status_code != 200:
                raise worker_error(response.json(), response.status_code)
        return {"cleared": True}

    # ------------------------------------------------------------------ stats

    async def stats(self, pattern: str | None, allow_no_match: bool, from_: int, size: int,
                    human: bool = False) -> Object:
        models = await self.match_models(pattern, allow_no_match=allow_no_match)
        deployments = await self._k(self.kube.list_deployments)
        pods = await self._k(self.kube.list_worker_pods)
        page = models[from_:from_ + size]
        elements: list[Object] = []
        for model in page:
            mine = [d for d in deployments if d["spec"]["model_id"] == model["spec"]["model_id"]]
            stats = await asyncio.gather(*(self._deployment_stats(d, model, pods) for d in mine))
            elements.extend(views.model_stats(model, list(stats), human))
        return {"count": len(models), "trained_model_stats": elements}

    async def deployments_with_stats(self) -> tuple[list[Object], list[tuple[Object, Object]]]:
        """The models, and every deployment resource with its stats as `_stats` reports them (each
        started worker's own): what the console shows, read the same way as the stats API."""
        models = await self._k(self.kube.list_models)
        by_id = {m["spec"]["model_id"]: m for m in models}
        deployments = sorted(await self._k(self.kube.list_deployments), key=lambda d: d["spec"]["deployment_id"])
        pods = await self._k(self.kube.list_worker_pods)
        stats = await asyncio.gather(*(self._deployment_stats(d, by_id.get(d["spec"]["model_id"]), pods)
                                       for d in deployments))
        return models, list(zip(deployments, stats))

    async def _deployment_stats(self, deployment: Object, model: Object | None, pods: list[Object]) -> Object:
        name = deployment["metadata"]["name"]
        ips = {p["metadata"]["labels"].get(LABEL_NODE): (p.get("status") or {}).get("podIP") for p in pods
               if p["metadata"].get("labels", {}).get(LABEL_DEPLOYMENT) == name}
        table = (deployment.get("status") or {}).get("routing_table") or {}
        port = self.settings.worker_port

        async def one(node: str, route: Object) -> Object:
            worker = None
            ip = ips.get(node)
            if route.get("routing_state") == "started" and ip:
                try:
                    response = await self.http.get(f"http://{ip}:{port}/stats", timeout=10)
                    if response.status_code == 200:
                        worker = response.json()
                except httpx.HTTPError:
                    worker = None
            return views.node_entry(node, route, worker, ip, port)

        nodes = await asyncio.gather(*(one(n, r) for n, r in sorted(table.items())))
        return views.deployment_stats(deployment, model, list(nodes))


def nothing_ran(status: int, reason: str) -> bool:
    """A worker's refusal that says the documents never reached its model (tmd/worker/app.py):
    429 after SIGTERM while it drains, 409 while it loads. Safe to send elsewhere."""
    return ((status == 429 and reason == "inference process worker service has shutdown")
            or (status == 409 and reason.endswith("] process context missing")))


class WorkerUnreachable(Exception):
    """No answer from a worker, or one that says nothing ran: `error` is what the client gets if
    no other worker takes the request."""

    def __init__(self, error: ElasticsearchError) -> None:
        super().__init__(error.reason)
        self.error = error


def worker_error(body: Any, status: int) -> ElasticsearchError:
    """A worker's Elasticsearch error body, raised again unchanged on the shim."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return ElasticsearchError(str(error.get("reason")), status=status, type=str(error.get("type") or "exception"))
    return ElasticsearchError(f"inference failed with status [{status}]", status=status)


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _check_body(body: Any, action: str, fields: tuple[str, ...]) -> None:
    """A JSON object body whose fields are all known, as Elasticsearch's ObjectParser requires."""
    if not isinstance(body, dict):
        raise ParseError("request body is required")
    unknown = [k for k in body if k not in fields]
    if unknown:
        raise ParseError(f"[{action}] unknown field [{unknown[0]}]", type="x_content_parse_exception")
