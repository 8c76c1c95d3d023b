"""`tmd up --operators N`: one operator as before, or N replicas that elect an active one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tmd.operator.config import OperatorConfig
from tmd.up import operator_children


def test_one_operator_runs_without_leader_election(tmp_path: Path):
    [child] = operator_children(1, {"KUBECONFIG": "k"}, tmp_path)
    assert child.name == "operator" and not OperatorConfig.from_env(child.env).leader_election


def test_replicas_elect_with_identities_of_their_own(tmp_path: Path):
    children = operator_children(2, {"KUBECONFIG": "k"}, tmp_path)
    assert [c.name for c in children] == ["operator-1", "operator-2"]
    assert all(OperatorConfig.from_env(c.env).leader_election for c in children)
    assert len({c.env["POD_NAME"] for c in children}) == 2 and len({c.log_path for c in children}) == 2


def test_zero_operators_is_refused():
    done = subprocess.run([sys.executable, "-m", "tmd", "up", "--operators", "0"], capture_output=True, text=True)
    assert done.returncode == 2 and "--operators must be at least 1" in done.stderr
