"""The console (`/_tmd/console`) with many deployments on many nodes, in headless Chromium.

1. localkube with N simulated nodes (default 100; pods Ready without a process), a real
   `tmd operator` and a real `tmd shim` (subprocesses);
2. baseline: the console of the empty cluster;
3. D deployments (default 50, 1–4 allocations × 4 threads each, so that they spread over most
   of the 8-CPU nodes) applied at once; once all are Ready, the
   console again.

For each case, with the DevTools performance API (Navigation Timing, `performance.now()`, a
`longtask` PerformanceObserver, and the DevTools protocol's `Performance.getMetrics`):
- load: from navigation start to the first complete render of the state (median of --loads
  fresh navigations), and the state document's size and server time;
- updates over a --live window of live refreshes, while one deployment is scaled every 4 s (so
  routes, grid cells and rows change): time per render (p50, max), long tasks
  (main-thread tasks over 50 ms: count and longest), the share of the window the main thread
  was busy (TaskDuration), and the longest delay of a 50 ms timer (what a click would wait).
The simulated workers run no process, so throughput and latency are empty: the page still
draws every row, route, chart series and the grid. Ratios are against the baseline measured in
the same run; the machine is shared and noisy, so the load average is printed with the figures.

Usage: python benchmarks/console.py [--nodes 100] [--deployments 50] [--live 30] [--loads 3]
Writes benchmarks/results/console.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import httpx  # noqa: E402
import yaml  # noqa: E402

from operator_scale import Operator, free_port, resources, stop_process, wait  # noqa: E402
from tests.console.browser import chromium, missing, problems  # noqa: E402
from tmd.api.resources import API_VERSION, DEPLOYMENT_PLURAL, GROUP  # noqa: E402
from tmd.localkube.cluster import LocalCluster  # noqa: E402
from tmd.localkube.testing import run_kubectl  # noqa: E402

MODEL_ID = "console_model"
# Installed before the page's script runs: long tasks and the lag of a 50 ms timer.
PROBE = """
(() => {
  window.__bench = {longtasks: [], lag: 0};
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__bench.longtasks.push(e.duration); })
    .observe({type: 'longtask', buffered: true});
  let last = performance.now();
  setInterval(() => { const now = performance.now(); window.__bench.lag = Math.max(window.__bench.lag, now - last - 50);
                      last = now; }, 50);
})();
"""




class Shim:
    def __init__(self, kubeconfig: Path, work: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (work / "shim.log").open("ab")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-m", "tmd", "shim", "--port", str(self.port), "--store",
                                      str(work / "store")], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait(lambda: self._up(), 60, "the shim")

    def _up(self) -> bool:
        try:
            return httpx.get(self.url + "/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        stop_process(self.proc, self.log)


def cdp_metrics(driver: Any) -> dict[str, float]:
    return {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}


def measure(driver: Any, url: str, loads: int, live: float, churn: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Load times over `loads` fresh navigations, then `live` seconds of live updates during which
    `churn(i)` (if given) changes the cluster every 4 s, so the grid and the table are redrawn."""
    load_ms, dom_ms, first_render_ms, load_tasks = [], [], [], []
    for _ in range(loads):
        driver.get("about:blank")
        driver.get(url)
        wait(lambda: driver.execute_script("return window.tmdConsole && window.tmdConsole.firstRenderMs !== null"),
             60, "the first render")
        load_ms.append(driver.execute_script("return window.tmdConsole.firstRenderMs"))
        first_render_ms.append(driver.execute_script("return window.tmdConsole.renders[0]"))
        load_tasks.extend(driver.execute_script("return window.__bench.longtasks"))
        dom_ms.append(driver.execute_script(
            "return performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"))
    polls0 = driver.execute_script("return window.tmdConsole.polls")
    before = cdp_metrics(driver)
    driver.execute_script("window.__bench.longtasks = []; window.__bench.lag = 0;")
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < live:
        if churn is not None:
            churn(i)
            i += 1
        time.sleep(max(0.0, min(4.0, live - (time.monotonic() - started))))
    window = time.monotonic() - started
    after = cdp_metrics(driver)
    bench = driver.execute_script("return window.__bench")
    console = driver.execute_script("return {polls: window.tmdConsole.polls, renders: window.tmdConsole.renders,"
                                    " rows: document.querySelectorAll('#deployments tbody tr').length,"
                                    " cells: document.querySelectorAll('#grid td.cell').length,"
                                    " nodes: document.querySelectorAll('#grid tbody tr').length,"
                                    " series: window.tmdConsole.charts.latency ? window.tmdConsole.charts.latency.series.length - 1 : 0}")
    polls = console["polls"] - polls0
    renders = console["renders"][-polls:] if polls else []
    state_started = time.perf_counter()
    state = httpx.get(url + "/state", timeout=60)
    state_seconds = time.perf_counter() - state_started
    errors = problems(driver)
    return {
        "load_ms_median": round(statistics.median(load_ms), 1), "load_ms": [round(x, 1) for x in load_ms],
        "dom_content_loaded_ms_median": round(statistics.median(dom_ms), 1),
        "first_render_ms_max": round(max(first_render_ms), 1),
        "longest_task_while_loading_ms": round(max(load_tasks, default=0.0), 1),
        "cluster_changes": i,
        "live_seconds": round(window, 1), "updates": polls,
        "render_ms_p50": round(statistics.median(renders), 2) if renders else None,
        "render_ms_max": round(max(renders), 2) if renders else None,
        "long_tasks": len(bench["longtasks"]), "longest_task_ms": round(max(bench["longtasks"], default=0.0), 1),
        "main_thread_busy_share": round((after["TaskDuration"] - before["TaskDuration"]) / window, 4),
        "timer_lag_max_ms": round(bench["lag"], 1),
        "rows": console["rows"], "grid_nodes": console["nodes"], "grid_cells": console["cells"], "latency_chart_series": console["series"],
        "state_bytes": len(state.content), "state_seconds": round(state_seconds, 3),
        "browser_errors": [e["message"][:200] for e in errors],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--deployments", type=int, default=50)
    parser.add_argument("--live", type=float, default=30.0, help="seconds of live updates measured (default 30)")
    parser.add_argument("--loads", type=int, default=3, help="fresh page loads measured (default 3)")
    args = parser.parse_args()
    if missing():
        print(f"benchmarks/console.py: skipped: it {missing()}", file=sys.stderr)
        return 0  # `make bench` runs every script: a machine without a browser skips this one
    with tempfile.TemporaryDirectory(prefix="tmd-console-") as tmp:
        work = Path(tmp)
        cluster = LocalCluster(work / "lk", nodes=0, simulated_nodes=args.nodes, node_cpus="8", node_memory="16Gi",
                               zones=3, pod_subnet=f"127.{random.randint(100, 254)}.0.0/16")
        cluster.start(timeout=300)
        operator = shim = driver = None
        try:
            run_kubectl(cluster, "apply", "-f", str(REPO / "crds"))
            operator = Operator(cluster, work / "operator.log")
            shim = Shim(cluster.kubeconfig, work)
            driver = chromium(work / "chromium-profile", height=1400)
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PROBE})
            driver.execute_cdp_cmd("Performance.enable", {})
            url = shim.url + "/_tmd/console"
            print(f"--- baseline: empty cluster, {args.nodes} simulated nodes (load {os.getloadavg()[0]:.2f})", flush=True)
            baseline = measure(driver, url, args.loads, args.live)
            print(json.dumps(baseline, indent=1), flush=True)

            run_kubectl(cluster, "apply", "-f", "-", input=yaml.safe_dump_all(resources(args.deployments, "console", MODEL_ID, allocations=4, threads=4)), timeout=600)
            server = cluster.api_server

            def all_ready() -> bool:
                items = server.objects(GROUP, DEPLOYMENT_PLURAL, "default")
                return len(items) == args.deployments and all(
                    any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (d.get("status") or {}).get("conditions") or []) for d in items)

            ready = wait(all_ready, 600, "every deployment Ready")
            print(f"--- {args.deployments} deployments Ready after {ready:.1f} s (load {os.getloadavg()[0]:.2f})", flush=True)

            def churn(i: int) -> None:  # scale one deployment up or down: routes and grid cells change
                run_kubectl(cluster, "patch", "tmd", f"console-{i % args.deployments}", "--type=merge", "-p",
                            json.dumps({"spec": {"number_of_allocations": 1 + (i + 1) % 4}}))

            loaded = measure(driver, url, args.loads, args.live, churn)
            print(json.dumps(loaded, indent=1), flush=True)
        finally:
            if driver is not None:
                driver.quit()
            if shim is not None:
                shim.stop()
            if operator is not None:
                operator.stop()
            cluster.stop()

    def ratio(key: str) -> str:
        a, b = baseline[key], loaded[key]
        return f"{b} vs {a} ({b / a:.2f}x)" if a else f"{b} vs {a}"

    print(f"\n{args.deployments} deployments on {args.nodes} simulated nodes, against the empty console (baseline):")
    for key in ("load_ms_median", "first_render_ms_max", "longest_task_while_loading_ms", "render_ms_p50", "render_ms_max", "longest_task_ms", "main_thread_busy_share",
                "timer_lag_max_ms", "state_bytes", "state_seconds"):
        print(f"  {key}: {ratio(key)}")
    print(f"  load under 2 s: {loaded['load_ms_median'] < 2000}; browser errors: {loaded['browser_errors'] or 'none'}; "
          f"load average {os.getloadavg()[0]:.2f}")
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "console.json").write_text(json.dumps({"nodes": args.nodes, "deployments": args.deployments,
                                                  "baseline": baseline, "loaded": loaded,
                                                  "load_average": os.getloadavg()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
