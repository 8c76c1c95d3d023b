"""`_ml/info` and `_ml/memory/_stats` bodies from Kubernetes nodes and pods (pure functions)."""

from __future__ import annotations

import pytest

from tmd.api.errors import IllegalArgument
from tmd.api.memory import MB, NATIVE_EXECUTABLE_CODE_OVERHEAD_BYTES as OVERHEAD
from tmd.api.ml_nodes import MLNode, ml_nodes_from_kubernetes
from tmd.shim.ml_info import is_worker, memory_stats, ml_info, nodes_os_info

GI = 1 << 30
SELECTOR = {"matchLabels": {"ml.tmd.dev/ml-node": "true"}}


def node(name: str, cpu: str, memory: str, ml: bool = True, ready: bool = True) -> dict:
    return {"metadata": {"name": name, "uid": f"uid-{name}", "labels": {"ml.tmd.dev/ml-node": "true"} if ml else {}},
            "status": {"capacity": {"cpu": cpu, "memory": memory}, "allocatable": {"cpu": cpu, "memory": memory},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "addresses": [{"type": "InternalIP", "address": f"10.0.0.{len(name)}"}]}}


def pod(node_name: str, cpu: str, memory: str, worker: bool = False) -> dict:
    labels = {"ml.tmd.dev/role": "worker"} if worker else {}
    return {"metadata": {"name": f"p-{node_name}-{cpu}", "labels": labels},
            "spec": {"nodeName": node_name, "containers": [{"name": "c", "resources": {
                "requests": {"cpu": cpu, "memory": memory}}}]},
            "status": {"phase": "Running"}}


def test_limits_are_sums_and_maxima_over_assignable_nodes():
    nodes = [MLNode("a", processors=8, memory_bytes=16 * GI - OVERHEAD), MLNode("b", processors=2, memory_bytes=4 * GI),
             MLNode("down", processors=64, memory_bytes=256 * GI, ready=False)]
    limits = ml_info(nodes, "9.1.0")["limits"]
    assert limits == {"effective_max_model_memory_limit": f"{(16 * GI - OVERHEAD) // MB - 10}mb",
                      "total_ml_memory": f"{(16 * GI + 4 * GI + OVERHEAD) // MB}mb",
                      "total_ml_processors": 10, "max_single_ml_node_processors": 8}


def test_no_ml_node_leaves_the_node_limits_out():
    info = ml_info([], "9.1.0")
    assert info["limits"] == {"total_ml_memory": "0mb"}
    assert info["defaults"]["anomaly_detectors"]["model_memory_limit"] == "1gb"
    assert info["native_code"] == {"version": "9.1.0", "build_hash": "tmd"} and info["upgrade_mode"] is False


def test_default_model_memory_limit_never_exceeds_the_largest_node():
    info = ml_info([MLNode("a", processors=1, memory_bytes=512 * MB)], "9.1.0")
    assert info["defaults"]["anomaly_detectors"]["model_memory_limit"] == "502mb"


def test_other_workloads_reduce_capacity_and_workers_do_not():
    nodes = [node("ml-1", "4", "8Gi"), node("plain", "16", "64Gi", ml=False)]
    pods = [pod("ml-1", "1", "1Gi"), pod("ml-1", "2", "2Gi", worker=True)]
    (ml,) = ml_nodes_from_kubernetes(nodes, pods, SELECTOR, worker_pod=is_worker)
    assert (ml.processors, ml.memory_bytes) == (3, 7 * GI - OVERHEAD)


def test_memory_stats_per_ml_node():
    nodes = [node("ml-1", "4", "8Gi"), node("ml-2", "2", "4Gi"), node("plain", "16", "64Gi", ml=False),
             node("ml-down", "8", "8Gi", ready=False)]
    pods = [pod("ml-1", "1", "1Gi"), pod("ml-1", "2", "2Gi", worker=True)]
    body = memory_stats(nodes, pods, SELECTOR, None, "tmd")
    assert body["_nodes"] == {"total": 2, "successful": 2, "failed": 0} and body["cluster_name"] == "tmd"
    one, two = body["nodes"]["ml-1"], body["nodes"]["ml-2"]
    assert one["name"] == "ml-1" and one["roles"] == ["ml"] and one["transport_address"] == "10.0.0.4"
    assert one["mem"]["total_in_bytes"] == 8 * GI
    assert one["mem"]["ml"] == {"max_in_bytes": 7 * GI, "native_code_overhead_in_bytes": OVERHEAD,
                                "anomaly_detectors_in_bytes": 0, "data_frame_analytics_in_bytes": 0,
                                "native_inference_in_bytes": 2 * GI}
    assert two["mem"]["ml"]["native_code_overhead_in_bytes"] == 0 and two["mem"]["ml"]["native_inference_in_bytes"] == 0
    assert one["attributes"]["ml.allocated_processors"] == "3"
    assert one["jvm"] == {"heap_max_in_bytes": 0, "java_inference_max_in_bytes": 0, "java_inference_in_bytes": 0}


def test_memory_stats_node_filter_and_human():
    nodes = [node("ml-1", "4", "8Gi"), node("ml-2", "2", "4Gi")]
    assert list(memory_stats(nodes, [], SELECTOR, "ml-2", "tmd")["nodes"]) == ["ml-2"]
    assert list(memory_stats(nodes, [], SELECTOR, "uid-ml-1,nothing", "tmd")["nodes"]) == ["ml-1"]
    assert len(memory_stats(nodes, [], SELECTOR, "ml-*", "tmd")["nodes"]) == 2
    assert memory_stats(nodes, [], SELECTOR, "missing", "tmd")["_nodes"]["total"] == 0
    human = memory_stats(nodes, [], SELECTOR, "ml-2", "tmd", human=True)["nodes"]["ml-2"]
    assert human["mem"]["total"] == "4gb" and human["mem"]["total_in_bytes"] == 4 * GI


def test_nodes_os_info_for_kibana():
    """Kibana's trained models page asks `GET _nodes/ml:true/os` for the ML nodes' OS and arch."""
    nodes = [node("ml-1", "4", "8Gi"), node("plain", "16", "64Gi", ml=False)]
    nodes[0]["status"]["nodeInfo"] = {"operatingSystem": "linux", "architecture": "amd64", "osImage": "Debian",
                                      "kernelVersion": "6.1"}
    body = nodes_os_info(nodes, [], SELECTOR, "ml:true", "os", "/_nodes/ml:true/os", "tmd", "9.1.0")
    assert body["_nodes"]["total"] == 1
    os_info = body["nodes"]["ml-1"]["os"]
    assert (os_info["name"], os_info["arch"], os_info["available_processors"]) == ("Linux", "amd64", 4)
    assert nodes_os_info(nodes, [], SELECTOR, "master:true", "os", "/p", "tmd", "9.1.0")["nodes"] == {}
    assert list(nodes_os_info(nodes, [], SELECTOR, "ml-*", "os", "/p", "tmd", "9.1.0")["nodes"]) == ["ml-1"]
    with pytest.raises(IllegalArgument) as err:
        nodes_os_info(nodes, [], SELECTOR, "_all", "os,bogus", "/_nodes/_all/os,bogus", "tmd", "9.1.0")
    assert err.value.reason == "request [/_nodes/_all/os,bogus] contains unrecognized metric: [bogus]"
    with pytest.raises(IllegalArgument) as err:
        nodes_os_info(nodes, [], SELECTOR, "_all", "jvm", "/_nodes/_all/jvm", "tmd", "9.1.0")
    assert err.value.reason == "tmd serves only the [os] metric of nodes info, not ['jvm']"
