"""The operator's cache (events and writes in any order, lists, tombstones) and what a worker
runs as read from its pod."""

from __future__ import annotations

import copy

from tests.operator.factories import deployment, model, node, running
from tmd.operator.actuator import worker_allocations
from tmd.operator.cache import ClusterCache
from tmd.operator.config import OperatorConfig
from tmd.operator.pods import worker_pod
from tmd.operator.worker_allocations import ANNOTATION_WORKER_ALLOCATIONS, confirmation, running_allocations
from tmd.api.deployment import DeploymentSpec


def versioned(obj: dict, rv: int) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"]["resourceVersion"] = str(rv)
    return obj


def worker(allocations: int = 2, container_id: str = "localkube://a") -> dict:
    dep = deployment(allocations=allocations)
    pod = worker_pod(dep, DeploymentSpec.model_validate(dep["spec"]), model(), "node-1", allocations, 1 << 28,
                     OperatorConfig())
    pod = running(pod)
    pod["status"]["containerStatuses"][0]["containerID"] = container_id
    return pod


def primed() -> ClusterCache:
    cache = ClusterCache()
    for kind in ("deployments", "models", "nodes", "pods"):
        cache.replace(kind, [], 10)
    return cache


def test_not_ready_until_every_kind_was_listed():
    cache = ClusterCache()
    for kind in ("deployments", "models", "nodes"):
        cache.replace(kind, [], 1)
    assert not cache.ready
    cache.replace("pods", [], 1)
    assert cache.ready


def test_an_older_event_never_replaces_a_newer_write():
    cache = primed()
    assert cache.apply("deployments", "MODIFIED", versioned(deployment(allocations=2), 20))
    assert not cache.apply("deployments", "MODIFIED", versioned(deployment(allocations=1), 15))
    assert cache.items("deployments")[0]["spec"]["number_of_allocations"] == 2
    assert not cache.apply("deployments", "MODIFIED", versioned(deployment(allocations=2), 20)), "own write echoed"


def test_a_deletion_leaves_a_tombstone_against_late_events():
    cache = primed()
    cache.apply("pods", "ADDED", versioned(worker(), 11))
    assert cache.apply("pods", "DELETED", versioned(worker(), 14))
    assert not cache.apply("pods", "MODIFIED", versioned(worker(), 13)), "a late event does not resurrect it"
    assert cache.items("pods") == []
    assert cache.apply("pods", "ADDED", versioned(worker(), 15)), "a new pod of that name is welcome"


def test_an_event_older_than_the_list_for_an_object_not_in_it_is_stale():
    cache = primed()  # listed at 10 without the pod: it was deleted by then
    assert not cache.apply("pods", None, versioned(worker(), 9))
    assert cache.items("pods") == []


def test_a_relist_drops_what_vanished_and_keeps_what_is_newer_than_it():
    cache = primed()
    cache.apply("nodes", "ADDED", versioned(node("node-1"), 11))
    cache.apply("nodes", "ADDED", versioned(node("node-2"), 12))
    cache.apply("nodes", "ADDED", versioned(node("node-3"), 30))  # after the list below was taken
    changed = cache.replace("nodes", [versioned(node("node-1"), 11)], 25)  # node-2's deletion was missed
    assert changed
    assert sorted(n["metadata"]["name"] for n in cache.items("nodes")) == ["node-1", "node-3"]


def test_a_node_heartbeat_does_not_ask_for_a_pass_but_a_lost_node_does():
    cache = primed()
    first = versioned(node("node-1"), 11)
    cache.apply("nodes", "ADDED", first)
    beat = versioned(first, 12)
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-11-22T00:00:10Z"
    assert not cache.apply("nodes", "MODIFIED", beat)
    down = versioned(node("node-1", ready=False), 13)
    assert cache.apply("nodes", "MODIFIED", down)
    assert cache.apply("nodes", "DELETED", versioned(down, 14))


def test_a_fresh_worker_runs_the_allocations_it_was_started_with():
    assert running_allocations(worker(3)) == 3


def test_a_confirmed_change_holds_for_the_container_that_confirmed_it_only():
    pod = worker(2)
    pod["metadata"]["annotations"][ANNOTATION_WORKER_ALLOCATIONS] = confirmation(pod, 4)
    assert running_allocations(pod) == 4
    restarted = copy.deepcopy(pod)
    restarted["status"]["containerStatuses"][0]["containerID"] = "localkube://b"
    assert running_allocations(restarted) == 2, "a restarted worker starts again from TMD_ALLOCATIONS"


def test_only_started_workers_report():
    ready, starting = worker(2), worker(3)
    starting["metadata"]["name"] = "other"
    starting["status"]["conditions"][0]["status"] = "False"
    assert worker_allocations([ready, starting]) == {f"default/{ready['metadata']['name']}": 2}
