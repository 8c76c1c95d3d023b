"""Leader election on a real Lease (localkube): one replica leads, the other stands by and takes
over only once the leader has stopped renewing for the lease duration."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from kubernetes import config

from tmd.localkube.cluster import LocalCluster
from tmd.localkube.testing import random_pod_subnet
from tmd.operator.kube import Kube
from tmd.operator.leader import LeaderElector, Timing, lease_body


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory):
    with LocalCluster(tmp_path_factory.mktemp("leader"), nodes=0, simulated_nodes=1,
                      pod_subnet=random_pod_subnet()) as cluster:
        yield Kube(config.new_client_from_config(config_file=str(cluster.kubeconfig)))


def test_a_takeover_counts_a_transition_and_a_renewal_keeps_the_acquire_time():
    now = dt.datetime(2026, 12, 4, tzinfo=dt.timezone.utc)
    first = lease_body("l", "ns", "a", Timing(), now, None)
    first["metadata"]["resourceVersion"] = "5"
    renewed = lease_body("l", "ns", "a", Timing(), now + dt.timedelta(seconds=3), first)
    assert renewed["spec"]["acquireTime"] == first["spec"]["acquireTime"]
    assert renewed["spec"]["leaseTransitions"] == 0 and renewed["metadata"]["resourceVersion"] == "5"
    taken = lease_body("l", "ns", "b", Timing(), now + dt.timedelta(seconds=20), renewed | {"metadata": {"resourceVersion": "6"}})
    assert taken["spec"]["holderIdentity"] == "b" and taken["spec"]["leaseTransitions"] == 1


def test_one_leads_the_other_takes_over_after_the_leader_stops(kube):
    timing = Timing(lease_seconds=2.0, renew_deadline_seconds=1.4, retry_seconds=0.2)

    async def scenario() -> float:
        a = LeaderElector(kube, "default", "replica-a", timing, name="test-lease")
        b = LeaderElector(kube, "default", "replica-b", timing, name="test-lease")
        task_a = asyncio.create_task(a.run())
        await asyncio.wait_for(a.leading.wait(), 5)
        task_b = asyncio.create_task(b.run())
        await asyncio.sleep(2 * timing.lease_seconds)  # many rounds: b must never lead while a renews
        assert a.is_leader and not b.leading.is_set()
        task_a.cancel()  # a dies without a word, as under kill -9
        stopped = time.monotonic()
        await asyncio.wait_for(b.leading.wait(), 10)
        took = time.monotonic() - stopped
        assert b.is_leader
        task_b.cancel()
        await asyncio.gather(task_a, task_b, return_exceptions=True)
        return took

    took = asyncio.run(scenario())
    assert 2.0 <= took < 4.0, f"b waited for a's record to be unchanged for the lease duration, then took it: {took:.1f} s"
    lease = kube.get_lease("default", "test-lease")
    assert lease["spec"]["holderIdentity"] == "replica-b" and lease["spec"]["leaseTransitions"] == 1


def test_a_leader_that_cannot_renew_stops_leading_before_the_lease_runs_out(kube):
    clock = [100.0]
    elector = LeaderElector(kube, "default", "replica-c", Timing(10, 7, 1), name="test-lease-2", clock=lambda: clock[0])
    assert asyncio.run(elector.try_acquire_or_renew())
    assert elector.is_leader
    clock[0] += 7.5  # no renewal for longer than the renew deadline
    assert not elector.is_leader, "a standby may take over at 10 s: this one stops acting at 7"


def test_a_replica_that_is_not_active_writes_nothing():
    """The Actuator checks before each write (a pass may outlast the Lease): no call reaches the API."""
    from tests.operator.test_cache import worker
    from tmd.operator.actuator import Actuator
    from tmd.operator.config import OperatorConfig
    from tmd.operator.reconcile import PodChange

    class NoCalls:
        def __getattr__(self, name: str):
            raise AssertionError(f"an inactive replica called Kube.{name}")

    actuator = Actuator(NoCalls(), OperatorConfig(), active=lambda: False)  # type: ignore[arg-type]
    for action in ("create", "delete", "set_allocations"):
        asyncio.run(actuator.apply_pod_change(PodChange(action, worker(), 2, 1 << 28)))
    written = []
    asyncio.run(actuator._write("deployments", lambda *args: written.append(args), "default", "d", {}))
    assert written == []
