"""The Argo CD health check (manifests/argocd/health.lua) run by a real Lua runtime (lupa) on
statuses the operator's own reconciliation produces."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml

from tests.manifests.kustomize import MANIFESTS
from tests.operator.factories import crashlooping, deployment, model, node, running
from tmd.operator.config import OperatorConfig
from tmd.operator.reconcile import ClusterState, PodChange, pod_key, reconcile

# Argo CD runs health checks in gopher-lua, a Lua 5.1: run them in lupa's Lua 5.1.
lua51 = pytest.importorskip("lupa.lua51", reason="lupa (a Lua runtime) is needed to run the Argo CD health check")

HEALTH_LUA = MANIFESTS / "argocd" / "health.lua"
NOW = dt.datetime(2026, 11, 22, 1, 0, tzinfo=dt.timezone.utc)
CONFIG = OperatorConfig()
NAME = "test-model"


def health(resource: dict[str, Any]) -> dict[str, str]:
    """Run the check as Argo CD does: the resource as the global `obj`, the chunk returns `hs`."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    assert lua.lua_version == (5, 1)
    lua.globals().obj = lua.table_from(resource, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return dict(result.items())


def reconciled(dep: dict[str, Any], nodes, pods=(), allocations=None, models=None) -> dict[str, Any]:
    """The deployment with the status one operator pass writes for it."""
    result = reconcile(ClusterState([dep], [model()] if models is None else models, nodes, list(pods),
                                    allocations or {}), CONFIG, NOW)
    return {**dep, "status": result.statuses[("default", dep["metadata"]["name"])]}, result


def creates(result) -> list[dict[str, Any]]:
    return [c.pod for c in result.pod_changes if isinstance(c, PodChange) and c.action == "create"]


def started(allocations: int, nodes, ready_nodes=None):
    """Two passes: workers created, then the given nodes' workers ready and reporting."""
    first, result = reconciled(deployment(allocations=allocations), nodes)
    pods = [running(p) if ready_nodes is None or p["spec"]["nodeName"] in ready_nodes else p
            for p in creates(result)]
    reported = {pod_key(p): int(p["metadata"]["annotations"]["ml.tmd.dev/allocations"])
                for p in pods if p.get("status")}
    dep, _ = reconciled(deployment(allocations=allocations, status=first["status"]), nodes, pods, reported)
    return dep, pods


def test_not_yet_observed_is_progressing():
    verdict = health(deployment())
    assert verdict == {"status": "Progressing", "message": "Waiting for the operator to observe the deployment"}


def test_status_of_an_older_generation_is_progressing():
    dep, _ = started(1, [node("node-1")])
    assert health(dep)["status"] == "Healthy"
    dep["metadata"]["generation"] = 2  # a spec change the operator has not seen yet
    assert health(dep) == {"status": "Progressing", "message": "Waiting for the operator to observe generation 2"}


def test_starting_workers_are_progressing():
    dep, _ = reconciled(deployment(allocations=2), [node("node-1")])
    assert dep["status"]["assignment_state"] == "starting"
    assert health(dep) == {"status": "Progressing", "message": "0 of 2 allocations started"}


def test_fully_allocated_is_healthy():
    dep, _ = started(3, [node("node-1", zone="a"), node("node-2", zone="b")])
    assert dep["status"]["allocation_status"]["state"] == "fully_allocated"
    assert health(dep) == {"status": "Healthy", "message": "3 of 3 allocations started"}


def test_partly_started_is_progressing():
    dep, _ = started(3, [node("node-1", zone="a"), node("node-2", zone="b")], ready_nodes={"node-1"})
    assert dep["status"]["assignment_state"] == "started"
    assert dep["status"]["allocation_status"]["state"] == "started"
    verdict = health(dep)
    assert verdict["status"] == "Progressing"
    assert verdict["message"].endswith("of 3 allocations started")


def test_allocations_that_cannot_be_placed_are_degraded():
    dep, _ = started(8, [node("node-1", cpu="2")])
    assert dep["status"]["assignment_state"] == "started"
    verdict = health(dep)
    assert verdict["status"] == "Degraded"
    assert "insufficient allocated processors" in verdict["message"]


def test_all_routes_failed_is_degraded():
    nodes = [node("node-1")]
    first, result = reconciled(deployment(), nodes)
    pod = crashlooping(creates(result)[0])
    dep, _ = reconciled(deployment(status=first["status"]), nodes, [pod])
    assert [r["routing_state"] for r in dep["status"]["routing_table"].values()] == ["failed"]
    verdict = health(dep)
    assert verdict["status"] == "Degraded"
    assert "inference process crashed" in verdict["message"] and "model.pt: corrupt" in verdict["message"]


def test_all_routes_failed_is_degraded_even_without_the_condition():
    """The rule stands on its own: a status from an operator without conditions still reads failed."""
    status = {"observedGeneration": 1, "assignment_state": "started", "routing_table": {
        "node-1": {"routing_state": "failed", "reason": "x", "current_allocations": 0, "target_allocations": 1}}}
    verdict = health(deployment(status=status))
    assert verdict == {"status": "Degraded",
                       "message": "All node routes are failed; see node route reason for details"}


def test_one_failed_route_of_two_is_degraded():
    nodes = [node("node-1", zone="a"), node("node-2", zone="b")]
    first, result = reconciled(deployment(allocations=2), nodes)
    pods = creates(result)
    pods = [running(pods[0]), crashlooping(pods[1])]
    dep, _ = reconciled(deployment(allocations=2, status=first["status"]), nodes, pods, {pod_key(pods[0]): 1})
    assert sorted(r["routing_state"] for r in dep["status"]["routing_table"].values()) == ["failed", "started"]
    assert health(dep)["status"] == "Degraded"


def test_missing_model_is_degraded():
    dep, _ = reconciled(deployment(model_id="nope", deployment_id="nope"), [node("node-1")], models=[])
    assert health(dep) == {"status": "Degraded", "message": "Could not find trained model [nope]"}


def test_stopping_is_progressing():
    dep, pods = started(1, [node("node-1")])
    dep["metadata"]["deletionTimestamp"] = "2026-11-22T01:00:00Z"
    dep, _ = reconciled(dep, [node("node-1")], pods, {pod_key(pods[0]): 1})
    assert dep["status"]["assignment_state"] == "stopping"
    assert health(dep) == {"status": "Progressing", "message": "deployment is stopping"}


def test_argocd_cm_patch_embeds_the_health_check_verbatim():
    patch = yaml.safe_load((MANIFESTS / "argocd" / "argocd-cm-patch.yaml").read_text())
    assert patch["kind"] == "ConfigMap" and patch["metadata"] == {
        "name": "argocd-cm", "namespace": "argocd", "labels": patch["metadata"]["labels"]}
    # Argo CD's key form: resource.customizations.health.<group>_<kind>
    assert patch["data"] == {"resource.customizations.health.ml.tmd.dev_TrainedModelDeployment": HEALTH_LUA.read_text()}
