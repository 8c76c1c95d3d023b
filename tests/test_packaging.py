"""How tmd is packaged by role: the base install is the control plane (no torch, no tokenizers),
`tmd[worker]` adds inference; operator/ and worker/ at the top hold images, not Python packages."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
WORKER_ONLY = {"torch", "tokenizers", "orjson"}


def names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_the_base_install_has_no_torch_and_the_worker_extra_adds_it():
    assert not names(PYPROJECT["project"]["dependencies"]) & WORKER_ONLY
    assert names(PYPROJECT["project"]["optional-dependencies"]["worker"]) == WORKER_ONLY
    # make (and so `make up` and the tests) installs everything.
    assert re.search(r"pip install .*-e '\.\[worker,test\]'", (REPO / "Makefile").read_text())


def test_import_operator_from_the_repository_root_is_the_standard_library():
    """operator/ and worker/ hold Dockerfiles: no __init__.py may turn them into packages that
    shadow the standard library's `operator` (which the stdlib itself imports everywhere)."""
    for folder in ("operator", "worker", "images"):
        assert not list((REPO / folder).rglob("*.py")), f"{folder}/ must not hold Python modules"
    done = subprocess.run([sys.executable, "-c", "import operator, sys; print(operator.__file__); print(sys.path[0])"],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    module_file, first_path = done.stdout.splitlines()
    assert first_path == ""  # the repository root (cwd) is searched first, and still:
    assert Path(module_file).parent == Path(sysconfig.get_paths()["stdlib"])


def base_distributions() -> set[str]:
    """The installed distributions the base requirements need, transitively (extras followed)."""
    wanted: set[str] = set()
    todo = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        dist = importlib.metadata.distribution(name)
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in wanted:
            continue
        wanted |= {key, name}
        for spec in dist.requires or []:
            sub = Requirement(spec)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in req.extras | {""}):
                todo.append(sub)
    return {w for w in wanted if "[" not in w}


def torchless_environment(root: Path) -> Path:
    """A real virtual environment holding only the base distributions: each installed file of
    those distributions is linked in from this test run's environment (no download, no copy),
    so torch and tokenizers are simply absent; tmd itself comes from the repository (cwd)."""
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(root)
    site = Path(subprocess.run([root / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for name in base_distributions():
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # scripts, and bytecode the linked tree regenerates
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(dist.locate_file(file))
    return root / "bin" / "python"


def test_the_control_plane_imports_and_runs_without_torch(tmp_path):
    distributions = base_distributions()
    assert not distributions & WORKER_ONLY
    python = torchless_environment(tmp_path / "env")
    probe = """
import importlib.util, sys
assert importlib.util.find_spec("torch") is None and importlib.util.find_spec("tokenizers") is None
import tmd.cli, tmd.operator.main, tmd.operator.handlers, tmd.shim.main, tmd.shim.app, tmd.localkube.main, tmd.status
assert not {"torch", "tokenizers"} & set(sys.modules), sorted(m for m in sys.modules if m.startswith(("torch", "tok")))
sys.exit(tmd.cli.main(["operator", "--help"]))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([python, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage: tmd operator" in done.stdout
    # The worker role says what is missing instead of a traceback.
    done = subprocess.run([python, "-m", "tmd", "worker", "--help"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("tmd: error: [tmd worker] needs the worker extra (torch, tokenizers missing): "
                                   "pip install 'tmd[worker]'")

