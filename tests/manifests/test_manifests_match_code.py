"""The manifests say what the code does: the operator's settings, the worker pods it builds, the
low-priority class it ensures, the roles the image runs, and Pod Security `restricted`."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

from tests.manifests.kustomize import build, env_of, find
from tests.operator.factories import deployment, model
from tmd.api.deployment import DeploymentSpec
from tmd.api.resources import LABEL_ML_NODE
from tmd.cli import COMMANDS
from tmd.operator import handlers
from tmd.operator.config import OperatorConfig
from tmd.operator.pods import worker_pod


def operator_container(path: str = "base") -> dict[str, Any]:
    return find(build(path), "Deployment", "tmd-operator")["spec"]["template"]["spec"]["containers"][0]


def operator_config(path: str = "base") -> OperatorConfig:
    return OperatorConfig.from_env(env_of(operator_container(path)))


def test_operator_env_is_read_by_the_operator_config():
    env = env_of(operator_container())
    assert all(name.startswith("TMD_") for name in env)
    config = operator_config()
    defaults = OperatorConfig()
    assert config.ml_node_selector == {LABEL_ML_NODE: "true"} == defaults.ml_node_selector
    assert config.worker_command == ("tmd", "worker") and config.worker_port == 8080
    read = set(re.findall(r'"(TMD_[A-Z_]+)" in env', inspect.getsource(OperatorConfig.from_env)))
    assert set(env) <= read, f"the operator does not read {sorted(set(env) - read)}"
    assert config.low_priority_class == defaults.low_priority_class
    assert config.resync_seconds == float(env["TMD_RESYNC_SECONDS"])


@pytest.mark.parametrize(("path", "control_plane", "worker"), [
    ("base", "ghcr.io/tmd-dev/tmd-operator:0.1.0", "ghcr.io/tmd-dev/tmd-worker:0.1.0"),
    ("overlays/dev", "tmd-operator:dev", "tmd-worker:dev"),
])
def test_operator_and_shim_run_the_control_plane_image_and_workers_the_worker_image(path, control_plane, worker):
    """The kustomization's `images:` names both images once; it reaches the operator's worker image too."""
    container = operator_container(path)
    shim = find(build(path), "Deployment", "tmd-shim")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == shim["image"] == control_plane
    assert operator_config(path).worker_image == worker


def test_dev_overlay_makes_every_linux_node_an_ml_node():
    assert operator_config("overlays/dev").ml_node_selector == {"kubernetes.io/os": "linux"}


def test_low_priority_class_is_the_one_the_operator_uses_and_ensures():
    config = operator_config()
    pc = find(build("base"), "PriorityClass", config.low_priority_class)
    assert pc["value"] == handlers.LOW_PRIORITY_VALUE
    assert pc["preemptionPolicy"] == "Never" and pc["globalDefault"] is False
    spec = DeploymentSpec(model_id="m", priority="low")
    pod = worker_pod(deployment(priority="low"), spec, model(), "node-1", 1, 1 << 20, config)
    assert pod["spec"]["priorityClassName"] == pc["metadata"]["name"]


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_network_policy_fences_the_worker_pods_the_operator_builds():
    docs = build("base")
    policy = find(docs, "NetworkPolicy", "tmd-workers")
    config = operator_config()
    spec = DeploymentSpec(model_id="test_model")
    pod = worker_pod(deployment(), spec, model(), "node-1", 2, 1 << 20, config)
    assert _matches(policy["spec"]["podSelector"], pod["metadata"]["labels"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    worker_ports = {p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert {p["port"] for p in rule["ports"]} == worker_ports == {config.worker_port}
    namespace = policy["metadata"]["namespace"]
    allowed = set()
    for name in ("tmd-shim", "tmd-operator"):
        template = find(docs, "Deployment", name)["spec"]["template"]
        assert find(docs, "Deployment", name)["metadata"]["namespace"] == namespace
        for peer in rule["from"]:
            if _matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}) \
                    and _matches(peer["podSelector"], template["metadata"]["labels"]):
                allowed.add(name)
    assert allowed == {"tmd-shim", "tmd-operator"}
    # ... and nobody else: no peer matches a pod without those labels.
    for peer in rule["from"]:
        assert not _matches(peer["podSelector"], {"app.kubernetes.io/name": "something-else"})


def test_shim_service_reaches_the_shim_pods_and_store():
    docs = build("base")
    service = find(docs, "Service", "tmd-shim")
    template = find(docs, "Deployment", "tmd-shim")["spec"]["template"]
    assert _matches({"matchLabels": service["spec"]["selector"]}, template["metadata"]["labels"])
    container = template["spec"]["containers"][0]
    env = env_of(container, namespace=find(docs, "Deployment", "tmd-shim")["metadata"]["namespace"])
    [port] = service["spec"]["ports"]
    assert port["port"] == int(env["TMD_SHIM_PORT"]) == container["ports"][0]["containerPort"]
    assert port["targetPort"] == container["ports"][0]["name"]
    namespace = service["metadata"]["namespace"]
    assert env["TMD_STORE_URI_BASE"] == f"http://{service['metadata']['name']}.{namespace}.svc:{port['port']}"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == env["TMD_STORE"])
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == mount["name"])
    find(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    secret_rule = next(r for r in find(docs, "Role", "tmd-shim")["rules"] if r["resources"] == ["secrets"])
    assert secret_rule["resourceNames"] == [env["TMD_AUTH_SECRET"]]
    assert int(env["TMD_WORKER_PORT"]) == operator_config().worker_port


@pytest.mark.parametrize("name", ["tmd-operator", "tmd-shim"])
def test_containers_run_a_tmd_command(name):
    container = find(build("base"), "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
    command = container["args"][0]
    if command not in COMMANDS and command == "shim":
        pytest.skip("`tmd shim` is not on this branch yet (built in branch shim)")
    assert command in COMMANDS


@pytest.mark.parametrize("path", ["base", "overlays/dev"])
@pytest.mark.parametrize("name", ["tmd-operator", "tmd-shim"])
def test_pods_meet_pod_security_restricted(path, name):
    """The `restricted` profile's checks (kubernetes.io/docs/concepts/security/pod-security-standards)
    that apply to these pods, plus a read-only root filesystem with writable scratch space."""
    spec = find(build(path), "Deployment", name)["spec"]["template"]["spec"]
    pod_sc = spec.get("securityContext", {})
    assert pod_sc["runAsNonRoot"] is True and pod_sc.get("runAsUser", 1) != 0
    assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    for volume in spec.get("volumes", []):
        assert set(volume) - {"name"} <= {"emptyDir", "persistentVolumeClaim", "configMap", "secret",
                                          "projected", "downwardAPI", "ephemeral", "csi"}
    for container in spec["containers"] + spec.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert not sc.get("privileged") and sc.get("runAsUser", 1) != 0
        assert sc["readOnlyRootFilesystem"] is True
        assert not any(p.get("hostPort") for p in container.get("ports", []))
        tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == tmp["name"])


def test_operator_replicas_elect_one_active():
    """More than one replica only with leader election on (tmd/operator/leader.py): the Lease, not
    the rollout strategy, keeps two operators from writing at once; each replica has its own identity."""
    from tmd.operator.config import OperatorConfig

    operator = find(build("base"), "Deployment", "tmd-operator")["spec"]
    container = operator["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    config = OperatorConfig.from_env({k: e["value"] for k, e in env.items() if "value" in e})
    assert operator["replicas"] == 2 and config.leader_election
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def _worker_pods() -> list[dict[str, Any]]:
    config = operator_config()
    normal = DeploymentSpec(model_id="test_model", number_of_allocations=2, threads_per_allocation=2)
    low = DeploymentSpec(model_id="test_model", priority="low")
    return [worker_pod(deployment(allocations=2, threads=2), normal, model(), "node-1", 2, 1 << 30, config),
            worker_pod(deployment(priority="low"), low, model(), "node-1", 1, 1 << 30, config)]


@pytest.mark.parametrize("pod", _worker_pods(), ids=["normal", "low"])
def test_worker_pods_the_operator_builds_are_valid_kubernetes(pod):
    import kubernetes_validate

    kubernetes_validate.validate(pod, "1.33.0", strict=True)


@pytest.mark.parametrize("pod", _worker_pods(), ids=["normal", "low"])
def test_worker_pods_meet_the_namespaces_enforced_restricted_profile(pod):
    """tmd-system enforces Pod Security `restricted`: worker pods (built by the operator) must meet
    it, or the API server refuses them."""
    namespace = find(build("base"), "Namespace", "tmd-system")["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    assert all(set(v) - {"name"} <= {"emptyDir"} for v in spec.get("volumes", []))
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert not sc.get("privileged") and sc["readOnlyRootFilesystem"] is True
        assert not any(p.get("hostPort") for p in container.get("ports", []))
        assert "procMount" not in sc and "seLinuxOptions" not in sc
