"""The console as a person uses it: headless Chromium against a real `tmd up` stack (control
plane, operator, shim, worker processes, the demo TorchScript model).

One stack for both tests. Screenshots land in tests/artifacts/console/ (paths printed).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.console.browser import chromium, missing, problems, screenshot, wait_js
from tests.faults.control import processes_of
from tests.operator.e2e import free_port
from tests.test_up import Up

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing() is not None, reason=missing() or "")]

DEMO = "demo_ner"


class Stack:
    def __init__(self, up: Up, data_dir: Path, console_url: str, driver: Any) -> None:
        self.up, self.data_dir, self.console_url, self.driver = up, data_dir, console_url, driver
        self.es = console_url.rsplit("/_tmd/console", 1)[0]
        self.kubeconfig = data_dir.resolve() / "localkube" / "kubeconfig"

    def kubectl(self, *args: str) -> str:
        kubectl = Path(sys.executable).parent / "kubectl"
        done = subprocess.run([str(kubectl) if kubectl.exists() else "kubectl", "--kubeconfig", str(self.kubeconfig),
                               *args], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "KUBECACHEDIR": str(self.data_dir.parent / "kcache")})
        assert done.returncode == 0, done.stderr
        return done.stdout

    def js(self, script: str) -> Any:
        return self.driver.execute_script(script)

    def cell(self, node: str, deployment_id: str) -> dict[str, str] | None:
        """The grid cell of a route as the page shows it: its state and text."""
        return self.js(f"""const c = document.querySelector('#grid td.cell[data-node={json.dumps(node)}]'
                                                           + '[data-deployment={json.dumps(deployment_id)}]');
                           return c ? {{state: c.dataset.state, text: c.innerText}} : null;""")

    def node(self, node: str) -> dict[str, str] | None:
        """A grid row's header as the page shows it: the node, its processors used / allocated."""
        return self.js(f"""const c = document.querySelector('#grid th.node[data-node={json.dumps(node)}]');
                           return c ? {{state: c.dataset.state, text: c.innerText}} : null;""")

    def chart(self, name: str, label: str) -> list[tuple[float, float]]:
        """(time, value) points of one series of a chart, as uPlot holds them."""
        return self.js(f"""const u = window.tmdConsole.charts[{json.dumps(name)}];
                           if (!u) return [];
                           const i = u.series.findIndex((s) => s.label === {json.dumps(label)});
                           if (i < 0) return [];
                           return u.data[0].map((t, k) => [t, u.data[i][k]]).filter((p) => p[1] !== null);""")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("console")
    data_dir = root / ".tmd"
    # Workers on a port of their own: the pod IPs of `tmd up` stacks on one machine coincide.
    saved = os.environ.get("TMD_WORKER_PORT")
    os.environ["TMD_WORKER_PORT"] = str(free_port())
    try:
        up = Up(data_dir, free_port())
    finally:
        if saved is None:
            os.environ.pop("TMD_WORKER_PORT")
        else:
            os.environ["TMD_WORKER_PORT"] = saved
    driver = None
    try:
        printed = up.wait_up()
        url = re.search(r"console \(open in a browser\):\s+(\S+)", printed).group(1)
        driver = chromium(root / "chromium-profile")
        yield Stack(up, data_dir, url, driver)
    finally:
        if driver is not None:
            driver.quit()
        code = up.interrupt()
        left = processes_of(data_dir)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert code == 0 and not left, (code, left, up.output()[-3000:])


def test_page_shows_the_demo_and_starts_a_deployment(stack: Stack) -> None:
    driver = stack.driver
    driver.get(stack.console_url)
    wait_js(driver, f"""const r = document.querySelector('#deployments tr[data-deployment="{DEMO}"]');
                        return r && r.querySelector('.pill').textContent""", 60, "the demo deployment's row",
            lambda state: state == "started")
    for node in ("node-1", "node-2"):
        assert stack.cell(node, DEMO) == {"state": "started", "text": "started\n1/1"}, stack.cell(node, DEMO)
        # each ML node of `tmd up` (2 CPUs) with the processors the demo's allocation there uses
        assert stack.node(node) == {"state": "ok", "text": f"{node}\n1 / 2 CPUs used"}, stack.node(node)
    assert stack.js("return document.querySelector('#card-processors').innerText") == "2\nprocessors free of 4"
    row = stack.js(f"return document.querySelector('#deployments tr[data-deployment=\"{DEMO}\"]').innerText")
    assert "2 / 2" in row and "normal priority" in row, row
    assert "Ready: True" in stack.js("return document.querySelector('#conditions').innerText")
    screenshot(driver, "1-demo")
    assert problems(driver) == []

    # Start a second deployment of the model from the page's form.
    driver.find_element("css selector", "#start input[name=deployment_id]").send_keys("demo_ner_two")
    driver.find_element("css selector", "#start select[name=model_id]").send_keys(DEMO)
    driver.find_element("css selector", "#start button[type=submit]").click()
    wait_js(driver, "return document.querySelector('#toasts').innerText", 60, "the start to be acknowledged",
            lambda text: "start demo_ner_two: done" in (text or ""))
    wait_js(driver, """return [...document.querySelectorAll('#grid td.cell[data-deployment="demo_ner_two"]')]
                         .map((c) => c.dataset.state)""", 120, "the new deployment started in the grid",
            lambda states: states is not None and "started" in states)
    listed = stack.kubectl("get", "tmd", "-o", "jsonpath={.items[*].spec.deployment_id}").split()
    assert sorted(listed) == [DEMO, "demo_ner_two"], listed
    assert "demo_ner_two" in stack.kubectl("get", "tmd")
    screenshot(driver, "2-second-deployment")

    # The test box sends _infer through the API and shows the answer.
    driver.find_element("css selector", "#infer select[name=id]").send_keys("demo_ner_two")
    driver.find_element("css selector", "#infer button[type=submit]").click()
    answer = wait_js(driver, "return document.querySelector('#infer-result').textContent", 30, "the _infer answer",
                     lambda text: bool(text))
    assert answer.startswith("200 in ") and '"class_name": "PER"' in answer and '"class_name": "LOC"' in answer, answer

    # The row's actions: more allocations, clear the cache, stop (a second click confirms).
    def action(selector: str, done: str) -> None:
        driver.find_element("css selector", f'#deployments tr[data-deployment="demo_ner_two"] {selector}').click()
        wait_js(driver, "return document.querySelector('#toasts').innerText", 60, done, lambda t: done in (t or ""))

    count = driver.find_element("css selector", '#deployments tr[data-deployment="demo_ner_two"] input.alloc')
    count.clear()
    count.send_keys("2")
    action("button.update", "update demo_ner_two to 2 allocations: done")
    wait_js(driver, """return [...document.querySelectorAll('#grid td.cell[data-deployment="demo_ner_two"]')]
                         .filter((c) => c.dataset.state === 'started').length""", 120,
            "two started routes for demo_ner_two", lambda n: n == 2)
    specs = {d["spec"]["deployment_id"]: d["spec"] for d in json.loads(stack.kubectl("get", "tmd", "-o", "json"))["items"]}
    assert specs["demo_ner_two"]["number_of_allocations"] == 2
    action("button.clear", "clear cache of demo_ner_two: done")
    stop = '#deployments tr[data-deployment="demo_ner_two"] button.stop'
    driver.find_element("css selector", stop).click()
    assert driver.find_element("css selector", stop).text == "Confirm stop"
    action("button.stop", "stop demo_ner_two: done")
    wait_js(driver, "return document.querySelector('#deployments tr[data-deployment=\"demo_ner_two\"]') === null",
            60, "the stopped deployment's row to go")
    assert stack.kubectl("get", "tmd", "-o", "jsonpath={.items[*].spec.deployment_id}").split() == [DEMO]
    assert problems(driver) == []


def stack_workers(data_dir: Path) -> list[int]:
    """Worker processes of this stack only (their environment names its data directory)."""
    return [pid for pid, cmd in processes_of(data_dir).items() if "tmd worker" in cmd]


def worker_env(pid: int, name: str) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    prefix = f"{name}=".encode()
    return next((e[len(prefix):].decode() for e in environ if e.startswith(prefix)), None)


def burst(url: str, seconds: float, clients: int = 4) -> tuple[int, float]:
    """Documents inferred by `clients` concurrent clients for `seconds`: (answered, elapsed)."""
    answered = [0] * clients

    def one(i: int) -> None:
        with httpx.Client(timeout=30) as client:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                response = client.post(f"{url}/_ml/trained_models/{DEMO}/_infer",
                                       json={"docs": [{"input": "Josh lives in Berlin"}]})
                assert response.status_code == 200, response.text
                answered[i] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(answered), time.monotonic() - started


def test_load_moves_the_chart_and_a_killed_worker_fails_then_recovers(stack: Stack) -> None:
    driver = stack.driver
    if not driver.current_url.startswith(stack.console_url):
        driver.get(stack.console_url)
    wait_js(driver, f"return window.tmdConsole.charts.throughput && window.tmdConsole.t.length", 60,
            "the charts to have samples", lambda n: (n or 0) >= 2)
    before = [v for _, v in stack.chart("throughput", DEMO)]
    assert before and max(before) < 1.0, before  # idle so far

    started_at = time.time()
    answered, elapsed = burst(stack.es, 10.0)
    offered = answered / elapsed
    points = wait_js(driver, f"""const u = window.tmdConsole.charts.throughput;
                                 return u && u.data[0][u.data[0].length - 1] > {time.time() + 1}""", 30,
                     "a sample after the burst")
    assert points
    during = [v for t, v in stack.chart("throughput", DEMO) if t >= started_at]
    # The chart's peak is the documents per second the workers counted between two samples.
    assert 0.5 * offered <= max(during) <= 2.0 * offered, (offered, during)
    p50 = stack.js(f"return document.querySelector('#deployments tr[data-deployment=\"{DEMO}\"] .p50').textContent")
    assert p50.endswith(" ms"), p50
    latency = [v for t, v in stack.chart("latency", f"{DEMO} p50") if t >= started_at]
    assert latency and all(v > 0 for v in latency), latency
    screenshot(driver, "3-load-burst")

    # kill -9 of node-1's worker: the route is failed with the pod's reason, then started again.
    pods = json.loads(stack.kubectl("get", "pods", "-l", "ml.tmd.dev/role=worker", "-o", "json"))["items"]
    ips = {p["status"]["podIP"] for p in pods if p["spec"]["nodeName"] == "node-1" and p["status"].get("podIP")}
    [pid] = [pid for pid in stack_workers(stack.data_dir) if worker_env(pid, "POD_IP") in ips
             and worker_env(pid, "TMD_DEPLOYMENT_ID") == DEMO]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    failed = wait_js(driver, f"""const c = document.querySelector('#grid td.cell[data-node="node-1"][data-deployment="{DEMO}"]');
                                 return c && c.dataset.state === 'failed' ? c.innerText : null""", 60,
                     "the killed worker's route to show failed")
    assert "exit code 137" in failed, failed
    assert stack.cell("node-2", DEMO)["state"] == "started"
    assert "Degraded: True" in stack.js("return document.querySelector('#conditions').innerText")
    assert stack.js("return document.querySelector('#card-failed .value').textContent") == "1"
    screenshot(driver, "4-worker-killed")
    wait_js(driver, f"""const c = document.querySelector('#grid td.cell[data-node="node-1"][data-deployment="{DEMO}"]');
                        return c && c.dataset.state""", 120, "the route to recover", lambda s: s == "started")
    assert stack.js("return document.querySelector('#card-failed .value').textContent") == "0"
    screenshot(driver, "5-recovered")
    assert problems(driver) == []
