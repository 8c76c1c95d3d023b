"""`tmd up` end to end, as the README's quick start runs it: everything starts, the demo model
answers the commands `tmd up` prints, Ctrl-C leaves nothing behind, and a second `tmd up` with
the same data directory brings the model and its deployment back."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.operator.e2e import free_port

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


class Up:
    def __init__(self, data_dir: Path, es_port: int) -> None:
        self.log = data_dir.parent / f"up-{time.monotonic_ns()}.log"
        env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        self.proc = subprocess.Popen([sys.executable, "-m", "tmd", "up", "--data-dir", str(data_dir), "--es-port",
                                      str(es_port), "--nodes", "2"], cwd=data_dir.parent, env=env,
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while "tmd is up." not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.5)
        return self.output()

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=90)


def descendants_alive(data_dir: Path) -> list[str]:
    """Processes still running with our data directory on their command line or environment."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            except OSError:
                continue
            if str(data_dir).encode() in blob and int(entry.name) != os.getpid():
                alive.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return alive


def test_up_serves_the_demo_and_comes_back_after_ctrl_c(tmp_path):
    data_dir = tmp_path / ".tmd"
    es_port = free_port()
    up = Up(data_dir, es_port)
    try:
        printed = up.wait_up()
        es = f"http://127.0.0.1:{es_port}"
        # The curl command tmd up prints, run as printed.
        curl = re.search(r"(curl -s -XPOST .*?_infer .*?\\\n\s+-d '.*?')", printed, re.S).group(1)
        done = subprocess.run(["bash", "-c", curl.replace("\\\n", " ")], capture_output=True, text=True, timeout=60)
        assert '"class_name":"PER"' in done.stdout and '"class_name":"LOC"' in done.stdout, done.stdout + done.stderr
        kubeconfig = str(data_dir.resolve() / "localkube" / "kubeconfig")
        pods = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "tmd,pods", "-o", "wide"],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "KUBECACHEDIR": str(tmp_path / "kcache")})
        assert pods.returncode == 0 and "demo_ner" in pods.stdout and "Running" in pods.stdout, pods.stderr
        status = subprocess.run([sys.executable, "-m", "tmd", "status", "--es-url", es], capture_output=True,
                                text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert status.returncode == 0 and "demo_ner" in status.stdout and "started" in status.stdout, status.stderr
    finally:
        code = up.interrupt()
    assert code == 0, up.output()[-3000:]
    assert descendants_alive(data_dir) == []

    again = Up(data_dir, es_port)
    try:
        printed = again.wait_up()
        assert "importing demo model" not in printed  # it was still there
        es = f"http://127.0.0.1:{es_port}"
        deadline = time.monotonic() + 120
        while True:
            r = httpx.post(f"{es}/_ml/trained_models/demo_ner/_infer", json={"docs": [{"input": "Maria visited Paris"}]},
                           timeout=30)
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert r.status_code == 200, r.text
        assert [e["class_name"] for e in r.json()["inference_results"][0]["entities"]] == ["PER", "LOC"]
    finally:
        assert again.interrupt() == 0
    assert descendants_alive(data_dir) == []


def test_readme_quick_start_in_a_fresh_clone(tmp_path):
    """The README's first command (`make up`), run as written in a fresh clone of this repository.
    The clone reuses this run's virtual environment (`VENV=`, marked up to date with `-o`) so the
    test does not reinstall torch; everything else is the clone's own Makefile and code."""
    readme = (REPO / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    command = quick_start.strip().splitlines()[0].split("#")[0].strip()
    assert command == "make up"
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    venv = Path(sys.prefix)
    stamp = venv / ".installed"
    env = {**os.environ, "PYTHONPATH": str(clone)}  # the clone's code, not the checkout the venv points at
    proc = subprocess.Popen(["make", "-C", str(clone), "up", f"VENV={venv}", "-o", str(stamp)], env=env,
                            stdout=(tmp_path / "make-up.log").open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    log = tmp_path / "make-up.log"
    try:
        deadline = time.monotonic() + 240
        while "tmd is up." not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)
        printed = log.read_text(errors="replace")
        assert str(clone / ".tmd") in printed  # state went to the clone's .tmd
        r = httpx.post("http://127.0.0.1:9200/_ml/trained_models/demo_ner/_infer",
                       json={"docs": [{"input": "Josh lives in Berlin"}]}, timeout=30)
        assert r.status_code == 200 and "PER" in r.text, r.text
        assert "tmd is up." in printed and "==> stopping" not in printed
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, to make and tmd up alike
        proc.wait(timeout=90)
    assert "==> stopping" in log.read_text(errors="replace")
    assert descendants_alive(clone / ".tmd") == []
