"""The `tmd` command: one subcommand per role. Wires the packages together; nothing imports it.

Each role module exposes `add_arguments(parser)` and `run(args) -> int`, so this file stays a table.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, help). Modules are imported lazily so `tmd worker` never imports kopf, etc.
COMMANDS: dict[str, tuple[str, str]] = {
    "worker": ("tmd.worker.main", "serve one deployment's inference on one node"),
    "operator": ("tmd.operator.main", "run the operator that places and runs deployments"),
    "shim": ("tmd.shim.main", "serve the Elasticsearch-compatible REST API"),
    "localkube": ("tmd.localkube.main", "run the embedded Kubernetes-compatible control plane and process kubelets"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Build only the chosen subcommand's parser when possible: importing every role costs seconds (torch).
    if argv and argv[0] in COMMANDS:
        name = argv[0]
        module = importlib.import_module(COMMANDS[name][0])
        parser = argparse.ArgumentParser(prog=f"tmd {name}", description=COMMANDS[name][1])
        module.add_arguments(parser)
        return int(module.run(parser.parse_args(argv[1:])) or 0)
    parser = argparse.ArgumentParser(prog="tmd", description="tmd: Elasticsearch-style trained model deployments on Kubernetes")
    parser.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    parser.parse_args(argv)
    return 2
