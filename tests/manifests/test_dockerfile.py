"""The Dockerfile, checked structurally (no Docker daemon here to build it): parsed with
dockerfile-parse, and held against the project (what it copies exists and is not ignored, the
entrypoint is the `tmd` script, the torch pin, the user and ports the manifests rely on)."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

import pytest

from tests.manifests.kustomize import REPO, build, find
from tmd.operator.config import OperatorConfig

dockerfile_parse = pytest.importorskip("dockerfile_parse", reason="dockerfile-parse parses the Dockerfile")

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@pytest.fixture(scope="module")
def instructions():
    parser = dockerfile_parse.DockerfileParser(path=str(REPO / "Dockerfile"))
    return [(s["instruction"], s["value"]) for s in parser.structure if s["instruction"] != "COMMENT"]


def stages(instructions):
    out: list[list[tuple[str, str]]] = []
    for instruction, value in instructions:
        if instruction == "FROM":
            out.append([])
        out[-1].append((instruction, value))
    return out


def ignored(path: str) -> bool:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/")) for p in patterns)


def test_two_stages_on_python_3_11_slim(instructions):
    build_stage, final = stages(instructions)
    assert build_stage[0] == ("FROM", "python:3.11-slim AS build")
    assert final[0] == ("FROM", "python:3.11-slim")
    assert ("COPY", "--from=build /opt/tmd /opt/tmd") in final


def test_every_copied_file_exists_and_reaches_the_build_context(instructions):
    copies = [value.split() for instruction, value in instructions if instruction == "COPY"
              and not value.startswith("--from")]
    sources = [src for args in copies for src in args[:-1]]
    assert sources == ["pyproject.toml", "README.md", "constraints.txt", "tmd"]
    for source in sources:
        assert (REPO / source).exists(), source
        assert not ignored(source), f"{source} is excluded by .dockerignore"
    # pip builds the package from pyproject.toml, which names its readme.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["readme"] in sources
    for heavy in ("tests", ".git", "benchmarks", "manifests"):
        assert ignored(heavy)


def test_install_uses_the_cpu_torch_pin(instructions):
    runs = [value for instruction, value in instructions if instruction == "RUN"]
    install = next(r for r in runs if "pip install" in r)
    assert "--constraint constraints.txt" in install
    assert f"--extra-index-url {CPU_INDEX}" in install
    assert re.search(r"pip install .* \.(\s|$)", install.replace("\\", " "))
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#"))
    assert "torch" in pins
    import torch

    # The image gets the torch the project is developed and tested with.
    assert torch.__version__.split("+")[0] == pins["torch"]


def test_entrypoint_is_the_tmd_script(instructions):
    final = stages(instructions)[-1]
    entrypoint = [v for i, v in final if i == "ENTRYPOINT"]
    assert [json.loads(v) for v in entrypoint] == [["tmd"]]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["tmd"] == "tmd.cli:main"
    env = " ".join(v for i, v in final if i == "ENV")
    assert "PATH=/opt/tmd/bin:$PATH" in env  # where the venv put the script


def test_runs_as_the_non_root_user_the_manifests_expect(instructions):
    final = stages(instructions)[-1]
    [user] = [v for i, v in final if i == "USER"]
    uid, gid = (int(x) for x in user.split(":"))
    assert uid != 0 and gid != 0
    for name in ("tmd-operator", "tmd-shim"):
        sc = find(build("base"), "Deployment", name)["spec"]["template"]["spec"]["securityContext"]
        assert (sc["runAsUser"], sc["runAsGroup"]) == (uid, gid)


def test_exposes_the_worker_and_shim_ports_and_the_scratch_dir(instructions):
    final = stages(instructions)[-1]
    [exposed] = [v for i, v in final if i == "EXPOSE"]
    assert {int(p) for p in exposed.split()} == {OperatorConfig().worker_port, 9200}
    env = " ".join(v for i, v in final if i == "ENV")
    assert "TMD_WORK_DIR=/tmp" in env  # /tmp is the emptyDir of the read-only-root pods


def test_the_copied_files_build_a_tmd_wheel_with_every_module(instructions, tmp_path):
    """What `pip install .` does in the build stage, on exactly the files the Dockerfile copies
    (minus what .dockerignore drops): it must produce every tmd module and the `tmd` script."""
    import shutil
    import subprocess
    import sys
    import zipfile

    copies = [value.split() for instruction, value in instructions if instruction == "COPY"
              and not value.startswith("--from")]
    context = tmp_path / "context"
    context.mkdir()
    for args in copies:
        for source in args[:-1]:
            src = REPO / source
            if src.is_dir():
                shutil.copytree(src, context / source, ignore=lambda d, names: [n for n in names if ignored(n)])
            else:
                shutil.copy(src, context / source)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                           "-w", str(tmp_path / "dist"), str(context)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = (tmp_path / "dist").glob("tmd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    modules = {str(p.relative_to(REPO)) for p in (REPO / "tmd").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= names, sorted(modules - names)[:5]
    assert "tmd = tmd.cli:main" in entry_points
