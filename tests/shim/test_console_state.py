"""The console's state reading against a real control plane: every ML node shows in the grid,
idle ones too, with the capacity `_ml/info` reads; one nodes list per reading, shared for
SAMPLE_SECONDS like the rest of the reading."""

from __future__ import annotations

import asyncio

import pytest

from tests.operator.e2e import install_crds
from tmd.api.ml_nodes import NOT_READY_REASON
from tmd.api.resources import LABEL_ML_NODE
from tmd.shim.console.series import SAMPLE_SECONDS
from tmd.shim.console.state import ConsoleState
from tmd.shim.kube import ShimKube
from tmd.shim.service import Shim, ShimSettings
from tmd.store.directory import DirectoryStore

pytestmark = [pytest.mark.slow,
              pytest.mark.localkube(nodes=3, node_cpus="4", node_labels={LABEL_ML_NODE: "true"})]


def test_grid_lists_idle_ml_nodes_with_capacity_and_marks_cordoned_ones(localkube, kube, k8s_client, tmp_path):
    install_crds(kube)
    kube("label", "node", "node-3", f"{LABEL_ML_NODE}-")  # no longer picked by the ML node selector
    now = [1000.0]
    console = ConsoleState(Shim(ShimSettings(version="9.1.0"), ShimKube("default", k8s_client),
                                DirectoryStore(str(tmp_path))), clock=lambda: now[0])

    async def nodes() -> list[dict]:
        reading = await console.read()
        assert reading["grid"]["nodes_error"] == "" and reading["grid"]["deployments"] == []
        return reading["grid"]["nodes"]

    idle = {"ml_node": True, "ready": True, "reason": "", "processors": 4, "used_processors": 0}
    assert asyncio.run(nodes()) == [{"name": "node-1", **idle}, {"name": "node-2", **idle}]

    kube("cordon", "node-2")
    assert asyncio.run(nodes())[1]["ready"] is True  # the same reading within SAMPLE_SECONDS
    now[0] += SAMPLE_SECONDS
    assert asyncio.run(nodes())[1] == {"name": "node-2", **idle, "ready": False, "reason": NOT_READY_REASON}
