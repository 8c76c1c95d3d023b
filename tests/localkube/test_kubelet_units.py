"""Unit tests of the process kubelet's pure parts (no API server): back-off, IP allocation, env and
downward API, probe thresholds, QoS, status builders (checked against the python client 37 models),
and the process layer (real processes: spawn, adopt, stop)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client

from tmd.localkube.kubelet.backoff import BackoffPolicy
from tmd.localkube.kubelet.env import EnvError, PodContext, container_argv, container_env, expand, referenced_sources
from tmd.localkube.kubelet.ipam import IPAM, next_free
from tmd.localkube.kubelet.node import NodeSpec, lease_object, micro_time, node_object, node_status
from tmd.localkube.kubelet.probes import ProbeState, ProbeTiming, resolve_port
from tmd.localkube.kubelet.process import ContainerProcess, ProcessIdentity, exit_code_of, start_ticks
from tmd.localkube.kubelet.resources import fits, qos_class, quantity, resource_field_value
from tmd.localkube.kubelet.status import ContainerRecord, PodView, Terminated, pod_phase, pod_status


# ---- back-off ------------------------------------------------------------------------------------
def test_backoff_doubles_from_base_to_cap():
    policy = BackoffPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]
    assert policy.delay(0) == 0


def test_backoff_resets_after_a_long_run():
    policy = BackoffPolicy(base=1, cap=4)
    assert policy.crashes_after(3, ran_for=1) == 4
    assert policy.crashes_after(3, ran_for=policy.reset_after) == 1


# ---- IPs -----------------------------------------------------------------------------------------
def test_next_free_skips_taken_and_network_addresses():
    assert next_free(set()) == "127.0.0.2"
    taken = {f"127.0.0.{i}" for i in range(2, 255)}
    assert next_free(taken) == "127.0.1.1"


def test_ipam_is_stable_unique_and_persistent(tmp_path: Path):
    ipam = IPAM(tmp_path / "ipam.json")
    a, b = ipam.assign("uid-a"), ipam.assign("uid-b")
    assert a != b and ipam.assign("uid-a") == a
    other = IPAM(tmp_path / "ipam.json")  # another kubelet, or the next run
    assert other.assign("uid-b") == b and other.assign("uid-c") not in (a, b)
    other.release("uid-a")
    assert ipam.assign("uid-d") == a  # freed addresses are reused
    assert set(IPAM(tmp_path / "ipam.json").assignments()) == {"uid-b", "uid-c", "uid-d"}


# ---- env ----------------------------------------------------------------------------------------
POD = {
    "metadata": {"name": "w", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}},
    "spec": {
        "nodeName": "node-1",
        "containers": [
            {
                "name": "main",
                "command": ["python", "-c"],
                "args": ["print('$(GREETING) $$(NOT)')"],
                "resources": {"limits": {"cpu": "2", "memory": "1Gi"}},
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                    {"name": "GREETING", "value": "hello $(POD_NAME)"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}}},
                    {"name": "KEY", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                    {"name": "MAYBE", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x", "optional": True}}},
                ],
            }
        ],
    },
}
CTX = PodContext(pod_ip="127.0.0.7", host_ip="127.0.0.1", node_allocatable={"cpu": "4", "memory": "8Gi"})


def test_container_env_downward_api_and_sources():
    container = POD["spec"]["containers"][0]
    env = container_env(POD, container, CTX, {"PATH": "/bin"}, {"cm": {"k": "v", "other": "o"}}, {"sec": {"password": "p"}})
    assert env["PATH"] == "/bin" and env["HOSTNAME"] == "w"
    assert (env["POD_NAME"], env["POD_NS"], env["POD_UID"], env["NODE"]) == ("w", "ns", "u-1", "node-1")
    assert (env["POD_IP"], env["HOST_IP"], env["APP"]) == ("127.0.0.7", "127.0.0.1", "x")
    assert (env["CPU"], env["MEM_MI"]) == ("2", "1024")  # requests default to limits
    assert (env["KEY"], env["CM_k"], env["CM_other"], env["PASSWORD"]) == ("v", "v", "o", "p")
    assert "MAYBE" not in env
    # $(VAR) refers only to variables defined earlier in the list, as in Kubernetes
    assert env["GREETING"] == "hello $(POD_NAME)"
    assert container_argv(container, env) == ["python", "-c", "print('hello $(POD_NAME) $(NOT)')"]


def test_missing_config_source_is_a_config_error():
    container = POD["spec"]["containers"][0]
    with pytest.raises(EnvError, match='configmap "cm" not found'):
        container_env(POD, container, CTX, {}, {}, {"sec": {"password": "p"}})
    assert referenced_sources(POD) == ({"cm"}, {"sec", "absent"})


def test_expand_and_limits_fall_back_to_node():
    assert expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"
    assert resource_field_value({"name": "c"}, "limits.cpu", None, {"cpu": "4"}) == "4"
    assert resource_field_value({"resources": {"requests": {"cpu": "250m"}}}, "requests.cpu", "1m", {}) == "250"
    assert resource_field_value({"resources": {"requests": {"cpu": "250m"}}}, "requests.cpu", None, {}) == "1"  # rounded up


def test_container_without_command_cannot_run():
    with pytest.raises(EnvError, match="no command"):
        container_argv({"name": "c", "image": "nginx"}, {})


# ---- resources -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "resources, expected",
    [
        ({}, "BestEffort"),
        ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
        ({"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
        ({"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "1Gi"}}, "Burstable"),
        ({"requests": {"cpu": "1"}}, "Burstable"),
    ],
)
def test_qos_class(resources, expected):
    assert qos_class({"spec": {"containers": [{"name": "c", "resources": resources}]}}) == expected


def test_fits():
    assert fits({"cpu": quantity("2")}, {"cpu": quantity("2")}, {"cpu": "4"}) == []
    assert fits({"cpu": quantity("2")}, {"cpu": quantity("2500m")}, {"cpu": "4"}) == ["cpu"]


# ---- probes --------------------------------------------------------------------------------------
def test_probe_thresholds():
    timing = ProbeTiming.of({"successThreshold": 2, "failureThreshold": 3})
    readiness = ProbeState(timing, initial=False)
    assert not readiness.record(True) and readiness.record(True) and readiness.result
    assert not readiness.record(False) and not readiness.record(False)
    assert readiness.record(False) and not readiness.result
    liveness = ProbeState(ProbeTiming.of({"failureThreshold": 2}), initial=True)
    liveness.record(False)
    assert not liveness.failed_out
    liveness.record(False)
    assert liveness.failed_out


def test_named_probe_port():
    container = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port("http", container) == 8080 and resolve_port(81, container) == 81 and resolve_port("82", container) == 82
    with pytest.raises(ValueError):
        resolve_port("grpc", container)


# ---- status builders, checked by the python client's strict models --------------------------------
def _pod_model(status: dict) -> client.V1Pod:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "namespace": "ns", "uid": "u-1", "resourceVersion": "5", "generation": 1},
           "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "python:3.11"}]}, "status": status}
    return client.V1Pod.model_validate(pod)


def test_pod_status_lifecycle_is_schema_complete():
    pod = {"metadata": {"name": "w", "namespace": "ns", "uid": "u-1", "generation": 1}, "spec": {"restartPolicy": "Always", "containers": [{"name": "main"}]}}
    record = ContainerRecord(name="main", image="python:3.11")
    view = PodView(pod=pod, host_ip="127.0.0.1", pod_ip="127.0.0.9", start_time="2026-01-01T00:00:00Z", containers=[record])
    pending = pod_status(view, "2026-01-01T00:00:00Z")
    assert pending["phase"] == "Pending" and pending["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    _pod_model(pending)

    record.state, record.started_at, record.container_id, record.ready, record.started = "running", "2026-01-01T00:00:01Z", "localkube://abc", True, True
    running = pod_status(view, "2026-01-01T00:00:02Z")
    assert running["phase"] == "Running" and running["podIP"] == "127.0.0.9" and running["podIPs"] == [{"ip": "127.0.0.9"}]
    conditions = {c["type"]: c["status"] for c in running["conditions"]}
    assert conditions == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True", "ContainersReady": "True", "PodScheduled": "True"}
    model = _pod_model(running)
    assert model.status.container_statuses[0].image_id.endswith("@sha256:" + model.status.container_statuses[0].image_id.split("sha256:")[1])

    crash = Terminated(1, "Error", "2026-01-01T00:00:01Z", "2026-01-01T00:00:03Z", "localkube://abc")
    record.state, record.ready, record.started = "waiting", False, False
    record.waiting_reason, record.waiting_message, record.last_terminated, record.restart_count = "CrashLoopBackOff", "back-off 10s", crash, 1
    view.pod = {**pod, "status": running}
    looping = pod_status(view, "2026-01-01T00:00:04Z")
    assert looping["phase"] == "Running"
    status = looping["containerStatuses"][0]
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff" and status["lastState"]["terminated"]["exitCode"] == 1
    ready = next(c for c in looping["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady" and ready["lastTransitionTime"] == "2026-01-01T00:00:04Z"
    scheduled = next(c for c in looping["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["lastTransitionTime"] == "2026-01-01T00:00:02Z"  # unchanged conditions keep their transition time
    _pod_model(looping)


def test_pod_phase_for_restart_policies():
    done = ContainerRecord(name="a", image="i", state="terminated", terminated=Terminated(0, "Completed", "t", "t", "id"))
    failed = ContainerRecord(name="b", image="i", state="terminated", terminated=Terminated(2, "Error", "t", "t", "id"))
    assert pod_phase("Never", False, [done], {}) == "Succeeded"
    assert pod_phase("Never", False, [done, failed], {}) == "Failed"
    assert pod_phase("OnFailure", False, [done, failed], {"b": True}) == "Running"
    assert pod_phase("Never", True, [ContainerRecord(name="a", image="i")], {}) == "Failed"


def test_node_and_lease_objects_validate():
    spec = NodeSpec(name="node-2", cpus="4", memory="8Gi", zone="zone-b")
    node = node_object(spec)
    node["metadata"].update(uid="x", resourceVersion="1")
    node["status"] = node_status(spec, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")
    model = client.V1Node.model_validate(node)
    labels = model.metadata.labels
    assert labels["topology.kubernetes.io/zone"] == "zone-b" and labels["node-role.kubernetes.io/ml"] == "true" and labels["ml.tmd.dev/ml-node"] == "true"
    assert model.status.allocatable == {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    assert model.status.node_info.kubelet_version == "v1.33.2"
    client.V1Lease.model_validate(lease_object(spec, "x", micro_time()))


# ---- processes -----------------------------------------------------------------------------------
def test_exit_codes_of_signals():
    assert exit_code_of(-signal.SIGTERM) == (143, signal.SIGTERM) and exit_code_of(3) == (3, None)


def test_process_group_spawn_stop_and_adopt(tmp_path: Path):
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        log = tmp_path / "c.log"
        # ignores SIGTERM, so stop() must escalate to SIGKILL after the grace period
        code = "import signal,sys,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
        proc = ContainerProcess.spawn([sys.executable, "-c", code], {"PATH": os.environ["PATH"]}, None, log)
        assert os.getpgid(proc.pid) == proc.pid and os.getsid(proc.pid) == proc.pid
        for _ in range(100):
            if log.read_text():
                break
            await asyncio.sleep(0.05)
        again = ContainerProcess.adopt(ProcessIdentity(proc.pid, start_ticks(proc.pid) or 0))
        assert again is not None
        assert ContainerProcess.adopt(ProcessIdentity(proc.pid, (start_ticks(proc.pid) or 0) + 1)) is None  # pid reuse guard
        began = time.monotonic()
        assert await proc.stop(0.3, loop) == -signal.SIGKILL
        assert time.monotonic() - began >= 0.3
        assert log.read_text() == "up\n"
        assert start_ticks(proc.pid) is None

    asyncio.run(scenario())


def test_adopted_process_exit_is_seen(tmp_path: Path):
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"], start_new_session=True)
        adopted = ContainerProcess.adopt(ProcessIdentity(child.pid, start_ticks(child.pid) or 0))
        assert adopted is not None
        waiter = adopted.watch(loop)
        await asyncio.sleep(0.5)
        child.wait()  # we are its parent here; a real adoption's parent is init
        assert await asyncio.wait_for(waiter, 2) is None  # exit code of a non-child is unknown

    asyncio.run(scenario())
