"""Shared test configuration."""

import pytest

pytest_plugins = ["tmd.localkube.testing"]


@pytest.fixture(scope="module")
def kube(localkube):
    """kubectl against the module's cluster, with the first installed kubectl binary (the
    kubectl-parametrized fixture `kubectl` is for tests that must run with each of them)."""
    from tmd.localkube.testing import kubectl_binaries, run_kubectl

    binary = next(iter(kubectl_binaries().values()))
    return lambda *args, **kw: run_kubectl(localkube, *args, binary=binary, **kw)
