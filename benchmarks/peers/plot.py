"""Plot benchmarks/results/peers.json: throughput, p50/p99 latency and CPU efficiency as ratios to the raw model.

Run with a Python that has matplotlib (.peers/plot, made by `make peers-venvs`), never tmd's:
    .peers/plot/bin/python benchmarks/peers/plot.py benchmarks/results/peers.json docs/benchmarks-peers.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


def main(source: str, target: str) -> int:
    result = json.loads(open(source).read())
    rows = result["summary"]
    series = sorted({(r["server"], r["replicas"]) for r in rows}, key=lambda s: (s[1], [r["server"] for r in rows].index(s[0])))
    concurrencies = result["concurrency"]
    metrics = (("throughput_ratio", "throughput / raw model"), ("p50_ratio", "p50 latency / raw forward p50"),
               ("p99_ratio", "p99 latency / raw forward p99"),
               ("cpu_efficiency", "requests per server CPU-s / raw per CPU-s"))
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.6))
    width = 0.8 / max(1, len(series))
    for ax, (key, title) in zip(axes, metrics):
        for i, (server, replicas) in enumerate(series):
            values = [next((r[key] for r in rows if r["server"] == server and r["replicas"] == replicas
                            and r["concurrency"] == c), float("nan")) for c in concurrencies]
            xs = [n + (i - (len(series) - 1) / 2) * width for n in range(len(concurrencies))]
            label = server if replicas == 1 else f"{server} x{replicas}"
            bars = ax.bar(xs, values, width, label=label)
            if key in ("throughput_ratio", "cpu_efficiency"):
                ax.bar_label(bars, fmt="%.2f", fontsize=6)
        ax.set_xticks(range(len(concurrencies)), [f"concurrency {c}" for c in concurrencies])
        ax.set_title(title, fontsize=10)
        if key in ("p50_ratio", "p99_ratio"):
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    machine = result["machine"]
    fig.suptitle(f"Same TorchScript encoder (4 layers, hidden 256, {result['model']['tokens']} tokens), 1 thread per replica, "
                 f"{machine['cpu_count']} cores shared with the load generator; "
                 f"load {machine['uptime_before'].split('load average:')[-1].strip()}", fontsize=9)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
