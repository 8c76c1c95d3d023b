"""The `tmd` command: one subcommand per role. Wires the packages together; nothing imports it.

Each role module exposes `add_arguments(parser)` and `run(args) -> int`, so this file stays a table.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# subcommand -> (module, help). Modules are imported lazily so `tmd worker` never imports kopf, etc.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("tmd.up", "run everything on this machine: control plane, operator, Elasticsearch-compatible API, demo"),
    "status": ("tmd.status", "show deployments, routing tables and per-node throughput"),
    "operator": ("tmd.operator.main", "run the operator that places and runs deployments"),
    "shim": ("tmd.shim.main", "serve the Elasticsearch-compatible REST API"),
    "worker": ("tmd.worker.main", "serve one deployment's inference on one node"),
    "localkube": ("tmd.localkube.main", "run the embedded Kubernetes-compatible control plane and process kubelets"),
}

# Commands that run inference need the `worker` extra; the base install (the control-plane image) lacks it.
WORKER_EXTRA_COMMANDS = {"up", "worker"}
WORKER_EXTRA_MODULES = ("torch", "tokenizers")


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_text}" for name, (_, help_text) in COMMANDS.items())
    return (f"usage: tmd COMMAND [options]\n\ntmd: Elasticsearch-style trained model deployments on Kubernetes\n\n"
            f"commands:\n{rows}\n\n`tmd COMMAND --help` describes a command's options.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name = argv[0]
    if name not in COMMANDS:
        print(f"tmd: error: unknown command [{name}]\n\n{_usage()}", file=sys.stderr)
        return 2
    missing = [m for m in WORKER_EXTRA_MODULES if name in WORKER_EXTRA_COMMANDS and importlib.util.find_spec(m) is None]
    if missing:
        print(f"tmd: error: [tmd {name}] needs the worker extra ({', '.join(missing)} missing): "
              "pip install 'tmd[worker]'", file=sys.stderr)
        return 2
    # Import only the chosen role: importing every role costs seconds (torch, kopf).
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"tmd {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv[1:])) or 0)
