"""Which batching knobs a worker runs, read from its pod, and when the operator sets them live."""

from __future__ import annotations

import copy

from tests.operator.factories import deployment, model, node, running
from tests.operator.test_reconcile import creates, run, status_of
from tmd.api.deployment import TmdBatching
from tmd.operator.reconcile import pod_key
from tmd.operator.worker_batching import ANNOTATION_WORKER_BATCHING, confirmation, running_batching, started_batching

NODES = [node("node-1")]
FOUR_5MS = {"max_batch_size": 4, "max_batch_delay": "5ms"}


def started_worker(**spec):
    """A ready worker pod of `deployment(**spec)` and that deployment's status once it serves."""
    first = run([deployment(**spec)], [model()], NODES)
    pod = running(creates(first)[0])
    pod["status"]["containerStatuses"][0]["containerID"] = "localkube://a"
    status = status_of(run([deployment(status=status_of(first), **spec)], [model()], NODES, [pod], {pod_key(pod): 1}))
    return pod, status


def changes(pod, status, **spec):
    result = run([deployment(status=status, generation=2, **spec)], [model()], NODES, [pod], {pod_key(pod): 1})
    return [(c.action, c.batching) for c in result.pod_changes]


def test_a_fresh_worker_runs_its_environment_or_the_defaults():
    pod, _ = started_worker(tmd_batching=FOUR_5MS)
    assert running_batching(pod) == started_batching(pod) == TmdBatching(**FOUR_5MS)
    plain, _ = started_worker()
    assert running_batching(plain) == TmdBatching()


def test_a_confirmed_change_holds_for_the_container_that_confirmed_it_only():
    pod, _ = started_worker()
    pod["metadata"]["annotations"][ANNOTATION_WORKER_BATCHING] = confirmation(pod, TmdBatching(**FOUR_5MS))
    assert pod["metadata"]["annotations"][ANNOTATION_WORKER_BATCHING] == "4/5ms@localkube://a"
    assert running_batching(pod) == TmdBatching(**FOUR_5MS)
    restarted = copy.deepcopy(pod)
    restarted["status"]["containerStatuses"][0]["containerID"] = "localkube://b"
    assert running_batching(restarted) == TmdBatching(), "a restarted worker starts again from its environment"
    pod["metadata"]["annotations"][ANNOTATION_WORKER_BATCHING] = "garbage"
    assert running_batching(pod) == TmdBatching()


def test_a_changed_spec_sets_the_started_worker_live_and_nothing_else():
    pod, status = started_worker()
    assert changes(pod, status) == []  # in step: a pass asks nothing
    assert changes(pod, status, tmd_batching=FOUR_5MS) == [("set_batching", TmdBatching(**FOUR_5MS))]
    # allocations and batching changed together: both, each its own change
    result = run([deployment(status=status, generation=2, allocations=2, tmd_batching=FOUR_5MS)], [model()],
                 [node("node-1", cpu="4")], [pod], {pod_key(pod): 1})
    assert sorted(c.action for c in result.pod_changes) == ["set_allocations", "set_batching"]


def test_once_confirmed_nothing_more_until_the_container_restarts():
    pod, status = started_worker()
    pod["metadata"]["annotations"][ANNOTATION_WORKER_BATCHING] = confirmation(pod, TmdBatching(**FOUR_5MS))
    assert changes(pod, status, tmd_batching=FOUR_5MS) == []
    pod["status"]["containerStatuses"][0].update(containerID="localkube://b", restartCount=1)
    assert changes(pod, status, tmd_batching=FOUR_5MS) == [("set_batching", TmdBatching(**FOUR_5MS))]


def test_removing_tmd_batching_brings_workers_back_to_the_defaults():
    pod, status = started_worker(tmd_batching=FOUR_5MS)
    assert changes(pod, status, tmd_batching=FOUR_5MS) == []
    assert changes(pod, status) == [("set_batching", TmdBatching())]


def test_a_worker_not_yet_serving_is_left_alone():
    pod, status = started_worker()
    pod["status"]["conditions"][0]["status"] = "False"
    assert changes(pod, status, tmd_batching=FOUR_5MS) == []
    deleting = copy.deepcopy(pod)
    deleting["status"]["conditions"][0]["status"] = "True"
    deleting["metadata"]["deletionTimestamp"] = "2026-11-22T00:30:00Z"
    assert changes(deleting, status, tmd_batching=FOUR_5MS) == []
