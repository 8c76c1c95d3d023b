"""Plot benchmarks/results/peers.json: throughput, p50/p99 latency and CPU efficiency as ratios to the raw model.

One row per replica count, one bar per server; run with a Python that has matplotlib
(.peers/plot, made by `make peers-venvs`), never tmd's:
    .peers/plot/bin/python benchmarks/peers/plot.py benchmarks/results/peers.json docs/benchmarks-peers.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

METRICS = (("throughput_ratio", "throughput / raw model"), ("p50_ratio", "p50 latency / raw forward p50"),
           ("p99_ratio", "p99 latency / raw forward p99"),
           ("cpu_efficiency", "requests per server CPU-s / raw per CPU-s"))


def main(source: str, target: str) -> int:
    result = json.loads(open(source).read())
    opened = [r for r in result["summary"] if r.get("concurrency") is None]
    rows = [r for r in result["summary"] if r.get("concurrency") is not None]
    servers = list(dict.fromkeys(r["server"] for r in rows))
    replica_counts = sorted({r["replicas"] for r in rows})
    concurrencies = result["concurrency"]
    colors = {s: f"C{i}" for i, s in enumerate(servers)}
    columns = len(METRICS) + (1 if opened else 0)
    fig, axes = plt.subplots(len(replica_counts), columns, figsize=(4.8 * columns, 4.2 * len(replica_counts)),
                             squeeze=False)
    width = 0.8 / len(servers)
    for row_axes, replicas in zip(axes, replica_counts):
        for ax, (key, title) in zip(row_axes, METRICS):
            for i, server in enumerate(servers):
                values = [next((r[key] for r in rows if r["server"] == server and r["replicas"] == replicas
                                and r["concurrency"] == c), float("nan")) for c in concurrencies]
                xs = [n + (i - (len(servers) - 1) / 2) * width for n in range(len(concurrencies))]
                bars = ax.bar(xs, values, width, label=server, color=colors[server])
                if key in ("throughput_ratio", "cpu_efficiency"):
                    ax.bar_label(bars, fmt="%.2f", fontsize=6)
            ax.set_xticks(range(len(concurrencies)), [f"concurrency {c}" for c in concurrencies])
            ax.set_title(f"{title} ({replicas} replica{'s' if replicas > 1 else ''} x 1 thread)", fontsize=9)
            if key in ("p50_ratio", "p99_ratio"):
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            else:
                ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.grid(axis="y", alpha=0.3)
        if opened:  # latency under a fixed offered load: where each server saturates
            ax = row_axes[-1]
            for server in servers:
                points = sorted((r["offered_per_s"], r["p99_ms"]) for r in opened
                                if r["server"] == server and r["replicas"] == replicas)
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=server,
                            color=colors[server])
            ax.set_yscale("log")
            ax.set_xlabel("offered requests/s (open loop)")
            ax.set_title(f"p99 latency ms under offered load ({replicas} replica{'s' if replicas > 1 else ''})",
                         fontsize=9)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower left")
    machine = result["machine"]
    fig.suptitle(f"Same TorchScript encoder (4 layers, hidden 256, {result['model']['tokens']} tokens), 1 torch thread per "
                 f"replica, {machine['cpu_count']} cores shared with the load generator and other jobs; load average "
                 f"{machine['uptime_before'].split('load average:')[-1].strip()} before, "
                 f"{machine['uptime_after'].split('load average:')[-1].strip()} after", fontsize=9)
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
