"""operator/Dockerfile and worker/Dockerfile, checked structurally (the slow test in
test_images_run.py builds and runs them): parsed with dockerfile-parse and held against the
project (what they copy exists and is not ignored, what each installs, the entrypoints, the torch
pin, the user and ports the manifests rely on), against each other (one build recipe, so the two
cannot drift), and against images/build.sh (which builds them unchanged)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
import yaml

from tests.manifests.kustomize import MANIFESTS, REPO, build, find
from tmd.operator.config import OperatorConfig

dockerfile_parse = pytest.importorskip("dockerfile_parse", reason="dockerfile-parse parses the Dockerfiles")

ROLES = ("operator", "worker")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
BUILD_SCRIPT = REPO / "images" / "build.sh"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def parse(role: str) -> list[tuple[str, str]]:
    parser = dockerfile_parse.DockerfileParser(path=str(REPO / role / "Dockerfile"))
    return [(s["instruction"], s["value"]) for s in parser.structure if s["instruction"] != "COMMENT"]


@pytest.fixture(scope="module", params=ROLES)
def role(request) -> str:
    return request.param


def stages(instructions):
    out: list[list[tuple[str, str]]] = []
    for instruction, value in instructions:
        if instruction == "FROM":
            out.append([])
        out[-1].append((instruction, value))
    return out


def values(stage, instruction: str) -> list[str]:
    return [v for i, v in stage if i == instruction]


def ignored(path: str) -> bool:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/")) for p in patterns)


def pip_install(role: str) -> str:
    build_stage = stages(parse(role))[0]
    return next(r for r in values(build_stage, "RUN") if "pip install" in r).replace("\\\n", " ")


def test_two_stages_on_debian_bookworm_slim(role):
    build_stage, final = stages(parse(role))
    assert build_stage[0] == ("FROM", "debian:bookworm-slim AS build")
    assert final[0] == ("FROM", "debian:bookworm-slim")
    assert ("COPY", "--from=build /opt/tmd /opt/tmd") in final
    # Debian's python3 in both stages: the venv copied across points at /usr/bin/python3.
    assert any("python3 -m venv /opt/tmd" in r for r in values(build_stage, "RUN"))
    [install] = [r for r in values(final, "RUN") if "apt-get install" in r]
    assert re.search(r"--no-install-recommends python3\s", install) and "rm -rf /var/lib/apt/lists/*" in install


def test_both_images_share_one_recipe_but_what_pip_installs():
    """The build stages differ only in the pip install line and its ARG; the final stages only in
    what the image serves (env, ports, entrypoint)."""
    operator, worker = (stages(parse(r)) for r in ROLES)
    differs = {"ARG", "RUN"}
    assert [i for i in operator[0] if i[0] not in differs] == [i for i in worker[0] if i[0] not in differs]
    assert [r for r in values(operator[0], "RUN") if "pip install" not in r] == \
           [r for r in values(worker[0], "RUN") if "pip install" not in r]
    serves = {"ENV", "EXPOSE", "ENTRYPOINT", "CMD"}
    assert [i for i in operator[1] if i[0] not in serves] == [i for i in worker[1] if i[0] not in serves]


def test_every_copied_file_exists_and_reaches_the_build_context(role):
    copies = [value.split() for instruction, value in parse(role) if instruction == "COPY"
              and not value.startswith("--from")]
    sources = [src for args in copies for src in args[:-1]]
    assert sources == ["pyproject.toml", "README.md", "constraints.txt", "tmd"]
    for source in sources:
        assert (REPO / source).exists(), source
        assert not ignored(source), f"{source} is excluded by .dockerignore"
    assert PYPROJECT["project"]["readme"] in sources  # pip builds the package from pyproject.toml, which names it
    for heavy in ("tests", ".git", "benchmarks", "manifests", ".venv", ".images-cache", "dist"):
        assert ignored(heavy)


def test_the_control_plane_image_installs_the_base_and_refuses_torch():
    install = pip_install("operator")
    assert re.search(r"--constraint constraints.txt \.(\s|$)", install)
    assert "find_spec('torch')" in install and "find_spec('tokenizers')" in install
    [arg] = values(stages(parse("operator"))[0], "ARG")
    assert arg == 'PIP_OPTIONS=""'  # PyPI: no torch index needed


def test_the_worker_image_installs_the_worker_extra_with_the_cpu_torch_pin():
    install = pip_install("worker")
    assert re.search(r"--constraint constraints.txt '\.\[worker\]'(\s|$)", install)
    assert "assert not torch.version.cuda" in install
    [arg] = values(stages(parse("worker"))[0], "ARG")
    assert arg == f'PIP_OPTIONS="--extra-index-url {CPU_INDEX}"'
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#"))
    import torch

    # The image gets the torch the project is developed and tested with.
    assert torch.__version__.split("+")[0] == pins["torch"]


def test_entrypoints(role):
    final = stages(parse(role))[-1]
    expected = {"operator": ["tmd"], "worker": ["tmd", "worker"]}[role]
    assert [json.loads(v) for v in values(final, "ENTRYPOINT")] == [expected]
    assert [json.loads(v) for v in values(final, "CMD")] == [["--help"]]
    assert PYPROJECT["project"]["scripts"]["tmd"] == "tmd.cli:main"
    assert "PATH=/opt/tmd/bin:$PATH" in " ".join(values(final, "ENV"))  # where the venv put the script


def test_runs_as_the_non_root_user_the_manifests_expect(role):
    final = stages(parse(role))[-1]
    [user] = values(final, "USER")
    uid, gid = (int(x) for x in user.split(":"))  # numeric: Kubernetes can verify runAsNonRoot
    assert uid != 0 and gid != 0
    for name in ("tmd-operator", "tmd-shim"):
        sc = find(build("base"), "Deployment", name)["spec"]["template"]["spec"]["securityContext"]
        assert (sc["runAsUser"], sc["runAsGroup"]) == (uid, gid)


def test_exposed_ports_are_the_ones_the_manifests_and_the_operator_use():
    def exposed(role: str) -> set[int]:
        return {int(p) for v in values(stages(parse(role))[-1], "EXPOSE") for p in v.split()}

    docs = build("base")
    declared = {port["containerPort"] for name in ("tmd-operator", "tmd-shim")
                for port in find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert exposed("operator") == declared
    assert exposed("worker") == {OperatorConfig().worker_port}
    env = " ".join(values(stages(parse("worker"))[-1], "ENV"))
    assert "TMD_WORK_DIR=/tmp" in env  # /tmp is the emptyDir of the read-only-root worker pods


def test_the_build_script_builds_each_dockerfile_unchanged():
    """images/build.sh hands buildah the Dockerfiles themselves; what it passes in (build args)
    is only what both declare, so the here-build and a `docker build` follow the same steps."""
    script = BUILD_SCRIPT.read_text()
    assert re.search(r'--file "\$role/Dockerfile"', script)
    assert re.search(r"for role in operator worker; do", script)
    build_args = {a.split("=", 1)[0] for a in re.findall(r'--build-arg "([^"]+)"', script)}
    for role in ROLES:
        declared = {v.split("=", 1)[0] for v in values(stages(parse(role))[0], "ARG")}
        assert build_args == declared == {"PIP_OPTIONS"}
    # The offline pip options point at the wheelhouse the script mounts.
    [options] = re.findall(r'--build-arg "PIP_OPTIONS=([^"]+)"', script)
    assert shlex.split(options) == ["--no-index", "--find-links", "/wheels"]
    assert re.search(r'--volume "\$CACHE/wheels:/wheels:ro"', script)


def test_the_manifests_name_the_images_the_build_script_tags():
    kustomization = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())
    registry = re.search(r"REGISTRY=\$\{TMD_IMAGES_REGISTRY:-([^}]+)\}", BUILD_SCRIPT.read_text()).group(1)
    assert {(i["name"], i["newTag"]) for i in kustomization["images"]} == \
           {(f"{registry}/tmd-{role}", PYPROJECT["project"]["version"]) for role in ROLES}


def test_the_copied_files_build_a_tmd_wheel_with_every_module(tmp_path):
    """What `pip install .` does in the build stage, on exactly the files the Dockerfiles copy
    (minus what .dockerignore drops): it must produce every tmd module and the `tmd` script."""
    copies = [value.split() for instruction, value in parse("worker") if instruction == "COPY"
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
